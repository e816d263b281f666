"""The shift score's feature vectors: EfficientNet-Lite0's frozen ImageNet prefix, pooled,
the same from the shards' activation cache, from images in memory and from the converted
model an export can carry."""

import shutil

import numpy as np
import pytest

from thyroid.datasets import shards
from thyroid.stats import shift
from thyroid.training import shift_features

DIMENSION = 192  # the mean over space of each of blocks_14's 192 channels


def test_split_features_are_the_original_images_features_from_the_cache(
        patient_build, efficientnet_checkpoint, tmp_path):
    dataset_dir, _ = patient_build
    cache = str(tmp_path / "cache")
    split = shift_features.split_features(str(dataset_dir), "train", efficientnet_checkpoint,
                                          cache, image_size=96)
    data = shards.load_split(str(dataset_dir), "train")
    originals = np.flatnonzero(~data.augmented)
    assert data.augmented.any()                       # copies exist and are left out
    np.testing.assert_array_equal(split.records, originals)
    np.testing.assert_array_equal(split.keys, data.keys[originals])
    assert split.values.shape == (originals.size, DIMENSION)
    assert np.all(np.isfinite(split.values))
    in_memory = shift_features.image_features([data.images[i] for i in originals[:6]],
                                              efficientnet_checkpoint, image_size=96)
    np.testing.assert_allclose(in_memory, split.values[:6], rtol=1e-4,
                               atol=1e-4 * np.abs(split.values).max())
    again = shift_features.split_features(str(dataset_dir), "train", efficientnet_checkpoint,
                                          cache, image_size=96)
    np.testing.assert_array_equal(again.values, split.values)   # read back from the cache


def test_the_converted_feature_model_computes_the_same_features(patient_build,
                                                                efficientnet_checkpoint):
    dataset_dir, _ = patient_build
    data = shards.load_split(str(dataset_dir), "test")
    pictures = data.images[:5]
    model = shift_features.FeatureModel(
        shift_features.convert_feature_model(efficientnet_checkpoint, image_size=96))
    assert model.image_size == 96
    expected = shift_features.image_features(pictures, efficientnet_checkpoint, image_size=96)
    np.testing.assert_allclose(model.features(pictures), expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())
    assert model.features([]).shape == (0, DIMENSION)


def test_the_reference_names_its_features_and_refuses_random_weights(efficientnet_checkpoint,
                                                                     tmp_path):
    named = shift_features.description(efficientnet_checkpoint, 96)
    assert named.startswith("efficientnet_lite0 blocks_14 ") and "96px" in named
    values = np.random.default_rng(0).normal(size=(20, 6))
    reference = shift_features.fit_reference(values, [np.arange(0, 20, 2), np.arange(1, 20, 2)],
                                             efficientnet_checkpoint, 96)
    path = tmp_path / shift.FILE_NAME
    shift_features.write_reference(str(path), reference)
    assert shift.read_reference(str(path)).features == named
    with pytest.raises(ValueError, match="ImageNet checkpoint"):
        shift_features.image_features([np.zeros((8, 8, 3), np.uint8)], None)


def test_development_shift_is_cross_fitted_over_the_shards_folds(patient_build,
                                                                  efficientnet_checkpoint,
                                                                  tmp_path):
    from thyroid.datasets import folds
    dataset_dir = tmp_path / "shards"
    shutil.copytree(patient_build[0], dataset_dir)    # folds.json is written beside a copy
    written = folds.write_folds(str(dataset_dir), "train", 3)
    cache = str(tmp_path / "cache")
    development = shift_features.development_shift(str(dataset_dir), efficientnet_checkpoint,
                                                   cache, image_size=96)
    assert list(development.keys) == written["images"]
    split = shift_features.split_features(str(dataset_dir), "train", efficientnet_checkpoint,
                                          cache, image_size=96)
    first_test = written["repeats"][0]["folds"][0]["test"]
    others = np.setdiff1d(np.arange(len(split.keys)), first_test)
    expected = shift.fit_distance(split.values[others]).scores(split.values[first_test])
    np.testing.assert_allclose(development.scores[first_test], expected)
    np.testing.assert_array_equal(development.reference.development_scores,
                                  np.sort(development.scores))
    assert np.all((development.shift >= 0) & (development.shift < 100))
    assert development.reference.features == shift_features.description(
        efficientnet_checkpoint, 96)
