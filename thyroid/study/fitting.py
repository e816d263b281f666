"""Fitting one row: on one fold of the cross-validation, refitted on all development data,
or on the single split; and its predictions as records.

Per fold a row trains on the fold's training part (with the augmented copies of those images
only), keeps its checkpoint with the best inner-validation AUC, and takes its threshold from
the operating-point rule on the inner-validation predictions of that fold alone. The refit on
all development data trains for the median over folds of the best epoch and uses the median
fold threshold.
"""

import time

import numpy as np
from absl import logging

from thyroid.datasets import folds
from thyroid.stats.operating_point import choose_threshold
from thyroid.stats.pooled import EXTERNAL_FOLD
from thyroid.study.results import FoldResult
from thyroid.training.scoring import evaluate_split, predict_inputs, predict_splits
from thyroid.training.inputs import part_size
from thyroid.training.loop import read_best
from thyroid.training.run import train
from thyroid.training.run_config import FEATURE_CLASSIFIER_MODES

EXTERNAL_SPLIT = "test"  # evaluation-only builds put every image there


def prediction_records(row_id, repeat, fold, inputs, probs, threshold):
    return [{"row_id": row_id, "repeat": repeat, "fold": fold, "image": key,
             "patient_id": patient, "label": int(label), "prob": float(prob),
             "threshold": float(threshold)}
            for key, patient, label, prob in zip(inputs.keys, inputs.patient_ids, inputs.labels,
                                                 probs)]


def best_epochs(trained, train_dir):
    """Epochs at the best inner-validation checkpoint (the last step when none was kept)."""
    if trained.config.mode in FEATURE_CLASSIFIER_MODES:
        return None
    best = read_best(train_dir)
    step = best["step"] if best else trained.steps
    train_images = part_size(trained.config, "train")
    return step * trained.config.batch_size / max(train_images, 1)


def run_fold(config, row_id, repeat, fold, train_dir, operating_point):
    """Trains ``config`` on one fold; -> FoldResult with its out-of-fold predictions."""
    started = time.monotonic()
    config = config.replace(cv_repeat=repeat, cv_fold=fold, keep_best_checkpoint=True)
    trained = train(config, train_dir)
    (val_inputs, val_probs), (test_inputs, test_probs) = predict_splits(
        train_dir, ("validation", "test"))
    threshold = choose_threshold(operating_point, val_inputs.labels, val_probs)
    logging.info("row %s repeat %d fold %d: threshold %.3f from %d validation images", row_id,
                 repeat, fold, threshold, len(val_inputs.labels))
    return FoldResult(repeat, fold, threshold, best_epochs(trained, train_dir),
                      time.monotonic() - started,
                      prediction_records(row_id, repeat, fold, test_inputs, test_probs, threshold),
                      trained.checkpoint_description)


def refit_settings(fold_results):
    """(threshold, epochs or None): the median over folds of each."""
    threshold = float(np.median([r.threshold for r in fold_results]))
    epochs = [r.best_epochs for r in fold_results if r.best_epochs is not None]
    return threshold, (float(np.median(epochs)) if epochs else None)


def refit_row(config, fold_results, train_dir):
    """Trains ``config`` on every development image with the settings the folds chose."""
    threshold, epochs = refit_settings(fold_results)
    config = config.replace(cv_fold=folds.REFIT_FOLD, threshold=threshold,
                            keep_best_checkpoint=False)
    if epochs is not None:
        config = config.replace(num_epochs=max(epochs, 1e-3), max_number_of_steps=0)
    trained = train(config, train_dir)
    logging.info("refitted %s/%s on all development data: threshold %.3f, %s", config.model,
                 config.mode, threshold,
                 "no steps" if epochs is None else f"{epochs:.2f} epochs, {trained.steps} steps")
    return trained


def external_records(row_id, train_dir, external_dir):
    """Predictions of a refitted row on the external shards (fold ``external``)."""
    inputs, probs, config = predict_inputs(train_dir, EXTERNAL_SPLIT, dataset_dir=external_dir)
    return prediction_records(row_id, 0, EXTERNAL_FOLD, inputs, probs, config.threshold)


def fit_single_split(config, row_id, train_dir, seed, num_bootstrap):
    """Trains ``config`` on the single split's train part and scores its test part;
    -> (TrainResult, metrics dict, test records)."""
    trained = train(config, train_dir)
    result, inputs, probs = evaluate_split(train_dir, "test", seed=seed,
                                           num_bootstrap=num_bootstrap)
    return trained, result, prediction_records(row_id, 0, 0, inputs, probs,
                                               trained.config.threshold)
