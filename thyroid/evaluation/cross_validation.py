"""The cross-validated study: each row trained on every fold, out-of-fold predictions pooled,
then refitted on all development data for external validation and export.

Per fold a row trains on the fold's training part (with the augmented copies of those images
only), keeps its checkpoint with the best inner-validation AUC, and takes its threshold from
the operating-point rule on the inner-validation predictions of that fold alone. The refit on
all development data trains for the median over folds of the best epoch and uses the median
fold threshold.
"""

import dataclasses
import math
import os
import time

import numpy as np
from absl import logging

from thyroid.datasets import build, folds
from thyroid.evaluation.operating_point import choose_threshold
from thyroid.evaluation.runs import predict_inputs, predict_splits
from thyroid.training.inputs import part_size
from thyroid.training.loop import read_best
from thyroid.training.run import train
from thyroid.training.run_config import FEATURE_CLASSIFIER_MODES

SPLIT = "train"  # the study's shards hold every labelled image in this one split
EXTERNAL_SOURCES = ("ddti", "local", "folders", "csv")
EXTERNAL_SPLIT = "test"  # evaluation-only builds put every image there


@dataclasses.dataclass
class FoldResult:
    repeat: int
    fold: int
    threshold: float
    best_epochs: float | None  # None for the scikit-learn rows (no steps)
    seconds: float
    records: list
    checkpoint: str = ""  # what the weights started from


def build_development_shards(ddti_dir, local_dir, dataset_dir, augment_copies, seed,
                             num_folds, num_repeats):
    """Shards of every labelled image (augmented copies tagged with their original's key)
    in one split, decoded and encoded once; then folds.json beside the manifest."""
    manifest = build.build(build.BuildConfig(
        output_dir=dataset_dir, sources=build.named_sources(ddti_dir=ddti_dir, local_dir=local_dir),
        protocol="patient", validation_fraction=0.0, test_fraction=0.0,
        augment_copies=augment_copies, seed=seed, overwrite=True))
    assignment = folds.write_folds(dataset_dir, SPLIT, num_folds, num_repeats, seed)
    return manifest, assignment


def build_external_shards(sources, output_dir, seed):
    """Shards of an external set, ``sources`` = {source kind: folder}, no augmentation, every
    image in one split. Returns the manifest."""
    unknown = sorted(set(sources) - set(EXTERNAL_SOURCES))
    if unknown:
        raise ValueError(f"unknown external source kinds {unknown}; expected {EXTERNAL_SOURCES}")
    return build.build(build.BuildConfig(
        output_dir=output_dir, sources=dict(sources), evaluation_only=True, seed=seed,
        overwrite=True, source_flags=build.prefixed_flags("external_")))


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


def cross_validate_row(config, row_id, assignment, train_root, operating_point):
    """Every (repeat, fold) of one row; -> list of FoldResult."""
    results = []
    for repeat in range(assignment["num_repeats"]):
        for fold in range(assignment["num_folds"]):
            train_dir = os.path.join(train_root, f"repeat{repeat}_fold{fold}")
            results.append(run_fold(config, row_id, repeat, fold, train_dir, operating_point))
    return results


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
    return prediction_records(row_id, 0, "external", inputs, probs, config.threshold)


def fold_summary(fold_results):
    """JSON-ready per-fold facts for the report: threshold, best epoch, time."""
    return [{"repeat": r.repeat, "fold": r.fold, "threshold": r.threshold,
             "best_epochs": None if r.best_epochs is None or math.isnan(r.best_epochs)
             else round(r.best_epochs, 3), "seconds": round(r.seconds, 1)}
            for r in fold_results]
