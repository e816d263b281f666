"""The one place where classification metrics are defined (numpy).

Malignant (label 1) is the positive class. An image is predicted malignant when
``P(malignant) >= threshold``.

* accuracy    = (TP + TN) / N
* sensitivity = TP / (TP + FN)      (recall of malignant; nan without malignant images)
* specificity = TN / (TN + FP)      (recall of benign; nan without benign images)
* auc         = P(score_pos > score_neg) + 1/2 P(score_pos == score_neg)
                (Mann-Whitney U / (n_pos * n_neg); nan when one class is absent)

The same definitions exist three times, and the tests check they agree:
``binary_metrics`` (numpy), ``graph_metrics.metric_ops`` (TF graph ops, for training
summaries) and ``bootstrap_ci`` (vectorised numpy over patient-level bootstrap resamples).
The numpy functions also take one threshold per image (an array), as cross-validation
gives each fold's images the threshold chosen on that fold's validation data.

Beyond the thresholded metrics (defined in the sections below): the Brier score, the
calibration intercept and slope, reliability-diagram bins, and DeLong's test comparing
two correlated AUCs.
``evaluate_predictions`` gathers them into one JSON-ready result; ``metric_text`` prints it.
"""

import math

import numpy as np

METRIC_NAMES = ("accuracy", "sensitivity", "specificity", "auc")
COUNT_NAMES = ("tp", "fp", "tn", "fn")


def _as_arrays(labels, probs):
    labels = np.asarray(labels).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    if labels.shape != probs.shape:
        raise ValueError(f"labels and probs differ in length: {labels.shape} vs {probs.shape}")
    if labels.size and not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 (benign) or 1 (malignant)")
    return labels.astype(np.int64), probs


def _threshold_value(threshold):
    """A scalar threshold as float; per-image thresholds (an array) are summarised by None."""
    return float(threshold) if np.ndim(threshold) == 0 else None


def _ratio(num, den):
    return float(num) / float(den) if den > 0 else float("nan")


# --------------------------------------------------------------------------------------
# numpy
# --------------------------------------------------------------------------------------

def confusion_counts(labels, probs, threshold=0.5):
    """Returns dict(tp, fp, tn, fn) as ints; malignant is predicted when prob >= threshold."""
    labels, probs = _as_arrays(labels, probs)
    pred = probs >= threshold
    pos = labels == 1
    return {
        "tp": int(np.sum(pred & pos)),
        "fp": int(np.sum(pred & ~pos)),
        "tn": int(np.sum(~pred & ~pos)),
        "fn": int(np.sum(~pred & pos)),
    }


def auc_score(labels, probs):
    """Rank-based (Mann-Whitney) ROC AUC; ties count 1/2; nan when a class is absent."""
    labels, probs = _as_arrays(labels, probs)
    n_pos = int(np.sum(labels == 1))
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Average ranks make each tie contribute exactly 1/2.
    ranks = midranks(probs)
    u = np.sum(ranks[labels == 1]) - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def midranks(values):
    """1-based ranks of ``values``, tied values sharing the mean of their ranks; O(n log n)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Boundaries of runs of equal values.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], values.size]
    run_ranks = (starts + 1 + ends) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    return ranks


def binary_metrics(labels, probs, threshold=0.5):
    """Point metrics. Undefined ratios are nan, never an exception."""
    labels, probs = _as_arrays(labels, probs)
    c = confusion_counts(labels, probs, threshold)
    n = int(labels.size)
    n_pos = int(np.sum(labels == 1))
    out = {
        "accuracy": _ratio(c["tp"] + c["tn"], n),
        "sensitivity": _ratio(c["tp"], c["tp"] + c["fn"]),
        "specificity": _ratio(c["tn"], c["tn"] + c["fp"]),
        "auc": auc_score(labels, probs),
        "n": n,
        "n_positive": n_pos,
        "n_negative": n - n_pos,
        "threshold": _threshold_value(threshold),
    }
    out.update(c)
    return out


def roc_points(labels, probs):
    """(fpr, tpr, thresholds) of the ROC curve; three empty arrays when a class is absent."""
    labels, probs = _as_arrays(labels, probs)
    if labels.size == 0 or np.all(labels == 1) or np.all(labels == 0):
        empty = np.zeros(0, dtype=np.float64)
        return empty, empty.copy(), empty.copy()
    from sklearn.metrics import roc_curve
    fpr, tpr, thresholds = roc_curve(labels, probs, pos_label=1, drop_intermediate=False)
    return fpr, tpr, thresholds


# --------------------------------------------------------------------------------------
# Patient-level bootstrap
# --------------------------------------------------------------------------------------

def patient_bootstrap_weights(patient_ids, num_samples, rng):
    """(num_samples, n_images) multiplicities: how often each image's patient was drawn."""
    patient_ids = np.asarray(patient_ids).reshape(-1)
    _, patient_index = np.unique(patient_ids, return_inverse=True)
    patient_index = patient_index.reshape(-1)
    n_patients = int(patient_index.max()) + 1 if patient_index.size else 0
    draws = rng.integers(0, n_patients, size=(num_samples, n_patients))
    # counts[b, p] = times patient p was drawn in sample b.
    offsets = (np.arange(num_samples) * n_patients)[:, None]
    counts = np.bincount((draws + offsets).reshape(-1),
                         minlength=num_samples * n_patients).reshape(num_samples, n_patients)
    return counts[:, patient_index].astype(np.float64)


def _weighted_metrics(labels, probs, weights, threshold):
    """Metrics for each row of ``weights`` (image multiplicities); arrays of shape (B,)."""
    pos = (labels == 1).astype(np.float64)
    neg = 1.0 - pos
    pred = (probs >= threshold).astype(np.float64)
    tp = weights @ (pred * pos)
    fp = weights @ (pred * neg)
    tn = weights @ ((1 - pred) * neg)
    fn = weights @ ((1 - pred) * pos)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = tp + fp + tn + fn
        accuracy = np.where(n > 0, (tp + tn) / n, np.nan)
        sensitivity = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        specificity = np.where(tn + fp > 0, tn / (tn + fp), np.nan)

        # Weighted Mann-Whitney, O(B * n): sort by score, group equal scores into levels;
        # each positive gains the negative weight strictly below its level plus half of
        # the negative weight at its level.
        order = np.argsort(probs, kind="mergesort")
        sorted_probs = probs[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_probs)) + 1]
        ends = np.r_[starts[1:], probs.size]
        level_of = np.repeat(np.arange(starts.size), ends - starts)
        w_pos = (weights * pos)[:, order]
        w_neg = (weights * neg)[:, order]
        cum = np.zeros((weights.shape[0], probs.size + 1))
        np.cumsum(w_neg, axis=1, out=cum[:, 1:])
        below = cum[:, starts]            # (B, L) negative weight below each level
        at = cum[:, ends] - below         # (B, L) negative weight at each level
        u = np.sum(w_pos * (below + 0.5 * at)[:, level_of], axis=1)
        pairs = w_pos.sum(axis=1) * w_neg.sum(axis=1)
        auc = np.where(pairs > 0, u / pairs, np.nan)
    return {"accuracy": accuracy, "sensitivity": sensitivity,
            "specificity": specificity, "auc": auc}


def bootstrap_samples(labels, probs, patient_ids, threshold=0.5, num_samples=1000, seed=0):
    """Per-resample metric values (dict metric -> array (num_samples,), nan where undefined).

    Patients are drawn with replacement; every image of a drawn patient comes along
    (once per draw).
    """
    labels, probs = _as_arrays(labels, probs)
    patient_ids = np.asarray(patient_ids).reshape(-1)
    if patient_ids.shape != labels.shape:
        raise ValueError("patient_ids must have one entry per image")
    if labels.size == 0 or num_samples <= 0:
        return {name: np.full(max(num_samples, 0), np.nan) for name in METRIC_NAMES}
    rng = np.random.default_rng(seed)
    out = {name: np.empty(num_samples) for name in METRIC_NAMES}
    chunk = 250  # bounds memory at a few chunk x n_images arrays
    for start in range(0, num_samples, chunk):
        size = min(chunk, num_samples - start)
        weights = patient_bootstrap_weights(patient_ids, size, rng)
        values = _weighted_metrics(labels, probs, weights, threshold)
        for name in METRIC_NAMES:
            out[name][start:start + size] = values[name]
    return out


def bootstrap_ci(labels, probs, patient_ids, threshold=0.5, num_samples=1000,
                 confidence=0.95, seed=0):
    """Percentile bootstrap intervals, resampling patients: dict metric -> (low, high).

    Resamples where a metric is undefined (nan) are ignored for that metric; an interval
    with no defined resample is (nan, nan).
    """
    samples = bootstrap_samples(labels, probs, patient_ids, threshold, num_samples, seed)
    alpha = (1.0 - confidence) / 2.0
    out = {}
    for name in METRIC_NAMES:
        values = samples[name]
        values = values[~np.isnan(values)]
        if values.size == 0:
            out[name] = (float("nan"), float("nan"))
        else:
            low, high = np.quantile(values, [alpha, 1.0 - alpha])
            out[name] = (float(low), float(high))
    return out


# --------------------------------------------------------------------------------------
# Probability quality: Brier score, calibration, reliability bins
# --------------------------------------------------------------------------------------

#: Probabilities are clipped to [eps, 1 - eps] before taking logits.
LOGIT_CLIP = 1e-6


def brier_score(labels, probs):
    """Mean squared difference between P(malignant) and the label; nan without images."""
    labels, probs = _as_arrays(labels, probs)
    return float(np.mean((probs - labels) ** 2)) if labels.size else float("nan")


def _logit(probs):
    probs = np.clip(probs, LOGIT_CLIP, 1.0 - LOGIT_CLIP)
    return np.log(probs) - np.log1p(-probs)


def _fit_logistic(labels, design, offset, iterations=50):
    """Maximum-likelihood coefficients of logit P(y=1) = design @ beta + offset (Newton).

    Returns nan coefficients when the fit does not converge (e.g. perfectly separated data,
    where the likelihood has no maximum).
    """
    beta = np.zeros(design.shape[1])
    for _ in range(iterations):
        eta = np.clip(design @ beta + offset, -35.0, 35.0)
        fitted = 1.0 / (1.0 + np.exp(-eta))
        gradient = design.T @ (labels - fitted)
        hessian = (design * (fitted * (1.0 - fitted))[:, None]).T @ design
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            break
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            return beta
    return np.full(design.shape[1], np.nan)


def calibration_intercept_slope(labels, probs):
    """(intercept, slope) of logistic recalibration on logit(P(malignant)).

    * slope: b in the logistic regression  logit P(y=1) = a + b * logit(p)  (1 is ideal;
      below 1 the probabilities are too extreme, above 1 too timid).
    * intercept: calibration-in-the-large, a in  logit P(y=1) = a + 1 * logit(p), i.e. the
      slope fixed at 1 as an offset (0 is ideal; above 0 the model under-predicts
      malignancy on average).

    p is clipped to [LOGIT_CLIP, 1 - LOGIT_CLIP]. Both are nan when a class is absent or
    the fit does not converge.
    """
    labels, probs = _as_arrays(labels, probs)
    if labels.size == 0 or np.all(labels == 1) or np.all(labels == 0):
        return float("nan"), float("nan")
    logits = _logit(probs)
    ones = np.ones((labels.size, 1))
    intercept = _fit_logistic(labels, ones, logits)[0]
    slope = _fit_logistic(labels, np.hstack([ones, logits[:, None]]), 0.0)[1]
    return float(intercept), float(slope)


def calibration_bins(labels, probs, num_bins=10):
    """Reliability-diagram points over ``num_bins`` equal-width bins of P(malignant).

    Returns (mean predicted, observed malignant fraction, image count) for each non-empty
    bin, as three arrays.
    """
    labels, probs = _as_arrays(labels, probs)
    index = np.minimum((probs * num_bins).astype(np.int64), num_bins - 1)
    counts = np.bincount(index, minlength=num_bins)
    predicted = np.bincount(index, weights=probs, minlength=num_bins)
    observed = np.bincount(index, weights=labels, minlength=num_bins)
    filled = counts > 0
    return (predicted[filled] / counts[filled], observed[filled] / counts[filled],
            counts[filled])


# --------------------------------------------------------------------------------------
# DeLong's test for two correlated AUCs
# --------------------------------------------------------------------------------------

def _structural_components(labels, scores):
    """DeLong's placement values via midranks (the O(n log n) form): (V10, V01)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    ranks_all = midranks(np.r_[pos, neg])
    # A positive's rank among all scores minus its rank among positives counts the
    # negatives below it (ties 1/2); likewise for negatives.
    v10 = (ranks_all[:pos.size] - midranks(pos)) / neg.size
    v01 = 1.0 - (ranks_all[pos.size:] - midranks(neg)) / pos.size
    return v10, v01


def delong_test(labels, probs_a, probs_b):
    """DeLong's test of AUC(a) == AUC(b) for two scores of the same images.

    Returns {"auc_a", "auc_b", "difference" (a - b), "se", "z", "p_value" (two-sided,
    normal approximation)}. With fewer than two images of a class everything is nan.
    When the standard error is 0 (identical rankings), z is 0 and p is 1 if the AUCs are
    equal; otherwise z is infinite and p is 0.
    """
    labels, probs_a = _as_arrays(labels, probs_a)
    _, probs_b = _as_arrays(labels, probs_b)
    n_pos = int(np.sum(labels == 1))
    n_neg = labels.size - n_pos
    nan = float("nan")
    if n_pos < 2 or n_neg < 2:
        return {"auc_a": nan, "auc_b": nan, "difference": nan, "se": nan, "z": nan,
                "p_value": nan}
    v10_a, v01_a = _structural_components(labels, probs_a)
    v10_b, v01_b = _structural_components(labels, probs_b)
    auc_a, auc_b = float(np.mean(v10_a)), float(np.mean(v10_b))
    covariance = np.cov([v10_a, v10_b]) / n_pos + np.cov([v01_a, v01_b]) / n_neg
    variance = covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1]
    se = math.sqrt(max(variance, 0.0))
    difference = auc_a - auc_b
    if se > 1e-15:
        z = difference / se
    else:
        z = 0.0 if abs(difference) < 1e-15 else math.copysign(math.inf, difference)
    p_value = math.erfc(abs(z) / math.sqrt(2.0))
    return {"auc_a": auc_a, "auc_b": auc_b, "difference": difference, "se": se, "z": z,
            "p_value": p_value}


# --------------------------------------------------------------------------------------
# Combined, JSON-ready result
# --------------------------------------------------------------------------------------

def _json_float(x):
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def evaluate_predictions(labels, probs, patient_ids, threshold=0.5, num_samples=1000, seed=0):
    """Point metrics + patient-bootstrap 95% intervals + confusion matrix + counts.

    Returns a JSON-serialisable dict (nan -> None)::

        {"accuracy": {"value": v, "ci95": [lo, hi]}, "sensitivity": ..., "specificity": ...,
         "auc": ..., "confusion_matrix": [[tn, fp], [fn, tp]],
         "confusion": {"tp", "fp", "tn", "fn"},
         "counts": {"images", "patients", "benign", "malignant",
                    "benign_patients", "malignant_patients"},
         "threshold": t, "bootstrap": {"unit": "patient", "num_samples", "seed",
                                       "confidence"}}

    ``counts.benign``/``malignant`` count images; a patient counts as malignant when any
    of their images is. With ``num_samples=0`` the intervals are [None, None].
    """
    labels, probs = _as_arrays(labels, probs)
    patient_ids = np.asarray(patient_ids).reshape(-1)
    point = binary_metrics(labels, probs, threshold)
    if num_samples > 0:
        ci = bootstrap_ci(labels, probs, patient_ids, threshold, num_samples, 0.95, seed)
    else:
        ci = {name: (None, None) for name in METRIC_NAMES}
    result = {}
    for name in METRIC_NAMES:
        result[name] = {"value": _json_float(point[name]),
                        "ci95": [_json_float(ci[name][0]), _json_float(ci[name][1])]}
    result["confusion"] = {k: int(point[k]) for k in COUNT_NAMES}
    result["confusion_matrix"] = [[int(point["tn"]), int(point["fp"])],
                                  [int(point["fn"]), int(point["tp"])]]
    unique_patients = np.unique(patient_ids)
    malignant_patients = np.unique(patient_ids[labels == 1]) if labels.size else []
    result["counts"] = {
        "images": int(point["n"]),
        "patients": int(unique_patients.size),
        "benign": int(point["n_negative"]),
        "malignant": int(point["n_positive"]),
        "malignant_patients": int(len(malignant_patients)),
        "benign_patients": int(unique_patients.size - len(malignant_patients)),
    }
    result["threshold"] = _threshold_value(threshold)
    result["bootstrap"] = {"unit": "patient", "num_samples": int(num_samples),
                           "seed": int(seed), "confidence": 0.95}
    return result
