"""Numbers a clinician can use: recalibration, net benefit, patient-level AUC (stats leaf)."""

import numpy as np
import pytest

from thyroid.stats import decision, metrics, patients, pooled
from thyroid.stats.recalibration import (MIN_IMAGES_PER_CLASS, MIN_SLOPE, RecalibrationMap,
                                         fit_recalibration, method_for)


def _misscaled(n, seed, stretch=3.0):
    """Labels drawn from a true risk, and a score that ranks them the same but is three times
    too extreme on the logit scale (calibration slope about 1/3)."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(0.3, 1.2, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-true_logit))).astype(int)
    score = 1 / (1 + np.exp(-stretch * true_logit))
    return labels, score


def test_recalibration_moves_a_misscaled_slope_toward_one_without_changing_auc():
    inner_labels, inner_scores = _misscaled(300, seed=1)   # the inner-validation set
    test_labels, test_scores = _misscaled(2000, seed=2)     # never seen by the fit
    fitted = fit_recalibration(inner_labels, inner_scores)
    risks = fitted.apply(test_scores)
    _, raw_slope = metrics.calibration_intercept_slope(test_labels, test_scores)
    intercept, slope = metrics.calibration_intercept_slope(test_labels, risks)
    print(f"slope raw {raw_slope:.3f} -> recalibrated {slope:.3f} (map slope {fitted.slope:.3f})")
    assert raw_slope < 0.5
    assert abs(slope - 1.0) < 0.2 and abs(slope - 1.0) < abs(raw_slope - 1.0) / 3
    assert abs(intercept) < 0.2
    assert metrics.auc_score(test_labels, risks) == pytest.approx(
        metrics.auc_score(test_labels, test_scores), abs=1e-12)
    assert metrics.brier_score(test_labels, risks) < metrics.brier_score(test_labels, test_scores)


def test_small_inner_sets_keep_the_identity_and_say_why():
    labels = [0] * (MIN_IMAGES_PER_CLASS - 1) + [1] * 30
    scores = np.linspace(0.1, 0.9, len(labels))
    kept = fit_recalibration(labels, scores)
    assert kept.is_identity and kept.benign == MIN_IMAGES_PER_CLASS - 1
    assert "fewer than 5" in kept.note
    np.testing.assert_array_equal(kept.apply(scores), scores)


def test_slope_stays_positive_and_separation_stays_finite():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(20), np.ones(20)].astype(int)
    reversed_scores = np.r_[rng.uniform(0.6, 0.9, 20), rng.uniform(0.1, 0.4, 20)]
    flat = fit_recalibration(labels, reversed_scores)
    assert flat.slope == MIN_SLOPE  # ranking kept, the map all but flat
    separated = fit_recalibration(labels, reversed_scores[::-1])
    assert np.isfinite(separated.slope) and separated.slope > 1.0
    assert method_for("bottleneck_svm") == "platt" and method_for("finetune") == "logistic"
    assert RecalibrationMap.from_json(separated.to_json()) == separated


def test_net_benefit_equals_the_hand_computed_value():
    # 10 images, 4 malignant. At t = 0.25 (odds 1/3) the images with risk >= 0.25 are
    # 3 malignant (0.9, 0.6, 0.3) and 2 benign (0.5, 0.25): 3/10 - 2/10 * 1/3 = 0.2333...
    # At t = 0.5: 2 malignant (0.9, 0.6), 1 benign (0.5): 2/10 - 1/10 * 1 = 0.1.
    labels = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    risks = [0.9, 0.6, 0.3, 0.1, 0.5, 0.25, 0.2, 0.1, 0.05, 0.01]
    nb = decision.net_benefit(labels, risks, [0.25, 0.5])
    np.testing.assert_allclose(nb, [3 / 10 - 2 / 10 / 3, 0.1])
    # Treat all: 0.4 - 0.6 * odds.
    np.testing.assert_allclose(decision.treat_all(labels, [0.25, 0.5]), [0.4 - 0.2, -0.2])


def test_net_benefit_bootstrap_resamples_patients():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    risks = np.array([0.9, 0.6, 0.3, 0.1, 0.5, 0.25, 0.2, 0.1, 0.05, 0.01])
    curve = decision.decision_curve(labels, risks, [f"p{i}" for i in range(10)],
                                    thresholds=(0.25, 0.5), num_samples=400)
    assert curve.net_benefit == pytest.approx([3 / 10 - 2 / 30, 0.1])
    for value, low, high in zip(curve.net_benefit, curve.low, curve.high):
        assert low <= value <= high and high - low > 0.05
    # One patient holding every image: each resample is the whole set, no spread at all.
    same = decision.decision_curve(labels, risks, ["p"] * 10, thresholds=(0.25,),
                                   num_samples=50)
    assert same.low == same.high == pytest.approx(same.net_benefit)
    assert decision.threshold_name(0.1) == "0_10"


def test_patient_auc_on_a_hand_built_example():
    # Patients: a (malignant) images 0.9, 0.2 -> mean 0.55, max 0.9
    #           b (malignant) image 0.4       -> 0.4, 0.4
    #           c (benign)    images 0.5, 0.1 -> mean 0.3, max 0.5
    #           d (benign)    image 0.45      -> 0.45, 0.45
    labels = [1, 1, 1, 0, 0, 0]
    scores = [0.9, 0.2, 0.4, 0.5, 0.1, 0.45]
    ids = ["a", "a", "b", "c", "c", "d"]
    # mean: a 0.55 beats c 0.3 and d 0.45; b 0.4 beats c, loses to d -> 3 of 4 pairs.
    assert patients.patient_auc(labels, scores, ids, "mean") == pytest.approx(0.75)
    # max: a 0.9 beats both; b 0.4 loses to c 0.5 and d 0.45 -> 2 of 4.
    assert patients.patient_auc(labels, scores, ids, "max") == pytest.approx(0.5)
    # Image level: 3 malignant x 3 benign images, 5 pairs won of 9.
    assert metrics.auc_score(labels, scores) == pytest.approx(5 / 9)
    point, low, high = patients.patient_auc_ci(labels, scores, ids, "mean", num_samples=200)
    assert point == pytest.approx(0.75) and low <= point <= high


def test_pooled_figures_carry_the_clinical_numbers():
    rng = np.random.default_rng(3)
    labels, scores = _misscaled(400, seed=4)
    records = [{"row_id": 1, "repeat": 0, "fold": i % 4, "image": f"i{i}",
                "patient_id": f"p{i // 2}", "label": int(y), "prob": float(s),
                "risk": float(RecalibrationMap(0.0, 1 / 3, "logistic").apply(s)),
                "threshold": 0.5} for i, (y, s) in enumerate(zip(labels, scores))]
    external = [dict(r, fold=pooled.ENSEMBLE_FOLD, spread=float(rng.uniform(0, 0.1)))
                for r in records[:100]]
    figures = pooled.summarize_predictions(records + external, num_samples=100)[1]
    assert figures.images == 400 and figures.patients == 200
    assert figures.calibration_slope < 0.5
    assert abs(figures.calibration_slope_recalibrated - 1.0) < 0.25
    assert figures.brier_recalibrated < figures.brier
    assert figures.patient_auc_mean_ci_low <= figures.patient_auc_mean
    curve = figures.decision_curve
    assert len(curve.thresholds) == len(decision.THRESHOLDS)
    assert figures.net_benefit_at_0_10 == pytest.approx(curve.net_benefit[5])
    assert figures.treat_all_at_0_10 == pytest.approx(
        decision.treat_all(labels, [0.1])[0])
    outside = pooled.summarize_external(records + external, num_samples=50,
                                        fold=pooled.ENSEMBLE_FOLD)
    assert outside[1].images == 100 and 0 < outside[1].spread_mean < 0.1
    assert pooled.summarize_external(records + external, num_samples=50) == {}
