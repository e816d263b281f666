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


def copy_folds(fold_file, dataset_dir, split):
    """Writes ``fold_file`` (another build's folds.json) beside ``dataset_dir``'s manifest, so
    that a build of the same images with other augmented copies is cross-validated on the same
    folds; a ValueError naming both when the original images of ``split`` are not exactly the
    fold file's. Returns the folds' dict."""
    folds = read_json(fold_file)
    data = shards.load_split_metadata(dataset_dir, split)
    keys = data.keys[~data.augmented].tolist()
    if folds.get("split") != split or sorted(keys) != sorted(folds["images"]):
        raise ValueError(f"{dataset_dir}: its {split} images are not those of the folds in "
                         f"{fold_file} ({len(keys)} against {len(folds['images'])}); the two "
                         "builds must hold the same images")
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



# --------------------------------------------------------------------------------------
# The outline set's images in the folds (segmentation)
# --------------------------------------------------------------------------------------

OUTLINE_ROLES = ("train", "test")


def dealt_units(units, num_folds, seed, repeat):
    """{unit: fold} for units no labelled image places (unlabelled patients): shuffled per
    repeat and dealt round-robin, like the labelled units."""
    ordered = sorted(set(units))
    np.random.RandomState([seed, repeat]).shuffle(ordered)
    return {unit: index % num_folds for index, unit in enumerate(ordered)}


def _unit_parts(records, members):
    """{unit: set of fold parts its labelled images are in}."""
    part_of = {key: part for part, keys in members.items() for key in keys}
    parts = {}
    for record in records:
        parts.setdefault(record.unit, set())
        if record.key in part_of:
            parts[record.unit].add(part_of[record.key])
    return parts


def _unit_role(parts, dealt_fold, fold):
    """'train', 'test' or None (held out of the segmentation: a unit of the inner validation
    part, whose images must stay as unseen as the test fold's)."""
    if not parts:
        return "test" if dealt_fold == fold else "train"
    if parts == {"train"}:
        return "train"
    if parts == {"test"}:
        return "test"
    return None


def outline_parts(records, folds, repeat, fold):
    """{'train': [...], 'test': [...]}: indices of the outlined ``records`` (datasets.outlines)
    a fold's segmentation model trains on and is tested on.

    A unit (patients linked by a byte-identical image, labelled or not) goes where its labelled
    images go: test with the fold's test part; training only when all of them train the fold
    (a unit of the inner validation part is in neither). Units of unlabelled images alone are
    dealt to folds (``dealt_units``). Byte-identical images count once. ``REFIT_FOLD``: every
    outlined image trains."""
    if fold == REFIT_FOLD:
        roles = {record.unit: "train" for record in records}
    else:
        parts = _unit_parts(records, fold_members(folds, repeat, fold))
        dealt = dealt_units([u for u, p in parts.items() if not p], folds["num_folds"],
                            folds.get("seed", 0), repeat)
        roles = {unit: _unit_role(p, dealt.get(unit), fold) for unit, p in parts.items()}
    chosen = {role: [] for role in OUTLINE_ROLES}
    seen = set()
    for index, record in enumerate(records):
        role = roles.get(record.unit)
        if role is None or not record.has_outline or record.sha256 in seen:
            continue
        seen.add(record.sha256)
        chosen[role].append(index)
    return chosen
