"""Patient-grouped, label-stratified repeated cross-validation of frozen-feature methods on DDTI.

    python -m bench.experiments.ddti_cv --methods=handcrafted_logreg,effnet_roi_layers_logreg \
        [--ddti_dir=../shared/data/ddti] [--folds=5] [--repeats=5] [--cache_dir=exp_cache]

Protocol (docs/EXPERIMENTS.md): images of one patient, and patients linked by a byte-identical
image, share a fold (``thyroid.datasets.splits.group_patients``); folds are stratified by label
(``StratifiedGroupKFold``, reshuffled per repeat). Inside each training fold an inner grouped
CV picks the regularisation and gives out-of-fold scores whose Youden point is the threshold
applied to the test fold. Test folds are never looked at for any choice. Reported: the pooled
out-of-fold AUC of each repeat, their mean, SD and range, a 95% interval from a bootstrap over
patient groups (the same resamples for every repeat, so it covers the mean), sensitivity and
specificity at the inner threshold, and patient-level AUCs (mean / max of a patient's scores).
Prints one markdown table row per method and writes ``<cache_dir>/results/<method>.json``.
Exits with a clear message when the DDTI folder is absent.
"""

import argparse
import fnmatch
import json
import os
import sys
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from sklearn.decomposition import PCA  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedGroupKFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from thyroid.stats import metrics  # noqa: E402
from thyroid.io_utils import atomic_write_json  # noqa: E402

DEFAULT_C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
INNER_FOLDS = 4
BOOTSTRAP_SAMPLES = 1000

EFF = "efficientnet_lite0"
EFF_ALL = ("*/mean", "*/std")
# method -> list of members; a member is ({feature set: [array-name patterns]}, classifier).
# Members of one method are averaged (probabilities), inside every fold.
METHODS = {
    "handcrafted_logreg": [({"roi_handcrafted": ["features"]}, "logreg")],
    "handcrafted_rf": [({"roi_handcrafted": ["features"]}, "rf")],
    "effnet_scan_head_logreg": [({f"{EFF}_scan_layers": ["conv_head/mean"]}, "logreg")],
    "effnet_roi_head_logreg": [({f"{EFF}_roi_layers": ["conv_head/mean"]}, "logreg")],
    "effnet_scan_layers_logreg": [({f"{EFF}_scan_layers": list(EFF_ALL)}, "logreg")],
    "effnet_roi_layers_logreg": [({f"{EFF}_roi_layers": list(EFF_ALL)}, "logreg")],
    "effnet_roi_layers_pca_logreg": [({f"{EFF}_roi_layers": list(EFF_ALL)}, "pca_logreg")],
    "effnet_both_layers_logreg": [({f"{EFF}_scan_layers": list(EFF_ALL),
                                    f"{EFF}_roi_layers": list(EFF_ALL)}, "logreg")],
    "effnet_roi_midlayers_logreg": [({f"{EFF}_roi_layers": ["blocks_7/*", "blocks_10/*",
                                                            "blocks_14/*"]}, "logreg")],
    "vgg_rand_roi_layers_logreg": [({"vgg_16_roi_layers": ["*/mean", "*/std"]}, "logreg")],
    "vgg_rand_scan_layers_logreg": [({"vgg_16_scan_layers": ["*/mean", "*/std"]}, "logreg")],
    "handcrafted+effnet_scan_logreg": [({"roi_handcrafted": ["features"]}, "logreg"),
                                       ({f"{EFF}_scan_layers": list(EFF_ALL)}, "logreg")],
    "effnet_scan+roi_layers_logreg": [({f"{EFF}_scan_layers": list(EFF_ALL)}, "logreg"),
                                      ({f"{EFF}_roi_layers": list(EFF_ALL)}, "logreg")],
    # Added after the rows above had run (so its choice saw their outer-fold results).
    "handcrafted+effnet_scan+roi+vgg_rand_scan_logreg": [
        ({"roi_handcrafted": ["features"]}, "logreg"),
        ({f"{EFF}_scan_layers": list(EFF_ALL)}, "logreg"),
        ({f"{EFF}_roi_layers": list(EFF_ALL)}, "logreg"),
        ({"vgg_16_scan_layers": ["*/mean", "*/std"]}, "logreg")],
    "handcrafted+effnet_scan+roi_logreg": [({"roi_handcrafted": ["features"]}, "logreg"),
                                           ({f"{EFF}_scan_layers": list(EFF_ALL)}, "logreg"),
                                           ({f"{EFF}_roi_layers": list(EFF_ALL)}, "logreg")],
    "handcrafted+effnet_roi_logreg": [({"roi_handcrafted": ["features"]}, "logreg"),
                                      ({f"{EFF}_roi_layers": list(EFF_ALL)}, "logreg")],
    "handcrafted_logreg+rf": [({"roi_handcrafted": ["features"]}, "logreg"),
                              ({"roi_handcrafted": ["features"]}, "rf")],
    "handcrafted+effnet_roi_concat_logreg": [({"roi_handcrafted": ["features"],
                                               f"{EFF}_roi_layers": list(EFF_ALL)}, "logreg")],
}


def _logreg(c):
    # The dual liblinear solver: an order of magnitude faster than lbfgs when features
    # (thousands of pooled channels) outnumber images (about 220 per training fold).
    return LogisticRegression(C=c, class_weight="balanced", solver="liblinear", dual=True,
                              max_iter=5000, random_state=0)


def make_classifier(kind, param):
    """A scikit-learn pipeline; NaN features (no usable polygon) get the training median."""
    if kind == "logreg":
        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                             _logreg(param))
    if kind == "pca_logreg":
        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                             PCA(n_components=0.9, svd_solver="full", random_state=0),
                             _logreg(param))
    if kind == "rf":
        return make_pipeline(SimpleImputer(strategy="median"), RandomForestClassifier(
            n_estimators=300, min_samples_leaf=3, class_weight="balanced_subsample",
            max_features="sqrt", random_state=0, n_jobs=1))
    raise ValueError(f"unknown classifier {kind!r}")


def param_grid(kind, c_grid):
    return c_grid if kind in ("logreg", "pca_logreg") else (None,)


def select_columns(feature_sets, selection):
    """Concatenates the arrays of each feature set whose names match the patterns."""
    blocks = []
    for set_name, patterns in selection.items():
        arrays = feature_sets[set_name]
        names = sorted(n for n in arrays if any(fnmatch.fnmatch(n, p) for p in patterns))
        if not names:
            raise ValueError(f"no arrays of {set_name} match {patterns}")
        blocks.extend(arrays[n].reshape(len(arrays[n]), -1) for n in names)
    return np.concatenate(blocks, axis=1).astype(np.float64)


def scores(model, x):
    return model.predict_proba(x)[:, 1]


def inner_oof(x, y, inner_splits, kind, param):
    out = np.empty(len(y))
    for train, valid in inner_splits:
        out[valid] = scores(make_classifier(kind, param).fit(x[train], y[train]), x[valid])
    return out


def fit_member(x, y, train, test, inner_splits, kind, c_grid):
    """Picks the parameter on the inner CV; -> (test scores, inner out-of-fold scores, param)."""
    best = None
    for param in param_grid(kind, c_grid):
        oof = inner_oof(x[train], y[train], inner_splits, kind, param)
        auc = metrics.auc_score(y[train], oof)
        if best is None or auc > best[0]:
            best = (auc, param, oof)
    _, param, oof = best
    model = make_classifier(kind, param).fit(x[train], y[train])
    return scores(model, x[test]), oof, param


def youden_threshold(labels, probs):
    """Score maximising sensitivity + specificity - 1 (ties: the lowest such score)."""
    best_value, best_threshold = -np.inf, 0.5
    for threshold in np.unique(probs):
        m = metrics.binary_metrics(labels, probs, threshold)
        value = m["sensitivity"] + m["specificity"] - 1.0
        if value > best_value:
            best_value, best_threshold = value, threshold
    return float(best_threshold)


def run_repeat(features, y, groups, members, folds, repeat, c_grid=DEFAULT_C_GRID):
    """-> (out-of-fold scores, out-of-fold 0/1 predictions, chosen params) for one repeat."""
    oof_scores, oof_pred, chosen = np.empty(len(y)), np.empty(len(y), np.int64), []
    outer = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=repeat)
    for fold, (train, test) in enumerate(outer.split(np.zeros(len(y)), y, groups)):
        inner = list(StratifiedGroupKFold(n_splits=INNER_FOLDS, shuffle=True,
                                          random_state=1000 + 10 * repeat + fold)
                     .split(np.zeros(len(train)), y[train], groups[train]))
        test_parts, inner_parts = [], []
        for x, kind in zip(features, (kind for _, kind in members)):
            test_scores, inner_scores, param = fit_member(x, y, train, test, inner, kind, c_grid)
            test_parts.append(test_scores)
            inner_parts.append(inner_scores)
            chosen.append(param)
        threshold = youden_threshold(y[train], np.mean(inner_parts, axis=0))
        oof_scores[test] = np.mean(test_parts, axis=0)
        oof_pred[test] = (oof_scores[test] >= threshold).astype(np.int64)
    return oof_scores, oof_pred, chosen


def patient_auc(y, probs, groups, reduce):
    units = sorted(set(groups))
    index = {u: i for i, u in enumerate(units)}
    labels, values = np.zeros(len(units)), [[] for _ in units]
    for label, prob, unit in zip(y, probs, groups):
        labels[index[unit]] = max(labels[index[unit]], label)
        values[index[unit]].append(prob)
    return metrics.auc_score(labels, np.array([reduce(v) for v in values]))


def summarise(y, groups, repeat_scores, repeat_preds):
    aucs = np.array([metrics.auc_score(y, s) for s in repeat_scores])
    boot = np.mean([metrics.bootstrap_samples(y, s, groups, num_samples=BOOTSTRAP_SAMPLES,
                                              seed=0)["auc"] for s in repeat_scores], axis=0)
    sens = [np.mean(p[y == 1]) for p in repeat_preds]
    spec = [np.mean(1 - p[y == 0]) for p in repeat_preds]
    return {
        "auc_mean": float(aucs.mean()), "auc_per_repeat": aucs.tolist(),
        "auc_sd": float(aucs.std(ddof=1)) if len(aucs) > 1 else 0.0,
        "auc_ci95": [float(np.nanpercentile(boot, 2.5)), float(np.nanpercentile(boot, 97.5))],
        "sensitivity": float(np.mean(sens)), "specificity": float(np.mean(spec)),
        "patient_auc_mean_score": float(np.mean([patient_auc(y, s, groups, np.mean)
                                                 for s in repeat_scores])),
        "patient_auc_max_score": float(np.mean([patient_auc(y, s, groups, np.max)
                                                for s in repeat_scores])),
    }


def evaluate_method(name, dataset, cache_dir, folds, repeats, checkpoint_dir,
                    c_grid=DEFAULT_C_GRID):
    from bench.experiments import ddti_features
    members = METHODS[name]
    started = time.time()
    sets = {s: ddti_features.feature_set(s, dataset, cache_dir, checkpoint_dir)
            for selection, _ in members for s in selection}
    features_seconds = time.time() - started
    features = [select_columns(sets, selection) for selection, _ in members]
    y, groups = dataset.labels, dataset.groups
    runs = [run_repeat(features, y, groups, members, folds, r, c_grid) for r in range(repeats)]
    result = summarise(y, groups, [r[0] for r in runs], [r[1] for r in runs])
    result.update(method=name, folds=folds, repeats=repeats, images=int(len(y)),
                  benign=int((y == 0).sum()), groups=int(len(set(groups))),
                  dimensions=[int(x.shape[1]) for x in features],
                  chosen_params=[str(p) for r in runs for p in r[2]], c_grid=list(c_grid),
                  feature_seconds=round(features_seconds, 1),
                  cv_seconds=round(time.time() - started - features_seconds, 1))
    return result


def table_row(r):
    low, high = r["auc_ci95"]
    per = r["auc_per_repeat"]
    return (f"| {r['method']} | {r['auc_mean']:.3f} [{low:.2f}, {high:.2f}] | "
            f"{r['auc_sd']:.3f} ({min(per):.3f}-{max(per):.3f}) | {r['sensitivity']:.2f} | "
            f"{r['specificity']:.2f} | {r['patient_auc_mean_score']:.3f} / "
            f"{r['patient_auc_max_score']:.3f} | {r['feature_seconds']:.0f} s + "
            f"{r['cv_seconds']:.0f} s |")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="handcrafted_logreg",
                        help="comma-separated, from: " + ", ".join(METHODS))
    parser.add_argument("--ddti_dir", default=os.path.join("..", "shared", "data", "ddti"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache_dir", default="exp_cache")
    parser.add_argument("--checkpoint_dir", default="checkpoints")
    parser.add_argument("--c_grid", default=",".join(str(c) for c in DEFAULT_C_GRID),
                        help="logistic regression C values the inner CV chooses from")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        c_grid = tuple(float(c) for c in args.c_grid.split(","))
    except ValueError:
        sys.exit(f"error: --c_grid: {args.c_grid!r} is not a comma-separated list of numbers")
    names = [m for m in args.methods.split(",") if m]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        sys.exit(f"error: --methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if not os.path.isdir(args.ddti_dir):
        print(f"skipped: --ddti_dir {args.ddti_dir} is not a folder (DDTI data absent)")
        return 0
    from bench.experiments.ddti_features import Dataset
    dataset = Dataset(args.ddti_dir)
    print(f"{len(dataset.labels)} labelled images, {int((dataset.labels == 0).sum())} benign, "
          f"{len(set(dataset.patients))} patients, {len(set(dataset.groups))} groups, "
          f"{dataset.skipped} unreadable images skipped")
    print("| method | AUC [95% CI] | SD (min-max) over repeats | sens | spec | "
          "patient AUC mean / max | time |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        result = evaluate_method(name, dataset, args.cache_dir, args.folds, args.repeats,
                                 args.checkpoint_dir, c_grid)
        os.makedirs(os.path.join(args.cache_dir, "results"), exist_ok=True)
        suffix = "" if c_grid == DEFAULT_C_GRID else "-c" + args.c_grid.replace(",", "_")
        atomic_write_json(os.path.join(args.cache_dir, "results", name + suffix + ".json"), result)
        print(table_row(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
