"""Decision curves: the net benefit of acting on a risk, against treating everyone or no one.

At a threshold probability t (the risk above which one would act, e.g. biopsy), acting on
the images whose risk is at least t has

    net benefit(t) = TP / n - FP / n * t / (1 - t)

(Vickers & Elkin 2006): true positives, less false positives weighted by the odds of t.
Treating all: prevalence - (1 - prevalence) * t / (1 - t); treating none: 0. Intervals come
from the patient bootstrap of ``metrics`` (a patient's images are drawn together).
"""

import dataclasses
import warnings

import numpy as np

from thyroid.stats.metrics import patient_bootstrap_weights

# The curve is drawn over these; the report's table shows ``TABLE_THRESHOLDS``.
THRESHOLDS = tuple(round(0.05 + 0.01 * i, 2) for i in range(46))  # 0.05 .. 0.50
TABLE_THRESHOLDS = (0.05, 0.10, 0.20, 0.30, 0.50)


def threshold_name(threshold):
    """'net_benefit_at_0_10' style suffix: '0_10' for 0.10."""
    return f"{threshold:.2f}".replace(".", "_")


def _odds(thresholds):
    thresholds = np.asarray(thresholds, np.float64)
    if np.any((thresholds <= 0) | (thresholds >= 1)):
        raise ValueError("threshold probabilities must lie strictly between 0 and 1")
    return thresholds / (1.0 - thresholds)


def net_benefit(labels, risks, thresholds):
    """Net benefit at each threshold (array); nan without images."""
    labels = np.asarray(labels).reshape(-1).astype(bool)
    risks = np.asarray(risks, np.float64).reshape(-1)
    odds = _odds(thresholds)
    if labels.size == 0:
        return np.full(odds.shape, np.nan)
    treat = risks[:, None] >= np.asarray(thresholds, np.float64)[None, :]
    tp = np.sum(treat & labels[:, None], axis=0)
    fp = np.sum(treat & ~labels[:, None], axis=0)
    return (tp - fp * odds) / labels.size


def treat_all(labels, thresholds):
    """Net benefit of treating every image as positive, at each threshold."""
    labels = np.asarray(labels).reshape(-1)
    odds = _odds(thresholds)
    if labels.size == 0:
        return np.full(odds.shape, np.nan)
    prevalence = float(np.mean(labels == 1))
    return prevalence - (1.0 - prevalence) * odds


def net_benefit_samples(labels, risks, patient_ids, thresholds, num_samples=1000, seed=0):
    """(num_samples, len(thresholds)) net benefits over patient-bootstrap resamples."""
    labels = np.asarray(labels).reshape(-1).astype(bool)
    risks = np.asarray(risks, np.float64).reshape(-1)
    odds = _odds(thresholds)
    out = np.empty((max(num_samples, 0), odds.size))
    if labels.size == 0:
        out.fill(np.nan)
        return out
    treat = (risks[:, None] >= np.asarray(thresholds, np.float64)[None, :]).astype(np.float64)
    true_pos, false_pos = treat * labels[:, None], treat * ~labels[:, None]
    rng = np.random.default_rng(seed)
    chunk = 250  # bounds memory at a few chunk x n_images arrays
    for start in range(0, num_samples, chunk):
        size = min(chunk, num_samples - start)
        weights = patient_bootstrap_weights(patient_ids, size, rng)
        n = weights.sum(axis=1, keepdims=True)
        out[start:start + size] = (weights @ true_pos - (weights @ false_pos) * odds) / n
    return out


@dataclasses.dataclass
class DecisionCurve:
    """Net benefit of a risk at ``thresholds`` with its patient-bootstrap 95% interval, and
    treating all on the same images (lists, JSON-ready)."""
    thresholds: list
    net_benefit: list
    low: list
    high: list
    treat_all: list

    def to_json(self):
        return dataclasses.asdict(self)

    def at(self, threshold):
        """(net benefit, low, high, treat all) at one of the curve's thresholds."""
        index = min(range(len(self.thresholds)),
                    key=lambda i: abs(self.thresholds[i] - threshold))
        return (self.net_benefit[index], self.low[index], self.high[index],
                self.treat_all[index])


def decision_curve(labels, risks, patient_ids, thresholds=THRESHOLDS, num_samples=1000,
                   seed=0, confidence=0.95):
    """The ``DecisionCurve`` of ``risks``; without resamples the interval is nan."""
    point = net_benefit(labels, risks, thresholds)
    samples = net_benefit_samples(labels, risks, patient_ids, thresholds, num_samples, seed)
    if samples.shape[0]:
        alpha = (1.0 - confidence) / 2.0
        low, high = np.quantile(samples, [alpha, 1.0 - alpha], axis=0)
    else:
        low = high = np.full(point.shape, np.nan)
    return DecisionCurve([float(t) for t in thresholds], point.tolist(), low.tolist(),
                         high.tolist(), treat_all(labels, thresholds).tolist())


def mean_curve(curves):
    """The element-wise mean of several curves over the same thresholds (repeats)."""
    first = curves[0]
    with warnings.catch_warnings():  # a threshold undefined in every repeat stays nan
        warnings.simplefilter("ignore", RuntimeWarning)
        values = {name: np.nanmean([getattr(c, name) for c in curves], axis=0).tolist()
                  for name in ("net_benefit", "low", "high", "treat_all")}
    return DecisionCurve(list(first.thresholds), **values)
