"""The arrays a run's graph is fed for one split: resized images or cached activations.

A run with a ``fold_file`` reads the fold file's split once and selects the fold's records
(``datasets.folds``). Whole splits are kept in a small in-process cache keyed by the shard
fingerprint, so the folds and rows of one study decode and resize each image once.
"""

import dataclasses

import numpy as np

from thyroid.datasets import folds, shards
from thyroid.training.features import load_or_compute
from thyroid.nets import get_network
from thyroid.preprocessing.resize import resize_batch
from thyroid.training.model import IMAGES, input_kind

CACHE_ENTRIES = 4  # a study alternates between a few (model, size) inputs of one split


@dataclasses.dataclass
class SplitInputs:
    values: np.ndarray
    labels: np.ndarray
    patient_ids: np.ndarray
    keys: np.ndarray = None  # original image of each record
    augmented: np.ndarray = None

    def subset(self, indices):
        return SplitInputs(self.values[indices], self.labels[indices], self.patient_ids[indices],
                           self.keys[indices], self.augmented[indices])


_CACHE = {}


def _remember(key, compute):
    if key not in _CACHE:
        if len(_CACHE) >= CACHE_ENTRIES:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = compute()
    return _CACHE[key]


def _metadata(dataset_dir, split):
    def read():
        data = shards.load_split(dataset_dir, split, decode=False)
        return data.labels, data.patient_ids, data.keys, data.augmented
    return _remember(("metadata", shards.split_fingerprint(dataset_dir, split)), read)


def _whole_split(config, split):
    kind = input_kind(config.mode, config.uses_frozen_prefix)
    fingerprint = shards.split_fingerprint(config.dataset_dir, split)
    if kind == IMAGES:
        def read():
            data = shards.load_split(config.dataset_dir, split)
            return SplitInputs(resize_batch(data.images, config.image_size),
                               np.asarray(data.labels, np.int64), np.asarray(data.patient_ids, str),
                               data.keys, data.augmented)
        return _remember((kind, fingerprint, config.image_size), read)
    labels, patient_ids, keys, augmented = _metadata(config.dataset_dir, split)

    def compute():
        activations = load_or_compute(get_network(config.model), config.dataset_dir, split, kind,
                                      config.checkpoint_path, config.image_size, config.cache_dir,
                                      seed=config.seed, layers=config.feature_layers)
        return SplitInputs(activations.values, np.asarray(activations.labels, np.int64),
                           activations.patient_ids, keys, augmented)
    return _remember((kind, fingerprint, config.model, config.image_size, config.checkpoint_path,
                      config.seed, tuple(config.feature_layers)), compute)


def load_split_inputs(config, split):
    """The inputs of ``split``: a shard split, or with ``config.fold_file`` the fold's
    train / validation / test part of the fold file's split."""
    if not config.fold_file:
        return _whole_split(config, split)
    fold_data = folds.load_folds(config.fold_file)
    whole = _whole_split(config, fold_data["split"])
    members = folds.fold_members(fold_data, config.cv_repeat, config.cv_fold)
    return whole.subset(folds.select(whole.keys, whole.augmented, members, split))


def part_size(config, split):
    """How many records ``load_split_inputs(config, split)`` returns, without loading values."""
    if not config.fold_file:
        return len(_metadata(config.dataset_dir, split)[0])
    fold_data = folds.load_folds(config.fold_file)
    _, _, keys, augmented = _metadata(config.dataset_dir, fold_data["split"])
    members = folds.fold_members(fold_data, config.cv_repeat, config.cv_fold)
    return len(folds.select(keys, augmented, members, split))
