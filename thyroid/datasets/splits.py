"""Train / validation / test assignment: by patient (stratified, duplicate-aware) or by image."""

import collections

import numpy as np



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
