"""The bottleneck_logreg rows: standardised, class-balanced L2 logistic regression on
multi-layer pooled activations, with C chosen by cross-validation inside the training data.

The inner folds are grouped by patient (when the inputs carry patient ids) and stratified
by label, so no patient is on both sides of an inner split. Only the training part a run is
given takes part in the choice; the fold's validation and test images never do.
"""

import os

import numpy as np
from absl import logging
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from thyroid.stats.metrics import auc_score
from thyroid.io_utils import atomic_write_json, atomic_write_pickle, read_own_pickle

MODEL_FILE = "logreg.pkl"
SELECTION_FILE = "logreg_selection.json"
C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
INNER_FOLDS = 4
# Used when the training part is too small for an inner cross-validation.
FALLBACK_C = 1e-2


def make_model(c, seed=0, impute=False):
    """``impute``: median imputation first, for features undefined on some images (the
    outline measurements of an image where no nodule was found)."""
    # The dual liblinear solver: much faster than lbfgs when the pooled channels (thousands)
    # outnumber the training images (a few hundred).
    steps = [SimpleImputer(strategy="median", keep_empty_features=True)] if impute else []
    return make_pipeline(*steps, StandardScaler(), LogisticRegression(
        C=c, class_weight="balanced", solver="liblinear", dual=True, max_iter=5000,
        random_state=seed))


def inner_splits(labels, groups, seed=0):
    """Grouped, stratified inner folds; [] when there are too few patients of a class."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    patients_per_class = [len(set(groups[labels == label])) for label in (0, 1)]
    num_folds = min(INNER_FOLDS, *patients_per_class)
    if num_folds < 2:
        return []
    splitter = StratifiedGroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels, groups))


def inner_auc(features, labels, splits, c, seed=0, impute=False):
    """AUC of the inner folds' pooled held-out scores for one C (nan if undefined)."""
    scores = np.full(len(labels), np.nan)
    for train, held_out in splits:
        if len(np.unique(labels[train])) == 2:
            model = make_model(c, seed, impute).fit(features[train], labels[train])
            scores[held_out] = model.predict_proba(features[held_out])[:, 1]
    scored = ~np.isnan(scores)
    return auc_score(labels[scored], scores[scored]) if scored.any() else float("nan")


def choose_c(features, labels, groups, seed=0, grid=C_GRID, impute=False):
    """(C, {C: inner AUC}): the best inner AUC, ties to the smaller C (stronger penalty)."""
    splits = inner_splits(labels, groups, seed)
    if not splits:
        logging.warning("too few patients per class for an inner cross-validation: C=%g",
                        FALLBACK_C)
        return FALLBACK_C, {}
    aucs = {c: inner_auc(features, labels, splits, c, seed, impute) for c in grid}
    usable = {c: auc for c, auc in aucs.items() if not np.isnan(auc)}
    best = max(usable, key=lambda c: (usable[c], -c)) if usable else FALLBACK_C
    return best, aucs


def fit_logreg(features, labels, patient_ids=None, seed=0, impute=False):
    """(fitted pipeline, selection record) for features [N, D] and 0/1 labels (``impute``:
    see ``make_model``)."""
    features = np.asarray(features, np.float64).reshape(len(features), -1)
    labels = np.asarray(labels, np.int64)
    groups = np.asarray(patient_ids if patient_ids is not None else np.arange(len(labels)), str)
    c, aucs = choose_c(features, labels, groups, seed, impute=impute)
    model = make_model(c, seed, impute).fit(features, labels)
    logging.info("logistic regression: C=%g (inner AUC by C: %s), %d images, %d features", c,
                 ", ".join(f"{k:g}: {v:.3f}" for k, v in aucs.items()), *features.shape)
    selection = {"C": c, "inner_auc_by_C": {f"{k:g}": None if np.isnan(v) else float(v)
                                            for k, v in aucs.items()},
                 "images": int(len(labels)), "patients": int(len(set(groups))),
                 "features": int(features.shape[1])}
    return model, selection


def logreg_scores(model, features):
    """P(malignant) for features [N, D] (float32)."""
    if not len(features):
        return np.zeros([0], np.float32)
    values = np.asarray(features, np.float64).reshape(len(features), -1)
    return model.predict_proba(values)[:, 1].astype(np.float32)


def save_logreg(model, selection, train_dir):
    atomic_write_pickle(os.path.join(train_dir, MODEL_FILE), model)
    atomic_write_json(os.path.join(train_dir, SELECTION_FILE), selection)


def load_logreg(train_dir):
    """The model this project wrote in ``train_dir``."""
    return read_own_pickle(os.path.join(train_dir, MODEL_FILE), "logistic regression")
