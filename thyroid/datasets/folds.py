"""Cross-validation folds over shards built once: which records each fold trains, validates
and tests on.

The study builds every labelled image (and its augmented copies) into one split, then
``write_folds`` records a patient-grouped assignment (``splits.cross_validation_folds``)
keyed by the images' ``image/key`` in ``folds.json`` beside the manifest. A fold's training
part takes the augmented copies of its own training images only, so augmentation never
touches validation or test images. Fold ``REFIT_FOLD`` trains on every image (the refit on
all development data after cross-validation).
"""

import os

import numpy as np

from thyroid.datasets import shards, splits
from thyroid.io_utils import atomic_write_json, read_json

FOLDS_NAME = "folds.json"
REFIT_FOLD = -1
PARTS = ("train", "validation", "test")


def split_units(patient_ids, duplicates):
    """Split unit per image: patients linked by a byte-identical image (manifest
    ``duplicates``) share a unit."""
    patients, digests = list(patient_ids), [f"own:{i}" for i in range(len(patient_ids))]
    for group in duplicates or ():
        for patient in group.get("patients", ()):
            patients.append(patient)
            digests.append(group["sha256"])
    units = splits.group_patients(patients, digests)
    return [units[patient] for patient in patient_ids]


def write_folds(dataset_dir, split, num_folds, num_repeats=1, seed=0,
                inner_validation_fraction=0.15):
    """Assigns the original images of ``split`` to folds; writes and returns folds.json's dict."""
    data = shards.load_split_metadata(dataset_dir, split)
    originals = np.flatnonzero(~data.augmented)
    keys = data.keys[originals]
    if len(keys) and (not all(keys) or len(set(keys)) != len(keys)):
        raise ValueError(f"{dataset_dir}: the {split} shards lack unique image keys; rebuild "
                         "them with this version of thyroid.build_tfrecords")
    manifest = shards.read_manifest(dataset_dir)
    groups = split_units(data.patient_ids[originals], manifest.get("duplicates"))
    assignment = splits.cross_validation_folds(
        data.labels[originals].tolist(), groups, num_folds, num_repeats, seed,
        inner_validation_fraction)
    folds = dict(assignment, split=split, images=keys.tolist(),
                 patient_ids=data.patient_ids[originals].tolist(),
                 labels=data.labels[originals].tolist(), units=list(groups))
    atomic_write_json(os.path.join(dataset_dir, FOLDS_NAME), folds)
    return folds


_LOADED = {}


def load_folds(path):
    """folds.json (memoised by path and mtime: every fold of every row reads it)."""
    memo = (os.path.abspath(path), os.stat(path).st_mtime_ns)
    if memo not in _LOADED:
        _LOADED[memo] = read_json(path)
    return _LOADED[memo]


def fold_members(folds, repeat, fold):
    """{part: set of image keys} of one fold; ``REFIT_FOLD`` puts every image in train."""
    keys = folds["images"]
    if fold == REFIT_FOLD:
        return {"train": set(keys), "validation": set(), "test": set()}
    if not 0 <= repeat < folds["num_repeats"] or not 0 <= fold < folds["num_folds"]:
        raise ValueError(f"no fold {fold} of repeat {repeat}: the fold file has "
                         f"{folds['num_repeats']} repeats of {folds['num_folds']} folds")
    chosen = folds["repeats"][repeat]["folds"][fold]
    return {part: {keys[i] for i in chosen[part]} for part in PARTS}


def select(keys, augmented, members, part):
    """Indices of the records of ``part``: its original images, plus their augmented copies
    for the training part only."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; expected one of {PARTS}")
    wanted = members[part]
    return np.asarray([i for i, (key, copy) in enumerate(zip(keys, augmented))
                       if key in wanted and (part == "train" or not copy)], dtype=np.int64)

