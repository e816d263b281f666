"""Fitting one row: on one fold of the cross-validation, refitted on all development data,
or on the single split; and its predictions as records.

Per fold a row trains on the fold's training part (with the augmented copies of those images
only), keeps its checkpoint with the best inner-validation AUC, and takes its threshold from
the operating-point rule on the inner-validation predictions of that fold alone. The refit on
all development data trains for the median over folds of the best epoch and uses the median
fold threshold.

Recalibration sees no test data either: each fold fits its map from score to risk on its own
inner-validation predictions (``stats.recalibration``) and applies it to its test fold; the
refit carries one map fitted on the inner-validation predictions of every fold (saved beside
its checkpoint, where the export finds it); a fold ensemble averages its fold models' risks,
each through its own fold's map.
"""

import time

import numpy as np
from absl import logging

from thyroid.datasets import folds
from thyroid.stats.operating_point import choose_threshold
from thyroid.stats.pooled import ENSEMBLE_FOLD, EXTERNAL_FOLD
from thyroid.stats.recalibration import RecalibrationMap, fit_recalibration, method_for
from thyroid.study.results import FoldResult
from thyroid.training.scoring import (evaluate_split, predict_inputs, predict_splits,
                                      save_recalibration)
from thyroid.training.inputs import part_size
from thyroid.training.loop import read_best
from thyroid.training.run import train
from thyroid.training.run_config import FEATURE_CLASSIFIER_MODES

EXTERNAL_SPLIT = "test"  # evaluation-only builds put every image there


def prediction_records(row_id, repeat, fold, inputs, probs, threshold, risks=None,
                       spreads=None, excluded=()):
    """One record per image of ``inputs`` (those whose key is in ``excluded`` left out);
    ``risks`` default to the scores (no recalibration), ``spreads`` to none."""
    risks = probs if risks is None else risks
    spreads = [None] * len(probs) if spreads is None else spreads
    return [{"row_id": row_id, "repeat": repeat, "fold": fold, "image": key,
             "patient_id": patient, "label": int(label), "prob": float(prob),
             "risk": float(risk), "spread": None if spread is None else float(spread),
             "threshold": float(threshold)}
            for key, patient, label, prob, risk, spread in zip(
                inputs.keys, inputs.patient_ids, inputs.labels, probs, risks, spreads)
            if key not in excluded]


def fit_map(recalibrate, mode, labels, probs):
    """The recalibration map of ``--recalibrate`` on inner-validation predictions."""
    if recalibrate == "none":
        return RecalibrationMap(note="--recalibrate=none")
    return fit_recalibration(labels, probs, method_for(mode))


def pooled_map(fold_results, recalibrate, mode):
    """One map on the inner-validation predictions of every fold (the refit's)."""
    labels = [label for r in fold_results for label in r.validation.get("labels", ())]
    probs = [prob for r in fold_results for prob in r.validation.get("probs", ())]
    return fit_map(recalibrate, mode, labels, probs)


def best_epochs(trained, train_dir):
    """Epochs at the best inner-validation checkpoint (the last step when none was kept)."""
    if trained.config.mode in FEATURE_CLASSIFIER_MODES:
        return None
    best = read_best(train_dir)
    step = best["step"] if best else trained.steps
    train_images = part_size(trained.config, "train")
    return step * trained.config.batch_size / max(train_images, 1)


def run_fold(config, row_id, repeat, fold, train_dir, operating_point, recalibrate="logistic"):
    """Trains ``config`` on one fold; -> FoldResult with its out-of-fold predictions, their
    risks through the map its inner validation fitted."""
    started = time.monotonic()
    config = config.replace(cv_repeat=repeat, cv_fold=fold, keep_best_checkpoint=True)
    trained = train(config, train_dir)
    (val_inputs, val_probs), (test_inputs, test_probs) = predict_splits(
        train_dir, ("validation", "test"))
    threshold = choose_threshold(operating_point, val_inputs.labels, val_probs)
    recalibration = fit_map(recalibrate, config.mode, val_inputs.labels, val_probs)
    logging.info("row %s repeat %d fold %d: threshold %.3f, recalibration %s, from %d "
                 "validation images", row_id, repeat, fold, threshold, recalibration.describe(),
                 len(val_inputs.labels))
    records = prediction_records(row_id, repeat, fold, test_inputs, test_probs, threshold,
                                 recalibration.apply(test_probs))
    validation = {"labels": [int(v) for v in val_inputs.labels],
                  "probs": [float(v) for v in val_probs]}
    return FoldResult(repeat, fold, threshold, best_epochs(trained, train_dir),
                      time.monotonic() - started, records, trained.checkpoint_description,
                      recalibration.to_json(), validation)


def refit_settings(fold_results):
    """(threshold, epochs or None): the median over folds of each."""
    threshold = float(np.median([r.threshold for r in fold_results]))
    epochs = [r.best_epochs for r in fold_results if r.best_epochs is not None]
    return threshold, (float(np.median(epochs)) if epochs else None)


def refit_row(config, fold_results, train_dir, recalibrate="logistic"):
    """Trains ``config`` on every development image with the settings the folds chose, and
    saves beside it the recalibration map of every fold's inner validation; -> (the trained
    run, that map)."""
    threshold, epochs = refit_settings(fold_results)
    config = config.replace(cv_fold=folds.REFIT_FOLD, threshold=threshold,
                            keep_best_checkpoint=False)
    if epochs is not None:
        config = config.replace(num_epochs=max(epochs, 1e-3), max_number_of_steps=0)
    trained = train(config, train_dir)
    recalibration = pooled_map(fold_results, recalibrate, config.mode)
    save_recalibration(train_dir, recalibration)
    logging.info("refitted %s/%s on all development data: threshold %.3f, %s; recalibration %s",
                 config.model, config.mode, threshold,
                 "no steps" if epochs is None else f"{epochs:.2f} epochs, {trained.steps} steps",
                 recalibration.describe())
    return trained, recalibration


def external_records(row_id, train_dir, external_dir, recalibration, excluded=()):
    """Predictions of a refitted row on the external shards (fold ``external``), less the
    images in ``excluded`` (duplicates of development images)."""
    inputs, probs, config = predict_inputs(train_dir, EXTERNAL_SPLIT, dataset_dir=external_dir)
    return prediction_records(row_id, 0, EXTERNAL_FOLD, inputs, probs, config.threshold,
                              recalibration.apply(probs), excluded=excluded)


def ensemble_records(row_id, fold_dirs, fold_results, external_dir, excluded=(), score=None):
    """Predictions of the fold ensemble on the external shards (fold ``external_folds``): the
    mean of the fold models' scores and of their risks (each through its fold's map), the SD
    of those risks as ``spread``, judged at the median fold threshold. ``score(train_dir)``
    -> (SplitInputs, P(malignant)) of one fold model on the external set (default: its
    prediction of the external shards)."""
    if score is None:
        def score(train_dir):
            return predict_inputs(train_dir, EXTERNAL_SPLIT, dataset_dir=external_dir)[:2]
    inputs, scores, risks = None, [], []
    for train_dir, fold in zip(fold_dirs, fold_results):
        inputs, probs = score(train_dir)
        scores.append(np.asarray(probs, np.float64))
        risks.append(RecalibrationMap.from_json(fold.recalibration).apply(probs))
    risks = np.stack(risks)
    spreads = np.std(risks, axis=0, ddof=1) if len(risks) > 1 else np.zeros(risks.shape[1])
    threshold = float(np.median([fold.threshold for fold in fold_results]))
    return prediction_records(row_id, 0, ENSEMBLE_FOLD, inputs, np.mean(scores, axis=0),
                              threshold, risks.mean(axis=0), spreads, excluded)


def fit_single_split(config, row_id, train_dir, seed, num_bootstrap):
    """Trains ``config`` on the single split's train part and scores its test part;
    -> (TrainResult, metrics dict, test records)."""
    trained = train(config, train_dir)
    result, inputs, probs = evaluate_split(train_dir, "test", seed=seed,
                                           num_bootstrap=num_bootstrap)
    return trained, result, prediction_records(row_id, 0, 0, inputs, probs,
                                               trained.config.threshold)
