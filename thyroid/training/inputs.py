"""What a run's graph is fed for one split: resized images or cached activations.

Both live on disk (``features.load_or_resize``, ``features.load_or_compute``) and reach a run
as ``row_files.RowFile``s, which read the rows a batch needs when it is indexed: a split of
any size costs the run its labels and one batch at a time, and the batch order
(``loop.batch_indices``) is the same as for arrays in memory. A run with a ``fold_file`` reads
the fold file's split and selects the fold's records (``datasets.folds``) as a view of those
rows. Whole splits are kept in a small in-process cache keyed by the shard fingerprint, so the
folds and rows of one study read each split's metadata once.
"""

import dataclasses
import os

import numpy as np

from thyroid.datasets import folds, shards
from thyroid.training.features import load_or_compute, load_or_resize
from thyroid.nets import get_network
from thyroid.training.model import IMAGES, input_kind
from thyroid.training.row_files import RowFile

CACHE_ENTRIES = 4  # a study alternates between a few (model, size) inputs of one split


@dataclasses.dataclass
class SplitInputs:
    values: RowFile  # or an array; rows are read when indexed
    labels: np.ndarray
    patient_ids: np.ndarray
    keys: np.ndarray = None  # original image of each record
    augmented: np.ndarray = None

    def subset(self, indices):
        values = self.values.take(indices) if isinstance(self.values, RowFile) else \
            self.values[indices]
        return SplitInputs(values, self.labels[indices], self.patient_ids[indices],
                           self.keys[indices], self.augmented[indices])


_CACHE = {}


def _remember(key, compute):
    entry = _CACHE.get(key)
    values = getattr(entry, "values", None)
    if isinstance(values, RowFile) and not os.path.exists(values.path):
        del _CACHE[key]  # its file was deleted (a cleared cache dir): read it again
    if key not in _CACHE:
        if len(_CACHE) >= CACHE_ENTRIES:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = compute()
    return _CACHE[key]


def _metadata(dataset_dir, split):
    def read():
        return shards.load_split_metadata(dataset_dir, split)
    data = _remember(("metadata", shards.split_fingerprint(dataset_dir, split)), read)
    return data.labels, data.patient_ids, data.keys, data.augmented


def cache_dir_of(config):
    return config.cache_dir or os.path.join(config.dataset_dir, "activation_cache")


def _whole_split(config, split):
    kind = input_kind(config.mode, config.uses_frozen_prefix)
    fingerprint = shards.split_fingerprint(config.dataset_dir, split)
    labels, patient_ids, keys, augmented = _metadata(config.dataset_dir, split)
    if kind == IMAGES:
        def resized():
            images = load_or_resize(config.dataset_dir, split, config.image_size,
                                    cache_dir_of(config))
            return SplitInputs(images, np.asarray(labels, np.int64), np.asarray(patient_ids, str),
                               keys, augmented)
        return _remember((kind, fingerprint, config.image_size, cache_dir_of(config)), resized)

    def compute():
        activations = load_or_compute(get_network(config.model), config.dataset_dir, split, kind,
                                      config.checkpoint_path, config.image_size, cache_dir_of(config),
                                      seed=config.seed, layers=config.feature_layers)
        return SplitInputs(activations.values, np.asarray(activations.labels, np.int64),
                           activations.patient_ids, keys, augmented)
    return _remember((kind, fingerprint, config.model, config.image_size, config.checkpoint_path,
                      config.seed, tuple(config.feature_layers), cache_dir_of(config)), compute)


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
