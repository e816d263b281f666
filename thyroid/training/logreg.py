"""The bottleneck_logreg rows: standardised, class-balanced L2 logistic regression on
multi-layer pooled activations, with C chosen by cross-validation inside the training data.

The inner folds are grouped by patient (when the inputs carry patient ids) and stratified
by label, so no patient is on both sides of an inner split. Only the training part a run is
given takes part in the choice; the fold's validation and test images never do.

The solver works in the primal (L-BFGS): each iteration is one pass over the images, and a fit
makes at most ``MAX_ITER`` of them, so the whole search grows linearly with the training set.
The dual liblinear solver used before grew about with its square (thousands of images took
a minute per fold). Along the C grid each inner fold standardises once and each C starts from
the previous C's solution (warm start), from the strongest penalty up.
"""

import os
import warnings

import numpy as np
from absl import logging
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from thyroid.stats.metrics import auc_score
from thyroid.io_utils import atomic_write_json, atomic_write_pickle, read_own_pickle

MODEL_FILE = "logreg.pkl"
SELECTION_FILE = "logreg_selection.json"
C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
INNER_FOLDS = 4
# Used when the training part is too small for an inner cross-validation.
FALLBACK_C = 1e-2


# L-BFGS iterations per fit (one pass over the images each). Warm-started along the path, the
# fits of the larger Cs need far fewer; a fit that stops at the cap is counted in the
# selection record (``capped_fits``), not warned about one by one.
MAX_ITER = 300
TOL = 1e-4
BLAS_THREADS = 1


def classifier(c, seed=0, warm_start=False):
    return LogisticRegression(C=c, class_weight="balanced", solver="lbfgs", max_iter=MAX_ITER,
                              tol=TOL, warm_start=warm_start, random_state=seed)


def scaler(impute=False):
    """Standardisation, after median imputation when ``impute``: for features undefined on
    some images (the outline measurements of an image where no nodule was found)."""
    steps = [SimpleImputer(strategy="median", keep_empty_features=True)] if impute else []
    return make_pipeline(*steps, StandardScaler())


def make_model(c, seed=0, impute=False):
    return make_pipeline(scaler(impute), classifier(c, seed))


def _fit(model, features, labels):
    """-> whether the fit stopped at MAX_ITER (its solution is then the last iterate)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features, labels)
    estimator = model[-1] if hasattr(model, "steps") else model
    return bool(np.max(estimator.n_iter_) >= MAX_ITER)


def inner_splits(labels, groups, seed=0):
    """Grouped, stratified inner folds; [] when there are too few patients of a class."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    patients_per_class = [len(set(groups[labels == label])) for label in (0, 1)]
    num_folds = min(INNER_FOLDS, *patients_per_class)
    if num_folds < 2:
        return []
    splitter = StratifiedGroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels, groups))


def path_scores(features, labels, train, held_out, grid=C_GRID, seed=0, impute=False):
    """({C: held-out P(malignant)}, capped fits) along the C path of one inner split: one
    scaler for the split, each C warm-started from the previous one, smallest C first."""
    standardise = scaler(impute).fit(features[train])
    train_values = standardise.transform(features[train])
    held_values = standardise.transform(features[held_out])
    model = classifier(min(grid), seed, warm_start=True)
    scores, capped = {}, 0
    for c in sorted(grid):
        model.set_params(C=c)
        capped += _fit(model, train_values, labels[train])
        scores[c] = model.predict_proba(held_values)[:, 1]
    return scores, capped


def inner_aucs(features, labels, splits, grid=C_GRID, seed=0, impute=False):
    """({C: AUC of the inner folds' pooled held-out scores (nan if undefined)}, capped fits)."""
    scores = {c: np.full(len(labels), np.nan) for c in grid}
    capped = 0
    for train, held_out in splits:
        if len(np.unique(labels[train])) == 2:
            path, path_capped = path_scores(features, labels, train, held_out, grid, seed,
                                             impute)
            capped += path_capped
            for c in grid:
                scores[c][held_out] = path[c]
    aucs = {}
    for c in grid:
        scored = ~np.isnan(scores[c])
        aucs[c] = auc_score(labels[scored], scores[c][scored]) if scored.any() else float("nan")
    return aucs, capped


def choose_c(features, labels, groups, seed=0, grid=C_GRID, impute=False):
    """(C, {C: inner AUC}, capped fits): the best inner AUC, ties to the smaller C (stronger
    penalty)."""
    splits = inner_splits(labels, groups, seed)
    if not splits:
        logging.warning("too few patients per class for an inner cross-validation: C=%g",
                        FALLBACK_C)
        return FALLBACK_C, {}, 0
    aucs, capped = inner_aucs(features, labels, splits, grid, seed, impute)
    usable = {c: auc for c, auc in aucs.items() if not np.isnan(auc)}
    best = max(usable, key=lambda c: (usable[c], -c)) if usable else FALLBACK_C
    return best, aucs, capped


def fit_logreg(features, labels, patient_ids=None, seed=0, impute=False):
    """(fitted pipeline, selection record) for features [N, D] and 0/1 labels (``impute``:
    see ``make_model``)."""
    features = np.asarray(features, np.float64).reshape(len(features), -1)
    labels = np.asarray(labels, np.int64)
    groups = np.asarray(patient_ids if patient_ids is not None else np.arange(len(labels)), str)
    # One BLAS thread: an L-BFGS step is two matrix-vector products, bound by memory, which
    # more threads barely speed up; on a busy machine (other jobs, other users) spinning BLAS
    # threads made the search several times slower than one thread.
    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        c, aucs, capped = choose_c(features, labels, groups, seed, impute=impute)
        model = make_model(c, seed, impute)
        capped += _fit(model, features, labels)
    logging.info("logistic regression: C=%g (inner AUC by C: %s), %d images, %d features, "
                 "%d fits stopped at %d iterations", c,
                 ", ".join(f"{k:g}: {v:.3f}" for k, v in aucs.items()), *features.shape,
                 capped, MAX_ITER)
    selection = {"C": c, "inner_auc_by_C": {f"{k:g}": None if np.isnan(v) else float(v)
                                            for k, v in aucs.items()},
                 "images": int(len(labels)), "patients": int(len(set(groups))),
                 "features": int(features.shape[1]), "solver": "lbfgs",
                 "max_iter": MAX_ITER, "capped_fits": int(capped)}
    return model, selection


def logreg_scores(model, features):
    """P(malignant) for features [N, D] (float32)."""
    if not len(features):
        return np.zeros([0], np.float32)
    values = np.asarray(features, np.float64).reshape(len(features), -1)
    return model.predict_proba(values)[:, 1].astype(np.float32)


def linear_form(model):
    """(weights [D], bias) with logit = features . weights + bias, the standardisation folded
    in: what ``logreg_scores`` computes, for a fitted ``make_model`` without imputation."""
    scaler_step, estimator = model[0][-1], model[-1]
    if not isinstance(scaler_step, StandardScaler) or len(model[0].steps) != 1:
        raise ValueError("only a standardised logistic regression without imputation has a "
                         "linear form on the raw features")
    coefficients = np.asarray(estimator.coef_, np.float64).reshape(-1)
    weights = coefficients / scaler_step.scale_
    bias = float(estimator.intercept_[0] - np.dot(weights, scaler_step.mean_))
    return weights, bias


def save_logreg(model, selection, train_dir):
    atomic_write_pickle(os.path.join(train_dir, MODEL_FILE), model)
    atomic_write_json(os.path.join(train_dir, SELECTION_FILE), selection)


def load_logreg(train_dir):
    """The model this project wrote in ``train_dir``."""
    return read_own_pickle(os.path.join(train_dir, MODEL_FILE), "logistic regression")
