import json
import math
import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from thyroid.stats import graph_metrics, metric_text, metrics


def _close(a, b, tol=1e-12):
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return abs(a - b) <= tol


# --------------------------------------------------------------------------------------
# numpy, hand-computed
# --------------------------------------------------------------------------------------

def test_hand_computed_case():
    labels = [1, 1, 1, 0, 0, 0, 0, 1]
    probs = [0.9, 0.6, 0.4, 0.2, 0.55, 0.1, 0.5, 0.7]
    # Threshold 0.5, prob >= 0.5 -> malignant (0.5 itself counts as malignant).
    # Positives .9 .6 .4 .7 -> TP, TP, FN, TP      => TP = 3, FN = 1
    # Negatives .2 .55 .1 .5 -> TN, FP, TN, FP     => TN = 2, FP = 2
    # accuracy 5/8 = 0.625, sensitivity 3/4, specificity 2/4.
    # AUC: pairs (pos > neg) out of 4*4 = 16:
    #   .9 beats 4, .6 beats 4 (.2 .55 .1 .5), .4 beats 2 (.2 .1), .7 beats 4 => 14/16.
    m = metrics.binary_metrics(labels, probs)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (3, 2, 2, 1)
    assert m["accuracy"] == pytest.approx(0.625)
    assert m["sensitivity"] == pytest.approx(0.75)
    assert m["specificity"] == pytest.approx(0.5)
    assert m["auc"] == pytest.approx(0.875)
    assert (m["n"], m["n_positive"], m["n_negative"]) == (8, 4, 4)
    assert m["threshold"] == 0.5
    assert metrics.confusion_counts(labels, probs) == {"tp": 3, "fp": 2, "tn": 2, "fn": 1}


def test_threshold_moves_counts():
    labels = [1, 1, 1, 0, 0, 0, 0, 1]
    probs = [0.9, 0.6, 0.4, 0.2, 0.55, 0.1, 0.5, 0.7]
    # Threshold 0.65: malignant predicted for .9 .7 only -> TP 2, FN 2, FP 0, TN 4.
    m = metrics.binary_metrics(labels, probs, threshold=0.65)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 0, 4, 2)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["sensitivity"] == pytest.approx(0.5)
    assert m["specificity"] == pytest.approx(1.0)
    assert m["auc"] == pytest.approx(0.875)  # AUC does not depend on the threshold


def test_ties_count_half():
    labels = [1, 0, 1, 0]
    probs = [0.5, 0.5, 0.8, 0.3]
    # pos {.5, .8}, neg {.5, .3}: .5~.5 tie -> 1/2, .5>.3 -> 1, .8 beats both -> 2.
    # AUC = 3.5 / 4 = 0.875. Threshold .5: TP 2, FP 1, TN 1, FN 0.
    m = metrics.binary_metrics(labels, probs)
    assert m["auc"] == pytest.approx(0.875)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 1, 0)
    assert m["sensitivity"] == 1.0 and m["specificity"] == 0.5
    # All scores equal -> every pair a tie -> 0.5.
    assert metrics.auc_score([0, 1, 0, 1, 1], [0.3] * 5) == pytest.approx(0.5)


def test_one_class_gives_nan_not_crash():
    m = metrics.binary_metrics([1, 1, 1], [0.9, 0.2, 0.7])
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert math.isnan(m["specificity"]) and math.isnan(m["auc"])
    assert m["accuracy"] == pytest.approx(2 / 3)
    m = metrics.binary_metrics([0, 0], [0.9, 0.2])
    assert math.isnan(m["sensitivity"]) and math.isnan(m["auc"])
    assert m["specificity"] == 0.5
    m = metrics.binary_metrics([], [])
    assert m["n"] == 0 and math.isnan(m["accuracy"])


def test_auc_equals_sklearn_on_random_data():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(5, 300))
        labels = rng.integers(0, 2, n)
        if len(set(labels)) < 2:
            continue
        probs = rng.random(n)
        if rng.random() < 0.5:
            probs = np.round(probs, 1)  # many ties
        assert metrics.auc_score(labels, probs) == pytest.approx(
            roc_auc_score(labels, probs), abs=1e-12)


def test_roc_points():
    fpr, tpr, thr = metrics.roc_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1
    assert len(fpr) == len(tpr) == len(thr)
    fpr, tpr, thr = metrics.roc_points([1, 1], [0.1, 0.4])
    assert len(fpr) == 0


# --------------------------------------------------------------------------------------
# in-graph == numpy
# --------------------------------------------------------------------------------------

def test_graph_metrics_equal_numpy():
    from thyroid.compat import tf, tf1

    with tf.Graph().as_default():
        labels_ph = tf1.placeholder(tf.int64, [None])
        probs_ph = tf1.placeholder(tf.float32, [None])
        thr_ph = tf1.placeholder(tf.float32, [])
        ops = graph_metrics.metric_ops(labels_ph, probs_ph, thr_ph)
        summaries = graph_metrics.add_metric_summaries(ops, "eval")
        merged = tf1.summary.merge(summaries)
        with tf1.Session() as sess:
            cases = []
            for seed in range(6):
                rng = np.random.default_rng(seed)
                n = int(rng.integers(2, 80))
                labels = rng.integers(0, 2, n)
                probs = rng.random(n).astype(np.float32)
                if seed % 2:
                    probs = np.round(probs, 1).astype(np.float32)  # ties
                for thr in (0.3, 0.5, 0.7):
                    cases.append((labels, probs, np.float32(thr)))
            # edge cases: one class only, exact-threshold probabilities
            cases.append((np.ones(5, np.int64), np.linspace(0, 1, 5).astype(np.float32),
                          np.float32(0.5)))
            cases.append((np.zeros(4, np.int64), np.full(4, 0.5, np.float32), np.float32(0.5)))
            for labels, probs, thr in cases:
                got = sess.run(ops, {labels_ph: labels, probs_ph: probs, thr_ph: thr})
                want = metrics.binary_metrics(labels, probs, threshold=float(thr))
                for name in ("accuracy", "sensitivity", "specificity", "auc",
                             "tp", "fp", "tn", "fn"):
                    g, w = float(got[name]), float(want[name])
                    assert got[name].dtype == np.float32
                    if math.isnan(w):
                        assert math.isnan(g), name
                    else:
                        assert abs(g - w) <= 1e-6, (name, g, w)
            summary_bytes = sess.run(merged, {labels_ph: [0, 1], probs_ph: [0.2, 0.9],
                                              thr_ph: 0.5})
    summary = tf1.Summary.FromString(summary_bytes)
    tags = {v.tag for v in summary.value}
    assert {"eval/accuracy", "eval/auc", "eval/sensitivity", "eval/specificity"} <= tags


# --------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------

def _clustered_data(n_patients=40, images_per_patient=8, seed=0):
    """Patients whose images are all right or all wrong (strongly clustered outcome)."""
    rng = np.random.default_rng(seed)
    labels, probs, pids = [], [], []
    for p in range(n_patients):
        label = p % 2
        correct = rng.random() < 0.7
        for _ in range(images_per_patient):
            base = rng.uniform(0.6, 0.95)
            prob = base if (label == 1) == correct else 1 - base
            labels.append(label)
            probs.append(prob)
            pids.append(f"ddti:{p}")
    return np.array(labels), np.array(probs), np.array(pids)


def test_bootstrap_draws_whole_patients():
    # Patient A: 5 images, all right; patient B: 5 images, all wrong.
    # Drawing 2 patients gives AA (acc 1), AB/BA (acc .5) or BB (acc 0) -- nothing else.
    # Image-level resampling would give any multiple of 1/10.
    labels = np.array([1, 1, 0, 0, 1, 1, 1, 0, 0, 1])
    probs = np.where(np.arange(10) < 5, labels * 0.8 + 0.1, 0.9 - labels * 0.8)
    pids = np.array(["A"] * 5 + ["B"] * 5)
    samples = metrics.bootstrap_samples(labels, probs, pids, num_samples=400, seed=3)
    values = set(np.round(samples["accuracy"], 9))
    assert values <= {0.0, 0.5, 1.0}
    assert len(values) == 3


def test_bootstrap_matches_explicit_resampling():
    labels, probs, pids = _clustered_data(n_patients=15, images_per_patient=3, seed=4)
    probs = np.round(probs, 1)  # ties for the AUC
    num = 60
    samples = metrics.bootstrap_samples(labels, probs, pids, num_samples=num, seed=11)
    # Same draws, done the slow way: concatenate the drawn patients' images.
    unique = np.unique(pids)
    draws = np.random.default_rng(11).integers(0, len(unique), size=(num, len(unique)))
    for b in range(num):
        idx = np.concatenate([np.flatnonzero(pids == unique[p]) for p in draws[b]])
        want = metrics.binary_metrics(labels[idx], probs[idx])
        for name in metrics.METRIC_NAMES:
            assert _close(float(samples[name][b]), want[name], 1e-9), (name, b)


def test_patient_resampling_widens_interval_for_clustered_outcomes():
    labels, probs, pids = _clustered_data(n_patients=40, images_per_patient=8)
    by_patient = metrics.bootstrap_ci(labels, probs, pids, num_samples=1000, seed=0)
    by_image = metrics.bootstrap_ci(labels, probs, np.arange(len(labels)),
                                    num_samples=1000, seed=0)
    width_p = by_patient["accuracy"][1] - by_patient["accuracy"][0]
    width_i = by_image["accuracy"][1] - by_image["accuracy"][0]
    # Outcomes are identical within a patient, so the effective sample size is 40
    # patients, not 320 images: about sqrt(8) ~ 2.8 times wider.
    assert width_p > 2 * width_i


def test_bootstrap_contains_point_and_is_deterministic():
    rng = np.random.default_rng(5)
    pids = np.repeat(np.arange(50), 2)
    labels = np.repeat(rng.integers(0, 2, 50), 2)
    probs = np.clip(labels * 0.35 + rng.random(100) * 0.65, 0, 1)
    point = metrics.binary_metrics(labels, probs)
    ci = metrics.bootstrap_ci(labels, probs, pids, seed=7)
    for name in metrics.METRIC_NAMES:
        low, high = ci[name]
        assert low <= point[name] <= high, name
        assert high - low > 0
    assert metrics.bootstrap_ci(labels, probs, pids, seed=7) == ci
    assert metrics.bootstrap_ci(labels, probs, pids, seed=8) != ci
    narrow = metrics.bootstrap_ci(labels, probs, pids, confidence=0.5, seed=7)
    assert narrow["auc"][1] - narrow["auc"][0] < ci["auc"][1] - ci["auc"][0]


def test_bootstrap_ignores_nan_resamples():
    # One malignant patient out of 4: many resamples have no positives (nan sensitivity).
    labels = np.array([1, 0, 0, 0])
    probs = np.array([0.9, 0.2, 0.6, 0.1])
    ci = metrics.bootstrap_ci(labels, probs, ["a", "b", "c", "d"], num_samples=200)
    assert ci["sensitivity"] == (1.0, 1.0)
    assert not any(math.isnan(v) for v in ci["specificity"])
    ci = metrics.bootstrap_ci([1, 1], [0.9, 0.2], ["a", "b"], num_samples=50)
    assert all(math.isnan(v) for v in ci["specificity"])


def test_bootstrap_is_fast():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 120)
    probs = rng.random(120)
    pids = np.repeat(np.arange(40), 3)
    start = time.perf_counter()
    metrics.bootstrap_ci(labels, probs, pids, num_samples=1000)
    assert time.perf_counter() - start < 2.0


# --------------------------------------------------------------------------------------
# evaluate_predictions / formatting
# --------------------------------------------------------------------------------------

def test_evaluate_predictions_structure_and_json():
    labels = [1, 1, 1, 0, 0, 0, 0, 1]
    probs = [0.9, 0.6, 0.4, 0.2, 0.55, 0.1, 0.5, 0.7]
    pids = ["p1", "p1", "p2", "p3", "p3", "p4", "p5", "p6"]
    r = metrics.evaluate_predictions(labels, probs, pids, num_samples=200, seed=1)
    json.dumps(r, allow_nan=False)
    assert r["accuracy"]["value"] == pytest.approx(0.625)
    assert r["auc"]["value"] == pytest.approx(0.875)
    assert r["confusion_matrix"] == [[2, 2], [1, 3]]
    assert r["confusion"] == {"tp": 3, "fp": 2, "tn": 2, "fn": 1}
    assert r["counts"]["images"] == 8 and r["counts"]["patients"] == 6
    assert r["counts"]["benign"] == 4 and r["counts"]["malignant"] == 4
    assert r["counts"]["malignant_patients"] == 3 and r["counts"]["benign_patients"] == 3
    assert r["threshold"] == 0.5
    lo, hi = r["sensitivity"]["ci95"]
    assert lo <= 0.75 <= hi
    assert r == metrics.evaluate_predictions(labels, probs, pids, num_samples=200, seed=1)

    one_class = metrics.evaluate_predictions([0, 0, 0], [0.1, 0.7, 0.2], ["a", "b", "c"],
                                             num_samples=50)
    json.dumps(one_class, allow_nan=False)
    assert one_class["auc"] == {"value": None, "ci95": [None, None]}
    assert one_class["sensitivity"]["value"] is None


def test_format_metrics_table():
    r = metrics.evaluate_predictions([1, 1, 1, 0, 0, 0, 0, 1],
                                     [0.9, 0.6, 0.4, 0.2, 0.55, 0.1, 0.5, 0.7],
                                     list("abcdefgh"), num_samples=100)
    text = metric_text.format_metrics_table(r)
    for word in ("Accuracy", "Sensitivity", "Specificity", "AUC", "0.625", "0.875",
                 "Confusion matrix", "malignant", "Images: 8"):
        assert word in text
    one_class = metrics.evaluate_predictions([0, 0], [0.1, 0.7], ["a", "b"], num_samples=10)
    assert "n/a" in metric_text.format_metrics_table(one_class)
    assert metric_text.format_value(r["accuracy"]).startswith("0.62 [")
