"""Overlap of a predicted mask with the true one, and intervals for per-image means.

``dice`` and ``iou`` of two bool masks (1.0 when both are empty: nothing to find, nothing
found); ``mean_ci`` the patient-bootstrap interval of a per-image mean, resampling patients
(or split units) as ``metrics.bootstrap_ci`` does for the classifier metrics.
"""

import numpy as np

from thyroid.stats.metrics import patient_bootstrap_weights


def dice(predicted, truth):
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    total = int(predicted.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((predicted & truth).sum()) / total


def iou(predicted, truth):
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    union = int((predicted | truth).sum())
    return 1.0 if union == 0 else int((predicted & truth).sum()) / union


def mean_ci(values, groups, num_samples=1000, seed=0, level=0.95):
    """(mean, low, high) of ``values`` (one per image) with a percentile bootstrap over
    ``groups`` (an image's patient or unit); NaN for no values."""
    values = np.asarray(values, np.float64).reshape(-1)
    if not values.size:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if num_samples <= 0:
        return mean, float("nan"), float("nan")
    weights = patient_bootstrap_weights(np.asarray(groups), num_samples, np.random.default_rng(seed))
    means = (weights @ values) / np.maximum(weights.sum(axis=1), 1e-12)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(means, (tail, 100.0 - tail))
    return mean, float(low), float(high)
