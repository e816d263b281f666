"""Cross-validation fold assignment (thyroid.datasets.splits.cross_validation_folds)."""

import collections
import json

import numpy as np
import pytest

from thyroid.datasets import splits


def _synthetic_images(num_patients=60, seed=0):
    """Patients with 1-4 images each, ~70% malignant; three pairs share an identical image."""
    rng = np.random.RandomState(seed)
    patient_ids, labels, hashes = [], [], []
    for patient in range(num_patients):
        label = int(rng.rand() < 0.7)
        for image in range(rng.randint(1, 5)):
            patient_ids.append(f"ddti:{patient}")
            labels.append(label)
            hashes.append(f"{patient}-{image}")
    for a, b in ((0, 1), (10, 31), (40, 41)):  # duplicate links across patients
        hashes[patient_ids.index(f"ddti:{b}")] = hashes[patient_ids.index(f"ddti:{a}")]
    labels[-1] = None  # an unlabelled image takes part in no fold
    return patient_ids, labels, hashes


def _folds(num_folds=5, num_repeats=2, seed=3):
    patient_ids, labels, hashes = _synthetic_images()
    groups = splits.split_units_of_images(patient_ids, hashes)
    assignment = splits.cross_validation_folds(labels, groups, num_folds, num_repeats, seed,
                                               inner_validation_fraction=0.2)
    return patient_ids, labels, groups, assignment


def test_every_labelled_image_in_exactly_one_test_fold_per_repeat():
    _, labels, _, assignment = _folds()
    labelled = {i for i, label in enumerate(labels) if label is not None}
    assert len(assignment["repeats"]) == 2
    for repeat in assignment["repeats"]:
        tested = collections.Counter(i for fold in repeat["folds"] for i in fold["test"])
        assert set(tested) == labelled and set(tested.values()) == {1}
        for fold in repeat["folds"]:
            parts = [set(fold[name]) for name in ("train", "validation", "test")]
            assert parts[0] | parts[1] | parts[2] == labelled
            assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
            assert fold["validation"], "inner validation must not be empty"


def test_folds_disjoint_by_patient_and_duplicate_group():
    patient_ids, _, groups, assignment = _folds()
    assert groups[patient_ids.index("ddti:1")] == groups[patient_ids.index("ddti:0")]
    for repeat in assignment["repeats"]:
        for fold in repeat["folds"]:
            part_of = {}
            for name in ("train", "validation", "test"):
                for index in fold[name]:
                    for key in (("patient", patient_ids[index]), ("unit", groups[index])):
                        assert part_of.setdefault(key, name) == name, key


def test_class_units_per_fold_within_one_of_even_share():
    """Stratification is over units: per class, each test fold holds floor/ceil units."""
    _, labels, groups, assignment = _folds()
    unit_labels = splits.unit_labels_of(labels, groups)
    totals = collections.Counter(unit_labels.values())
    for repeat in assignment["repeats"]:
        for fold in repeat["folds"]:
            units = {groups[i] for i in fold["test"]}
            per_class = collections.Counter(unit_labels[u] for u in units)
            for label, total in totals.items():
                assert abs(per_class[label] - total / 5) < 1, (label, per_class[label], total)
            # Inner validation is stratified too: both classes present.
            assert {unit_labels[groups[i]] for i in fold["validation"]} == {0, 1}


def test_mixed_unit_counts_as_malignant():
    labels = [0, 1, 0, 0, 1, 1, 0, 1]
    groups = ["a", "a", "b", "c", "d", "e", "f", "g"]
    assert splits.unit_labels_of(labels, groups)["a"] == 1
    assignment = splits.cross_validation_folds(labels, groups, 2, seed=0)
    for fold in assignment["repeats"][0]["folds"]:
        assert (0 in fold["test"]) == (1 in fold["test"])


def test_seeded_repeats_differ_and_structure_is_json():
    _, _, _, first = _folds(seed=3)
    _, _, _, again = _folds(seed=3)
    _, _, _, other = _folds(seed=4)
    assert first == again and first != other
    repeats = first["repeats"]
    assert repeats[0]["folds"][0]["test"] != repeats[1]["folds"][0]["test"]
    assert json.loads(json.dumps(first)) == first
    assert first["num_folds"] == 5 and first["unit"].startswith("patient")


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(splits.FoldCountError, match="only 1 benign patient units"):
        splits.cross_validation_folds([0, 1, 1], ["a", "b", "b"], 3)
    with pytest.raises(ValueError, match="num_folds"):
        splits.cross_validation_folds([0, 1], ["a", "b"], 1)
    with pytest.raises(ValueError, match="differ in length"):
        splits.cross_validation_folds([0, 1], ["a"], 2)
