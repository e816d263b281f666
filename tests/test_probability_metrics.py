"""Brier score, calibration intercept/slope, reliability bins and DeLong's test."""

import math

import numpy as np
import pytest

from thyroid.stats import metrics


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _calibrated_sample(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.5, 1.5, n)
    probs = _sigmoid(logits)
    labels = (rng.random(n) < probs).astype(int)
    return labels, logits, probs


def test_brier_score_hand_computed():
    assert metrics.brier_score([1, 0, 1, 0], [0.9, 0.2, 0.5, 0.0]) == pytest.approx(
        (0.01 + 0.04 + 0.25 + 0.0) / 4)
    assert math.isnan(metrics.brier_score([], []))


def test_calibrated_probabilities_have_slope_one_intercept_zero():
    labels, _, probs = _calibrated_sample()
    intercept, slope = metrics.calibration_intercept_slope(labels, probs)
    assert abs(slope - 1.0) < 0.1 and abs(intercept) < 0.1, (intercept, slope)


def test_overconfident_slope_below_one_and_underprediction_intercept():
    labels, logits, _ = _calibrated_sample()
    _, slope = metrics.calibration_intercept_slope(labels, _sigmoid(2.0 * logits))
    assert slope < 0.6, slope  # true value 0.5
    intercept, slope = metrics.calibration_intercept_slope(labels, _sigmoid(logits - 1.0))
    assert abs(intercept - 1.0) < 0.1 and abs(slope - 1.0) < 0.1, (intercept, slope)


def test_calibration_undefined_cases_are_nan():
    assert all(math.isnan(v) for v in metrics.calibration_intercept_slope([1, 1], [0.2, 0.7]))
    # Perfect separation: the logistic likelihood has no maximum.
    separated = metrics.calibration_intercept_slope([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert math.isnan(separated[1])
    # Probabilities of exactly 0 and 1 are clipped, not infinite.
    intercept, slope = metrics.calibration_intercept_slope([0, 1, 0, 1, 1, 0],
                                                           [0.0, 1.0, 0.6, 0.3, 0.7, 0.2])
    assert math.isfinite(intercept) and math.isfinite(slope)


def test_calibration_bins():
    predicted, observed, counts = metrics.calibration_bins(
        [0, 1, 1, 0, 1], [0.05, 0.08, 0.55, 0.52, 1.0], num_bins=10)
    np.testing.assert_allclose(predicted, [0.065, 0.535, 1.0])
    np.testing.assert_allclose(observed, [0.5, 0.5, 1.0])
    assert counts.tolist() == [2, 2, 1]


def test_delong_hand_computed():
    # Positives a = (0.9, 0.6), negatives a = (0.7, 0.2): AUC 3/4, placements V10 (1, 1/2),
    # V01 (1/2, 1), each with variance 1/8. Score b separates perfectly (AUC 1, no
    # variance). Var(diff) = 1/8 / 2 + 1/8 / 2 = 1/8.
    result = metrics.delong_test([1, 1, 0, 0], [0.9, 0.6, 0.7, 0.2], [0.8, 0.9, 0.4, 0.1])
    assert result["auc_a"] == pytest.approx(0.75) and result["auc_b"] == pytest.approx(1.0)
    assert result["difference"] == pytest.approx(-0.25)
    assert result["se"] == pytest.approx(math.sqrt(0.125))
    assert result["z"] == pytest.approx(-0.25 / math.sqrt(0.125))
    assert result["p_value"] == pytest.approx(math.erfc(0.5), abs=1e-12)  # 0.4795


def _explicit_delong_se(labels, a, b):
    """Quadratic placement values (pairwise comparisons), independent of the midranks."""
    labels = np.asarray(labels)

    def placements(s):
        pos, neg = s[labels == 1], s[labels == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(axis=1), psi.mean(axis=0)

    (a10, a01), (b10, b01) = placements(a), placements(b)
    d10, d01 = a10 - b10, a01 - b01
    return math.sqrt(np.var(d10, ddof=1) / d10.size + np.var(d01, ddof=1) / d01.size)


def _correlated_scores(n, gap_a, gap_b, seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.4).astype(int)
    shared = rng.normal(size=n)
    a = gap_a * labels + shared + 0.7 * rng.normal(size=n)
    b = gap_b * labels + shared + 0.7 * rng.normal(size=n)
    return labels, np.round(a, 1), np.round(b, 1)  # rounding creates ties


def _paired_bootstrap(labels, a, b, num_samples=2000, seed=1):
    """Stratified paired bootstrap of AUC(a) - AUC(b): (SE, two-sided p)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    diffs = np.empty(num_samples)
    for i in range(num_samples):
        idx = np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]
        diffs[i] = (metrics.auc_score(labels[idx], a[idx])
                    - metrics.auc_score(labels[idx], b[idx]))
    p = 2.0 * min(np.mean(diffs <= 0), np.mean(diffs >= 0))
    return float(np.std(diffs, ddof=1)), min(p, 1.0)


def test_delong_matches_explicit_placements():
    labels, a, b = _correlated_scores(300, 1.0, 0.6, seed=5)
    result = metrics.delong_test(labels, a, b)
    assert result["se"] == pytest.approx(_explicit_delong_se(labels, a, b), rel=1e-10)
    assert result["auc_a"] == pytest.approx(metrics.auc_score(labels, a))


@pytest.mark.parametrize("gap_b,significant", [(0.3, True), (1.2, False)])
def test_delong_agrees_with_paired_bootstrap(gap_b, significant):
    labels, a, b = _correlated_scores(400, 1.2, gap_b, seed=11)
    result = metrics.delong_test(labels, a, b)
    boot_se, boot_p = _paired_bootstrap(labels, a, b)
    assert abs(boot_se - result["se"]) < 0.15 * result["se"], (boot_se, result["se"])
    assert (result["p_value"] < 0.05) == significant == (boot_p < 0.05), (
        result["p_value"], boot_p)


def test_delong_degenerate_inputs():
    same = metrics.delong_test([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1], [0.9, 0.8, 0.2, 0.1])
    assert same["z"] == 0.0 and same["p_value"] == 1.0
    assert math.isnan(metrics.delong_test([1, 0, 0], [0.9, 0.1, 0.2],
                                          [0.5, 0.4, 0.3])["p_value"])


def test_per_image_thresholds():
    labels, probs = [1, 1, 0, 0], [0.6, 0.4, 0.5, 0.2]
    point = metrics.binary_metrics(labels, probs, threshold=np.array([0.5, 0.3, 0.6, 0.3]))
    assert (point["tp"], point["fn"], point["tn"], point["fp"]) == (2, 0, 2, 0)
    assert point["threshold"] is None
    ci = metrics.bootstrap_ci(labels, probs, [0, 1, 2, 3],
                              threshold=np.array([0.5, 0.3, 0.6, 0.3]), num_samples=50)
    assert ci["sensitivity"] == (1.0, 1.0)


def test_delong_is_fast():
    import time
    labels, a, b = _correlated_scores(20000, 1.0, 0.8, seed=2)
    start = time.perf_counter()
    metrics.delong_test(labels, a, b)
    assert time.perf_counter() - start < 0.5
