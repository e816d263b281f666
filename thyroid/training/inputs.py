"""The arrays a run's graph is fed for one split: resized images or cached activations."""

import dataclasses

import numpy as np

from thyroid.datasets import shards
from thyroid.training.features import load_or_compute
from thyroid.nets import get_network
from thyroid.preprocessing.resize import resize_batch
from thyroid.training.model import IMAGES, input_kind


@dataclasses.dataclass
class SplitInputs:
    values: np.ndarray
    labels: np.ndarray
    patient_ids: np.ndarray


def load_split_inputs(config, split):
    kind = input_kind(config.mode, config.uses_frozen_prefix)
    if kind == IMAGES:
        data = shards.load_split(config.dataset_dir, split)
        return SplitInputs(resize_batch(data.images, config.image_size),
                           np.asarray(data.labels, np.int64), np.asarray(data.patient_ids, str))
    activations = load_or_compute(get_network(config.model), config.dataset_dir, split, kind,
                                  config.checkpoint_path, config.image_size, config.cache_dir,
                                  seed=config.seed)
    return SplitInputs(activations.values, np.asarray(activations.labels, np.int64),
                       activations.patient_ids)
