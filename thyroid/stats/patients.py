"""Patient-level results: one score per patient from the scores of their images.

A patient is malignant when any of their images is. Their score is the ``mean`` or the ``max``
of their images' scores (the max asks: would a reader who acts on the most suspicious image
catch the patient?). The AUC is then over patients, each counted once, and its interval a
bootstrap over patients (each patient its own unit).
"""

import numpy as np

from thyroid.stats import metrics

AGGREGATES = ("mean", "max")


def patient_scores(labels, scores, patient_ids, how="mean"):
    """(patient ids sorted, their labels, their scores) for ``how`` in ``AGGREGATES``."""
    if how not in AGGREGATES:
        raise ValueError(f"patient score {how!r}: expected one of {AGGREGATES}")
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    scores = np.asarray(scores, np.float64).reshape(-1)
    patient_ids = np.asarray(patient_ids).reshape(-1).astype(str)
    if not labels.shape == scores.shape == patient_ids.shape:
        raise ValueError("labels, scores and patient_ids must have one entry per image")
    patients, index = np.unique(patient_ids, return_inverse=True)
    index = index.reshape(-1)
    patient_labels = np.zeros(patients.size, np.int64)
    np.maximum.at(patient_labels, index, labels)
    if how == "max":
        patient_values = np.full(patients.size, -np.inf)
        np.maximum.at(patient_values, index, scores)
    else:
        patient_values = (np.bincount(index, weights=scores, minlength=patients.size)
                          / np.bincount(index, minlength=patients.size))
    return patients, patient_labels, patient_values


def patient_auc(labels, scores, patient_ids, how="mean"):
    """The AUC over patients (nan when a class is absent)."""
    _, patient_labels, values = patient_scores(labels, scores, patient_ids, how)
    return metrics.auc_score(patient_labels, values)


def patient_auc_ci(labels, scores, patient_ids, how="mean", num_samples=1000, seed=0):
    """(AUC, low, high): the patient AUC and its bootstrap 95% interval over patients."""
    patients, patient_labels, values = patient_scores(labels, scores, patient_ids, how)
    point = metrics.auc_score(patient_labels, values)
    if num_samples <= 0 or patients.size == 0:
        return point, float("nan"), float("nan")
    low, high = metrics.bootstrap_ci(patient_labels, values, patients, 0.5, num_samples,
                                     seed=seed)["auc"]
    return point, low, high
