"""Train / validation / test assignment: by patient (stratified, duplicate-aware) or by image."""

import collections

import numpy as np

from thyroid.flag_errors import FlagValueError



class _UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, item):
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a, b):
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def group_patients(patient_ids, image_hashes):
    """Units of patients that must share a split: patients linked by a byte-identical image.

    ``patient_ids`` and ``image_hashes`` are parallel lists (one entry per image).
    Returns {patient_id: unit_id}, the unit id being the smallest patient id in the unit.
    """
    union = _UnionFind()
    first_patient_with_hash = {}
    for patient, digest in zip(patient_ids, image_hashes):
        union.find(patient)
        if digest in first_patient_with_hash:
            union.union(patient, first_patient_with_hash[digest])
        else:
            first_patient_with_hash[digest] = patient
    return {patient: union.find(patient) for patient in patient_ids}


def _split_sizes(count, validation_fraction, test_fraction):
    test = int(round(count * test_fraction))
    validation = int(round(count * validation_fraction))
    if count >= 3:  # keep every split non-empty when there is anything to share out
        test = max(test, 1 if test_fraction > 0 else 0)
        validation = max(validation, 1 if validation_fraction > 0 else 0)
    validation = min(validation, max(count - test, 0))
    return validation, test


def split_units(unit_labels, validation_fraction, test_fraction, seed):
    """Stratified random split of units. ``unit_labels``: {unit: label} -> {unit: split}."""
    rng = np.random.RandomState(seed)
    by_label = collections.defaultdict(list)
    for unit, label in sorted(unit_labels.items()):
        by_label[label].append(unit)
    assignment = {}
    for label in sorted(by_label):
        units = list(by_label[label])
        rng.shuffle(units)
        assignment.update(_assign_in_order(units, validation_fraction, test_fraction))
    return assignment


def split_by_patient(patient_ids, labels, image_hashes, validation_fraction, test_fraction,
                     seed):
    """One split per image, such that patients (and duplicate-linked patients) never straddle.

    A unit is stratified as malignant if any of its images is malignant.
    """
    units = group_patients(patient_ids, image_hashes)
    unit_labels = {}
    for patient, label in zip(patient_ids, labels):
        unit = units[patient]
        unit_labels[unit] = max(unit_labels.get(unit, 0), int(label))
    unit_split = split_units(unit_labels, validation_fraction, test_fraction, seed)
    assignment = [unit_split[units[patient]] for patient in patient_ids]
    assert_no_patient_overlap(patient_ids, assignment)
    return assignment


def split_by_image(count, validation_fraction, test_fraction, seed):
    """The paper's protocol: every image (augmented copies included) split at random."""
    order = np.random.RandomState(seed).permutation(count)
    by_index = _assign_in_order(list(order), validation_fraction, test_fraction)
    return [by_index[index] for index in range(count)]


def _assign_in_order(items, validation_fraction, test_fraction):
    """{item: split} for shuffled ``items``: the first go to test, the next to validation."""
    validation, test = _split_sizes(len(items), validation_fraction, test_fraction)
    return {item: "test" if rank < test else "validation" if rank < test + validation else "train"
            for rank, item in enumerate(items)}


def leakage(patient_ids, assignment):
    """Counts how often one patient appears in more than one split."""
    splits_of = collections.defaultdict(set)
    for patient, split in zip(patient_ids, assignment):
        splits_of[patient].add(split)
    train_patients = {p for p, s in splits_of.items() if "train" in s}
    return {
        "patients_in_multiple_splits": sum(1 for s in splits_of.values() if len(s) > 1),
        "test_images_with_patient_in_train": sum(
            1 for patient, split in zip(patient_ids, assignment)
            if split == "test" and patient in train_patients),
    }


def assert_no_patient_overlap(patient_ids, assignment):
    shared = leakage(patient_ids, assignment)["patients_in_multiple_splits"]
    assert shared == 0, f"{shared} patients appear in more than one split"


# --------------------------------------------------------------------------------------
# Cross-validation
# --------------------------------------------------------------------------------------

def split_units_of_images(patient_ids, image_hashes):
    """One split unit per image: its patient's unit after merging duplicate-linked patients."""
    units = group_patients(patient_ids, image_hashes)
    return [units[patient] for patient in patient_ids]


def unit_labels_of(labels, groups):
    """{unit: label} for labelled images; a unit with any malignant image counts as malignant.

    This is the rule ``split_by_patient`` uses, so a mixed unit is stratified the same way
    in both protocols. Images whose label is None are ignored.
    """
    unit_labels = {}
    for label, unit in zip(labels, groups):
        if label is not None:
            unit_labels[unit] = max(unit_labels.get(unit, 0), int(label))
    return unit_labels


def _deal_units_to_folds(unit_labels, num_folds, rng):
    """{unit: fold}: each class's units shuffled, then dealt round-robin.

    Dealing class by class (the next class continuing where the last stopped) gives every
    fold floor or ceil of (units of that class / num_folds) units of each class, and fold
    totals that differ by at most one unit.
    """
    by_label = collections.defaultdict(list)
    for unit, label in sorted(unit_labels.items()):
        by_label[label].append(unit)
    fold_of, position = {}, 0
    for label in sorted(by_label):
        units = by_label[label]
        rng.shuffle(units)
        for unit in units:
            fold_of[unit] = position % num_folds
            position += 1
    return fold_of


class FoldCountError(FlagValueError):
    """More folds than a class has patient units: some test folds would lack that class."""


def check_fold_count(unit_labels, num_folds):
    """Every class needs a patient unit in every test fold, or its folds score nothing (an
    AUC without one class is undefined, and would be reported as if measured)."""
    counts = collections.Counter(unit_labels.values())
    for label in (0, 1):
        if counts.get(label, 0) < num_folds:
            name = ("benign", "malignant")[label]
            raise FoldCountError(
                "cv_folds", num_folds, f"only {counts.get(label, 0)} {name} patient units "
                f"(patients linked by a shared image count once); use at most "
                f"{max(min(counts.get(0, 0), counts.get(1, 0)), 2)} folds")


# Kept instead of scikit-learn's StratifiedGroupKFold (switching would change every fold).
# That class balances each class's share of *images* across folds, placing groups greedily
# by their image counts, so where patients of one image sit beside patients of many, the
# folds' counts of malignant patients can differ several-fold; it yields test folds only,
# and only warns when a class has fewer images than folds. This one stratifies *patient
# units* (a unit is malignant when any image is) and deals each class's shuffled units
# round-robin, so every test fold holds floor or ceil of (units of the class / K); refuses
# a fold count some class cannot fill (FoldCountError); holds out a stratified inner-
# validation part of each fold's training units (thresholds, best epoch); repeats with
# fresh shuffles; and leaves images without a label out of every fold.
def cross_validation_folds(labels, groups, num_folds, num_repeats=1, seed=0,
                           inner_validation_fraction=0.15):
    """Patient-grouped, label-stratified K-fold assignment, repeated with fresh shuffles.

    ``labels``: per image 0, 1 or None (unlabelled images take part in no fold);
    ``groups``: per image its split unit (``split_units_of_images``), so patients that
    share a byte-identical image always land in the same fold.
    Stratification is over units (``unit_labels_of``): in every repeat each fold's test
    part holds floor or ceil of (units of class c / num_folds) units of class c.
    Inside each fold's training units a stratified inner-validation subset of about
    ``inner_validation_fraction`` of each class's units is held out (at least one unit per
    class when the class has three or more training units).

    Returns a JSON-ready dict: {"num_folds", "num_repeats", "seed",
    "inner_validation_fraction", "unit": "patient (duplicate-linked patients merged)",
    "repeats": [{"repeat": r, "folds": [{"fold": k, "train": [...], "validation": [...],
    "test": [...]}]}]}, lists of sorted image indices.
    """
    if len(labels) != len(groups):
        raise ValueError(f"labels and groups differ in length: {len(labels)} vs {len(groups)}")
    if num_folds < 2 or num_repeats < 1:
        raise ValueError(f"need num_folds >= 2 and num_repeats >= 1, got {num_folds}, "
                         f"{num_repeats}")
    if not 0.0 <= inner_validation_fraction < 1.0:
        raise ValueError(f"inner_validation_fraction must be in [0, 1), got "
                         f"{inner_validation_fraction}")
    unit_labels = unit_labels_of(labels, groups)
    check_fold_count(unit_labels, num_folds)
    rng = np.random.RandomState(seed)
    repeats = []
    for repeat in range(num_repeats):
        fold_of = _deal_units_to_folds(unit_labels, num_folds, rng)
        folds = [_fold_indices(labels, groups, unit_labels, fold_of, fold,
                               inner_validation_fraction, rng.randint(2 ** 31 - 1))
                 for fold in range(num_folds)]
        repeats.append({"repeat": repeat, "folds": folds})
    return {"num_folds": int(num_folds), "num_repeats": int(num_repeats), "seed": int(seed),
            "inner_validation_fraction": float(inner_validation_fraction),
            "unit": "patient (duplicate-linked patients merged)", "repeats": repeats}


def _fold_indices(labels, groups, unit_labels, fold_of, fold, validation_fraction, seed):
    train_units = {u: label for u, label in unit_labels.items() if fold_of[u] != fold}
    inner = split_units(train_units, validation_fraction, 0.0, seed)
    parts = {"train": [], "validation": [], "test": []}
    for index, (label, unit) in enumerate(zip(labels, groups)):
        if label is None:
            continue
        parts["test" if fold_of[unit] == fold else inner[unit]].append(index)
    return {"fold": int(fold), **parts}
