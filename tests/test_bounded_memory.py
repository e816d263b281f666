"""Passes over a split stream its records: nothing holds a whole split's images, frozen
passes decode only the records someone reads, and runs read their inputs from disk."""

import numpy as np
import pytest

from thyroid.datasets import shards
from thyroid.nets import get_network
from thyroid.preprocessing.resize import resize_batch
from thyroid.training import features, frozen_network, inputs
from thyroid.training.model import IMAGES, input_kind
from thyroid.training.row_files import RowFile
from thyroid.training.run_config import MODES, RunConfig


@pytest.fixture
def counted_decodes(monkeypatch):
    """Counts decoded records; loading a split with its images fails the test."""
    decoded = []
    decode = shards.decode_image
    load_split = shards.load_split

    def counting_decode(encoded):
        decoded.append(len(encoded))
        return decode(encoded)

    def no_whole_split(dataset_dir, split, decode=True, images=True):
        assert not images, "a whole split's images were loaded"
        return load_split(dataset_dir, split, decode, images)
    monkeypatch.setattr(shards, "decode_image", counting_decode)
    monkeypatch.setattr(shards, "load_split", no_whole_split)
    return decoded


def split_sizes(dataset_dir):
    """{split: (records, original images)}."""
    out = {}
    for split in shards.SPLITS:
        augmented = shards.load_split_metadata(str(dataset_dir), split).augmented
        out[split] = (len(augmented), int((~augmented).sum()))
    return out


@pytest.mark.parametrize("output", [frozen_network.BOTTLENECK, frozen_network.POOLED_LAYERS])
def test_a_frozen_pass_decodes_each_record_it_computes_once(patient_build, tmp_path,
                                                            counted_decodes, output):
    dataset_dir, _ = patient_build
    sizes = split_sizes(dataset_dir)
    result = features.load_or_compute(get_network("efficientnet_lite0"), str(dataset_dir),
                                      "train", output, None, 64, str(tmp_path))
    everything = sum(records for records, _ in sizes.values())
    originals = sum(kept for _, kept in sizes.values())
    assert sizes["train"][0] > sizes["train"][1]  # the train split holds augmented copies
    assert len(counted_decodes) == (originals if output == frozen_network.POOLED_LAYERS
                                    else everything)
    assert isinstance(result.values, RowFile) and len(result.values) == sizes["train"][0]


def test_batches_hold_at_most_batch_size_images(patient_build):
    dataset_dir, _ = patient_build
    count = len(shards.load_split_metadata(str(dataset_dir), "train"))
    batches = list(features.stream_batches(str(dataset_dir), {"train": range(count)}, 32, 7))
    assert all(len(rows) == len(images) <= 7 for rows, images in batches)
    assert [row for rows, _ in batches for row in rows] == [("train", i) for i in range(count)]


def test_runs_fed_images_read_resized_rows_from_disk(patient_build, tmp_path, monkeypatch):
    dataset_dir, _ = patient_build
    expected = resize_batch(shards.load_split(str(dataset_dir), "validation").images, 32)
    config = RunConfig(model="small_cnn", mode="scratch", dataset_dir=str(dataset_dir),
                       image_size=32, cache_dir=str(tmp_path / "cache"))
    monkeypatch.setattr(inputs, "_CACHE", {})
    split = inputs.load_split_inputs(config, "validation")
    assert isinstance(split.values, RowFile)
    np.testing.assert_array_equal(np.asarray(split.values), expected)
    np.testing.assert_array_equal(split.values[[2, 0]], expected[[2, 0]])
    monkeypatch.setattr(inputs, "_CACHE", {})  # a new process reads the cached file
    again = inputs.load_split_inputs(config, "validation")
    assert again.values.path == split.values.path


def test_augmented_rows_are_computed_exactly_for_the_modes_that_train_on_them():
    """bottleneck_logreg drops a training part's augmented copies (run.fit_logreg_run); every
    other mode trains on them, so the outputs those modes read must cover the copies."""
    for mode in MODES:
        for uses_frozen_prefix in (False, True):
            kind = input_kind(mode, uses_frozen_prefix)
            if kind != IMAGES:
                assert features.READS_AUGMENTED[kind] == (mode != "bottleneck_logreg"), mode
    augmented = np.array([False, True, True, False, True])
    for output, expected in ((frozen_network.BOTTLENECK, [0, 1, 2, 3, 4]),
                             (frozen_network.FROZEN_PREFIX, [0, 1, 2, 3, 4]),
                             (frozen_network.POOLED_LAYERS, [0, 3])):
        np.testing.assert_array_equal(features.computed_records(augmented, (output,)), expected)
