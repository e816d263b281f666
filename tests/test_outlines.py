"""The outline set (images with their nodule masks) and its place in the folds."""

import os

import numpy as np
import pytest
from PIL import Image

from thyroid.datasets import build, ddti, folds, outlines, shards


@pytest.fixture(scope="module")
def outline_case(synthetic_root, tmp_path_factory):
    """(OutlineSet, development shards folder with folds.json) over the synthetic DDTI."""
    base = tmp_path_factory.mktemp("outlines")
    ddti_dir = os.path.join(synthetic_root, "ddti")
    dataset_dir = str(base / "shards")
    build.build(build.BuildConfig(output_dir=dataset_dir, sources={"ddti": ddti_dir},
                                  validation_fraction=0.0, test_fraction=0.0,
                                  augment_copies=0, seed=0, overwrite=True))
    folds.write_folds(dataset_dir, "train", 3, num_repeats=2, seed=0)
    return outlines.build_outline_set({"ddti": ddti_dir}, str(base / "outlines")), dataset_dir


def test_broken_ddti_outlines_are_skipped_with_their_reason(outline_case):
    outline_set, _ = outline_case
    reasons = outline_set.summary["without_outline_reasons"]
    # The synthetic DDTI empties the last mark of cases 4, 17, ... and cuts 7, 20 short.
    assert set(reasons) <= {ddti.EMPTY_OUTLINE, ddti.BROKEN_OUTLINE}
    broken = {r.key: r.reason for r in outline_set.records if r.reason}
    assert any(key.startswith("ddti:4_") for key in broken)
    assert any(reason == ddti.BROKEN_OUTLINE for reason in broken.values())
    assert all(r.label is not None for r in outline_set.records if not r.has_outline)
    assert outline_set.summary["unlabelled_with_outline"] > 0
    assert ddti.outline_problem("") == ddti.EMPTY_OUTLINE
    assert ddti.outline_problem('[{"points": [') == ddti.BROKEN_OUTLINE
    assert ddti.outline_problem('[{"points": []}]') == ddti.NO_POINTS
    assert ddti.outline_problem('[{"points": [{"x": 1, "y": 2}]}]') == ""


def test_labelled_crops_are_the_shard_pixels_and_masks_sit_on_the_nodule(outline_case):
    outline_set, dataset_dir = outline_case
    data = shards.load_split(dataset_dir, "train")
    index = outline_set.index_of()
    originals = [i for i in range(len(data)) if not data.augmented[i]]
    assert {data.keys[i] for i in originals} <= set(index)
    for i in originals[:8]:
        record = outline_set.records[index[data.keys[i]]]
        np.testing.assert_array_equal(outline_set.image(index[data.keys[i]]), data.images[i])
        assert record.size == data.images[i].shape[:2]
    contrast = []
    for i, record in enumerate(outline_set.records):
        if record.has_outline:
            mask, gray = outline_set.mask(i), outline_set.image(i).mean(axis=2)
            assert mask.shape == record.size and 0 < mask.mean() < 0.6
            contrast.append(abs(gray[mask].mean() - gray[~mask].mean()))
    assert np.median(contrast) > 5  # the drawn nodule differs from its surroundings


def test_no_fold_trains_its_segmentation_on_a_test_patient_or_a_copy(outline_case):
    outline_set, dataset_dir = outline_case
    fold_data = folds.load_folds(os.path.join(dataset_dir, folds.FOLDS_NAME))
    records = outline_set.records
    for repeat in range(2):
        tested = []
        for fold in range(3):
            parts = folds.outline_parts(records, fold_data, repeat, fold)
            train, test = parts["train"], parts["test"]
            assert train and test
            assert not {records[i].unit for i in train} & {records[i].unit for i in test}
            assert not {records[i].sha256 for i in train} & {records[i].sha256 for i in test}
            members = folds.fold_members(fold_data, repeat, fold)
            held = members["validation"] | members["test"]
            assert not {records[i].key for i in train} & held
            assert {records[i].key for i in test} & members["test"]
            tested += test
        outlined = {records[i].sha256 for i, r in enumerate(records) if r.has_outline}
        assert {records[i].sha256 for i in tested} == outlined  # each image tested once
        assert len(tested) == len(set(tested))
    refit = folds.outline_parts(records, fold_data, 0, folds.REFIT_FOLD)
    assert not refit["test"] and len(refit["train"]) == len(outlined)


def test_copies_share_a_unit_and_unlabelled_images_go_with_their_labelled_twin(outline_case):
    outline_set, _ = outline_case
    by_sha = {}
    for record in outline_set.records:
        by_sha.setdefault(record.sha256, []).append(record)
    copies = [group for group in by_sha.values() if len(group) > 1]
    assert copies and all(len({r.unit for r in group}) == 1 for group in copies)
    # Hand-made: labelled a (unit A), b (unit B); unlabelled u shares unit A, v stands alone.
    record = outlines.OutlineRecord
    records = [record("a", "p:a", "A", 1, "s1", (0, 9, 0, 9), [[[1, 1], [5, 1], [5, 5]]]),
               record("b", "p:b", "B", 0, "s2", (0, 9, 0, 9), [[[1, 1], [5, 1], [5, 5]]]),
               record("u", "p:u", "A", None, "s3", (0, 9, 0, 9), [[[1, 1], [5, 1], [5, 5]]]),
               record("v", "p:v", "V", None, "s4", (0, 9, 0, 9), [[[1, 1], [5, 1], [5, 5]]])]
    fold_data = {"images": ["a", "b"], "num_folds": 2, "num_repeats": 1, "seed": 0,
                 "repeats": [{"folds": [{"train": [1], "validation": [], "test": [0]},
                                        {"train": [0], "validation": [], "test": [1]}]}]}
    first, second = (folds.outline_parts(records, fold_data, 0, k) for k in (0, 1))
    assert 0 in first["test"] and 2 in first["test"] and 2 in second["train"]
    assert (3 in first["test"]) != (3 in second["test"])  # v is dealt to one fold
    fold_data["repeats"][0]["folds"][1] = {"train": [], "validation": [0], "test": [1]}
    held = folds.outline_parts(records, fold_data, 0, 1)
    assert 0 not in held["train"] + held["test"] and 2 not in held["train"] + held["test"]


def test_a_mask_image_beside_an_image_gives_its_outline(tmp_path):
    from thyroid.datasets import example, images
    rgb = np.full((120, 160, 3), 90, np.uint8)
    rgb[40:80, 50:110] = 30
    mask = np.zeros((120, 160), np.uint8)
    mask[40:80, 50:110] = 255
    folder = tmp_path / "benign"
    folder.mkdir()
    Image.fromarray(rgb).save(folder / "scan.png")
    Image.fromarray(mask).save(folder / "scan_mask.png")
    Image.fromarray(mask[:60]).save(folder / "other_mask.png")
    Image.fromarray(rgb).save(folder / "other.png")
    result = example.ReadResult(source="folders")
    for name in ("scan", "other"):
        result.examples.append(example.Example(
            source="folders", case_id=name, patient_id=f"folders:{name}",
            image_path=str(folder / f"{name}.png"), label=0, key=f"folders:benign/{name}.png"))
    records, crops, skipped = outlines.collect({"folders": result}, crop="none")
    assert [r.key for r in records] == ["folders:benign/scan.png"]
    assert skipped == [{"path": str(folder / "other.png"),
                        "reason": outlines.MASK_SIZE_MISMATCH}]
    drawn = outlines.rasterize(records[0].polygons, 120, 160)
    assert abs(int(drawn.sum()) - 40 * 60) < 250
    assert images.is_mask_file("a/B_MASK.png") and not images.is_mask_file("a/b.png")
