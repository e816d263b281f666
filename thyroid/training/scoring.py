"""Predictions and metrics of a trained run on one split, for every mode."""

import os

import numpy as np
from absl import logging

from thyroid.stats import metrics
from thyroid.stats.recalibration import RecalibrationMap
from thyroid.compat import tf
from thyroid.datasets import shards
from thyroid.io_utils import atomic_write_json, read_json
from thyroid.training import logreg, row_files, svm
from thyroid.training.inputs import SplitInputs, load_split_inputs
from thyroid.training.loop import load_and_predict
from thyroid.training.run_config import FEATURE_CLASSIFIER_MODES, RunConfig


RECALIBRATION_FILE = "recalibration.json"


def save_recalibration(train_dir, recalibration):
    """Saves a run's map from score to risk (a ``stats.recalibration.RecalibrationMap``) beside
    its checkpoint, where the export reads it."""
    atomic_write_json(os.path.join(train_dir, RECALIBRATION_FILE), recalibration.to_json())


def load_recalibration(train_dir):
    """The run's saved map, or None when it has none (a run trained outside a study)."""
    path = os.path.join(train_dir, RECALIBRATION_FILE)
    return RecalibrationMap.from_json(read_json(path)) if os.path.isfile(path) else None


def metrics_file_name(split, other_dataset_fingerprint=None):
    """The file an evaluation writes in the train_dir: ``metrics_<split>.json`` on the run's
    own data; on another dataset ``metrics_<split>-<its fingerprint>.json``, so that scoring
    another set never overwrites the run's own figures (which export ships)."""
    if other_dataset_fingerprint:
        return f"metrics_{split}-{other_dataset_fingerprint[:12]}.json"
    return f"metrics_{split}.json"


class EmptySplitError(ValueError):
    """The split to evaluate holds no images: there are no metrics to write."""


def same_dataset(config, dataset_dir):
    """Whether ``dataset_dir`` (None: the run's) is the run's own dataset folder."""
    return not dataset_dir or os.path.realpath(dataset_dir) == os.path.realpath(config.dataset_dir)


def feature_classifier_scores(config, train_dir, values):
    """P(malignant) (a ranking score for the SVM) of a scikit-learn run on cached features."""
    if not len(values):
        return np.zeros([0], np.float32)
    if config.mode == "bottleneck_logreg":
        return logreg.logreg_scores(logreg.load_logreg(train_dir), values)
    return svm.svm_scores(svm.load_svm(train_dir), values)


def predict_inputs(train_dir, split="test", dataset_dir=None, batch_size=16):
    """(SplitInputs, P(malignant), config) for ``split`` of the run's shards (of its fold,
    for a cross-validation run). Another ``dataset_dir`` is read whole: its ``split`` as built."""
    config = RunConfig.load(train_dir)
    if dataset_dir:
        config = config.replace(dataset_dir=os.path.abspath(dataset_dir), fold_file=None)
    inputs = load_split_inputs(config, split)
    if config.mode in FEATURE_CLASSIFIER_MODES:
        probs = feature_classifier_scores(config, train_dir, inputs.values)
    else:
        probs = load_and_predict(config, train_dir, inputs, batch_size)
    return inputs, probs, config


def predict_splits(train_dir, splits, batch_size=16):
    """[(SplitInputs, P(malignant))] for several splits of the run, from one graph and one
    checkpoint restore (a cross-validation fold predicts its validation and test parts)."""
    config = RunConfig.load(train_dir)
    parts = [load_split_inputs(config, split) for split in splits]
    values = row_files.concatenate([part.values for part in parts])  # a view: nothing read
    if config.mode in FEATURE_CLASSIFIER_MODES:
        probs = feature_classifier_scores(config, train_dir, values)
    else:
        probs = load_and_predict(config, train_dir, SplitInputs(values, None, None), batch_size)
    ends = np.cumsum([len(part.labels) for part in parts])
    return list(zip(parts, np.split(np.asarray(probs), ends[:-1])))


def _originals_of(inputs, keys, dataset_dir):
    """Indices of ``inputs``' original images (no augmented copy), of ``keys`` in that order
    when given; a ValueError naming the folder when one of ``keys`` is not there."""
    originals = np.ones(len(inputs.labels), bool) if inputs.augmented is None \
        else ~np.asarray(inputs.augmented, bool)
    if keys is None:
        return np.flatnonzero(originals)
    position = {key: index for index, key in enumerate(inputs.keys.tolist()) if originals[index]}
    missing = [key for key in keys if key not in position]
    if missing:
        raise ValueError(f"{dataset_dir}: {len(missing)} of the {len(keys)} images to score are "
                         f"not there (first: {missing[0]})")
    return np.asarray([position[key] for key in keys], np.int64)


def predict_views(train_dir, dataset_dirs, split="test", keys=None, batch_size=16):
    """[(SplitInputs, P(malignant))] of the run on each dataset of ``dataset_dirs`` (each read
    whole, its ``split`` as built; the original images only, those of ``keys`` in that order
    when given), from one graph and one checkpoint restore: the views of a test-time
    augmentation, each built as a dataset of its own, scored by one model."""
    config = RunConfig.load(train_dir)
    parts = []
    for dataset_dir in dataset_dirs:
        other = config.replace(dataset_dir=os.path.abspath(dataset_dir), fold_file=None)
        inputs = load_split_inputs(other, split)
        parts.append(inputs.subset(_originals_of(inputs, keys, dataset_dir)))
    values = row_files.concatenate([part.values for part in parts])
    if config.mode in FEATURE_CLASSIFIER_MODES:
        probs = feature_classifier_scores(config, train_dir, values)
    else:
        probs = load_and_predict(config, train_dir, SplitInputs(values, None, None), batch_size)
    ends = np.cumsum([len(part.labels) for part in parts])
    return list(zip(parts, np.split(np.asarray(probs), ends[:-1])))


def predict_split(train_dir, split="test", dataset_dir=None, batch_size=16):
    """(labels, P(malignant), patient ids, config) for ``split`` of the run's shards."""
    inputs, probs, config = predict_inputs(train_dir, split, dataset_dir, batch_size)
    return inputs.labels, probs, inputs.patient_ids, config


def evaluate_run(train_dir, split="test", dataset_dir=None, threshold=None, num_bootstrap=1000,
                 seed=0):
    """Writes the split's metrics file (``metrics_file_name``) in the train_dir, naming the
    dataset and its fingerprint inside; -> (result, labels, P(malignant)). Raises
    ``EmptySplitError`` when the split holds no images (no file is written)."""
    result, inputs, probs = evaluate_split(train_dir, split, dataset_dir, threshold,
                                           num_bootstrap, seed)
    return result, inputs.labels, probs


def evaluate_split(train_dir, split="test", dataset_dir=None, threshold=None, num_bootstrap=1000,
                   seed=0):
    """``evaluate_run`` returning the split's ``SplitInputs`` (keys, patients) with the
    probabilities: -> (result, inputs, P(malignant))."""
    devices = [d.name for d in tf.config.list_physical_devices("GPU")]
    logging.info("evaluating on %s", devices or "CPU")
    own = same_dataset(RunConfig.load(train_dir), dataset_dir)
    inputs, probs, config = predict_inputs(train_dir, split, dataset_dir)
    data_dir = config.dataset_dir  # the dataset scored: the run's own or the one asked for
    fingerprint = shards.split_fingerprint(data_dir, split)
    if not len(inputs.labels):
        raise EmptySplitError(f"--split={split}: {data_dir} holds no {split} images to evaluate")
    result = metrics.evaluate_predictions(inputs.labels, probs, inputs.patient_ids,
                                          threshold=config.threshold if threshold is None else threshold,
                                          num_samples=num_bootstrap, seed=seed)
    result.update(model=config.model, mode=config.mode, split=split,
                  checkpoint=config.checkpoint_description, dataset_dir=data_dir,
                  dataset_fingerprint=fingerprint, own_dataset=own)
    name = metrics_file_name(split, None if own else fingerprint)
    result["file"] = name
    atomic_write_json(os.path.join(train_dir, name), result)
    return result, inputs, probs
