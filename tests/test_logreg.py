"""bottleneck_logreg: pooled multi-layer features (cached, keyed by the layer list), C chosen
inside the training data only, and the mode end to end through train / evaluate."""

import json
import os

import numpy as np
import pytest

from thyroid import evaluate as evaluate_cli
from thyroid import train as train_cli
from thyroid.nets import get_network
from thyroid.training import features, frozen_network, logreg
from thyroid.training.run_config import ConfigError

EFFNET = get_network("efficientnet_lite0")
TWO_LAYERS = ("blocks_4", "conv_head")


def pooled(dataset_dir, cache_dir, layers, split="test"):
    return features.load_or_compute(EFFNET, str(dataset_dir), split,
                                    frozen_network.POOLED_LAYERS, None, 64, str(cache_dir),
                                    layers=layers)


def test_pooled_features_have_mean_and_sd_per_channel_and_are_cached_by_layer_list(
        patient_build, tmp_path):
    dataset_dir, manifest = patient_build
    first = pooled(dataset_dir, tmp_path, TWO_LAYERS)
    test_images = sum(manifest["splits"]["test"]["total"].values())
    assert first.values.shape == (test_images, 2 * (40 + 1280))  # blocks_4: 40, conv_head: 1280
    assert not first.reused and np.all(np.isfinite(first.values))
    assert np.all(first.values[:, 40:80] >= 0)  # blocks_4 SDs
    again = pooled(dataset_dir, tmp_path, TWO_LAYERS)
    assert again.reused and again.key == first.key
    np.testing.assert_array_equal(again.values, first.values)
    other = pooled(dataset_dir, tmp_path, ("conv_head",))
    assert not other.reused and other.key != first.key
    assert other.values.shape[1] == 2 * 1280
    # the same layer computed alone and with another layer gives the same values
    np.testing.assert_allclose(other.values, first.values[:, 80:], rtol=1e-4, atol=1e-5)
    default = pooled(dataset_dir, tmp_path, ())
    assert default.key == pooled(dataset_dir, tmp_path, EFFNET.feature_layers).key


def test_pooled_features_are_computed_for_original_images_only(patient_build, tmp_path):
    from thyroid.datasets import shards
    from thyroid.preprocessing.resize import resize_batch
    dataset_dir, _ = patient_build
    data = shards.load_split(str(dataset_dir), "train")
    copies = np.asarray(data.augmented, bool)
    assert copies.any() and (~copies).any()
    train = pooled(dataset_dir, tmp_path, TWO_LAYERS, split="train")
    assert train.values.shape[0] == len(copies)
    assert np.all(np.isnan(train.values[copies]))
    assert np.all(np.isfinite(train.values[~copies]))
    originals = [image for image, copy in zip(data.images, copies) if not copy]
    direct = features.compute_activations(EFFNET, resize_batch(originals, 64),
                                          frozen_network.POOLED_LAYERS, None, layers=TWO_LAYERS)
    np.testing.assert_allclose(train.values[~copies], direct, rtol=1e-4, atol=1e-5)


def test_pooled_features_average_the_image_and_its_mirror(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    values = features.compute_activations(EFFNET, images, frozen_network.POOLED_LAYERS, None,
                                          layers=TWO_LAYERS)
    mirrored = features.compute_activations(EFFNET, images[:, :, ::-1].copy(),
                                            frozen_network.POOLED_LAYERS, None, layers=TWO_LAYERS)
    np.testing.assert_allclose(values, mirrored, rtol=1e-4, atol=1e-5)
    assert not np.allclose(values[0], values[1])


def test_an_unknown_layer_names_the_flag_and_the_choices(tmp_path):
    images = np.zeros((1, 64, 64, 3), np.uint8)
    with pytest.raises(ConfigError, match=r"--feature_layers=blocks_99: .*blocks_4"):
        features.compute_activations(EFFNET, images, frozen_network.POOLED_LAYERS, None,
                                     layers=("blocks_99",))


def separable_data(seed=0, patients=40, per_patient=2, dims=30):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(patients) % 2, per_patient)
    groups = np.repeat([f"p{i}" for i in range(patients)], per_patient)
    values = rng.normal(size=(len(labels), dims))
    values[:, 0] += 3.0 * labels
    return values, labels, groups


def test_inner_splits_keep_each_patient_on_one_side():
    values, labels, groups = separable_data()
    splits = logreg.inner_splits(labels, groups)
    assert len(splits) == logreg.INNER_FOLDS
    for train, held_out in splits:
        assert not set(groups[train]) & set(groups[held_out])
        assert set(labels[held_out]) == {0, 1}


def test_c_is_chosen_from_the_training_data_alone(monkeypatch):
    values, labels, groups = separable_data()
    seen = []
    original = logreg.inner_aucs
    monkeypatch.setattr(logreg, "inner_aucs", lambda x, y, *a, **k: seen.append(len(y))
                        or original(x, y, *a, **k))
    train = np.arange(60)
    model, selection = logreg.fit_logreg(values[train], labels[train], groups[train])
    assert set(seen) == {60}  # every inner AUC was computed on the 60 training images
    assert selection["C"] in logreg.C_GRID and selection["patients"] == 30
    assert len(selection["inner_auc_by_C"]) == len(logreg.C_GRID)
    # Whatever the held-out images' labels, the choice (and the model) stay the same.
    flipped = labels.copy()
    flipped[60:] = 1 - flipped[60:]
    _, again = logreg.fit_logreg(values[train], flipped[train], groups[train])
    assert again == selection


def test_c_follows_the_inner_auc():
    values, labels, groups = separable_data(dims=5)
    aucs, _ = logreg.inner_aucs(values, labels, logreg.inner_splits(labels, groups))
    chosen, reported, capped = logreg.choose_c(values, labels, groups)
    assert reported == aucs and capped == 0
    assert aucs[chosen] == max(aucs.values()) > 0.9  # one strongly informative feature


def test_the_warm_started_path_finds_what_separate_fits_find():
    """Each C of the path starts from the previous C's solution; converged, it scores the
    held-out images as a fit of that C alone does."""
    values, labels, groups = separable_data(dims=30)
    train, held_out = logreg.inner_splits(labels, groups)[0]
    path, capped = logreg.path_scores(values, labels, train, held_out)
    assert capped == 0
    for c in logreg.C_GRID:
        alone = logreg.make_model(c).fit(values[train], labels[train])
        np.testing.assert_allclose(path[c], alone.predict_proba(values[held_out])[:, 1],
                                   atol=1e-2)  # within the solver tolerance


def test_the_search_grows_linearly_with_the_images(monkeypatch):
    """The C search on 4x the images makes at most ~4x the passes over them: the primal
    solver makes a bounded number of iterations, each one pass. The dual solver it replaced
    needed more passes as the images grew (about 10x the work for 4x the images here).
    Counted as solver iterations x images, not seconds, so the machine's load does not
    matter."""
    work = []

    class Counting(logreg.LogisticRegression):
        def fit(self, features, labels, *args, **kwargs):
            fitted = super().fit(features, labels, *args, **kwargs)
            work[-1] += int(np.max(self.n_iter_)) * len(labels)
            return fitted

    monkeypatch.setattr(logreg, "LogisticRegression", Counting)
    for patients in (150, 600):
        work.append(0)
        values, labels, groups = separable_data(patients=patients, dims=400, seed=3)
        logreg.fit_logreg(values, labels, groups)
    assert work[1] <= 4 * 1.5 * work[0], work


def test_too_few_patients_fall_back_to_a_fixed_c():
    values, labels, groups = separable_data(patients=3)
    assert logreg.inner_splits(labels, groups) == []
    assert logreg.choose_c(values, labels, groups) == (logreg.FALLBACK_C, {}, 0)


def test_the_mode_trains_evaluates_and_records_its_choice(patient_build, tmp_path):
    dataset_dir, manifest = patient_build
    train_dir = tmp_path / "run"
    common = [f"--dataset_dir={dataset_dir}", f"--train_dir={train_dir}"]
    assert train_cli.main(["train", "--model=efficientnet_lite0", "--mode=bottleneck_logreg",
                           "--image_size=64", "--allow_random_init", "--feature_layers=blocks_4",
                           f"--checkpoint_dir={tmp_path / 'none'}",
                           f"--cache_dir={tmp_path / 'cache'}", *common]) == 0
    saved = json.loads((train_dir / "run_config.json").read_text())["config"]
    assert saved["feature_layers"] == ["blocks_4"] and saved["mode"] == "bottleneck_logreg"
    selection = json.loads((train_dir / logreg.SELECTION_FILE).read_text())
    train_totals = manifest["splits"]["train"]
    assert selection["features"] == 80
    assert selection["images"] == sum(train_totals["original"].values())  # no augmented copies
    assert sum(train_totals["total"].values()) > selection["images"]
    assert evaluate_cli.main(["evaluate", "--split=test", *common]) == 0
    metrics = json.loads((train_dir / "metrics_test.json").read_text())
    assert metrics["mode"] == "bottleneck_logreg"
    assert metrics["counts"]["images"] == sum(manifest["splits"]["test"]["total"].values())
    assert 0.0 <= metrics["auc"]["value"] <= 1.0


def test_a_network_without_a_layer_list_needs_the_flag(patient_build, tmp_path):
    dataset_dir, _ = patient_build
    status = train_cli.main(["train", "--model=small_cnn", "--mode=bottleneck_logreg",
                             f"--dataset_dir={dataset_dir}", f"--train_dir={tmp_path / 'r'}"])
    assert status == 2
    assert not os.path.exists(tmp_path / "r" / "run_config.json")
