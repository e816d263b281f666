"""Builds train/validation/test TFRecord shards from the readers' examples (the library behind
``python -m thyroid.build_tfrecords``).

``protocol='patient'`` (default) splits by patient, stratified by label, keeps patients that
share a byte-identical image together, and augments training images only.
``protocol='image'`` is the paper's protocol: augment every image, then split images at random;
it leaks patients across splits, and the manifest says so.
"""

import collections
import os
import time

import numpy as np
from absl import logging

from thyroid import LABEL_NAMES
from thyroid.datasets import splits
from thyroid.datasets import READERS, images, shards
from thyroid.io_utils import atomic_write_json
from thyroid.preprocessing import augment

PROTOCOLS = ("patient", "image")
IMAGE_PROTOCOL_WARNING = (
    "PATIENT LEAKAGE: protocol=image splits images (and their augmented copies) at random, so the same patient, "
    "and copies of the same image, appear in training and test: test scores are optimistic "
    "and not a measure of performance on new patients.")


class BuildError(Exception):
    """The build cannot go on (bad arguments or existing output)."""


class NoUsableExamplesError(BuildError):
    """No labelled example could be read from any source."""


class OutputExistsError(BuildError):
    """The output folder already holds a dataset and overwrite was not asked for."""


def _existing_outputs(output_dir):
    if not os.path.isdir(output_dir):
        return []
    names = [shards.MANIFEST_NAME, shards.LABELS_NAME]
    found = [os.path.join(output_dir, n) for n in names
             if os.path.exists(os.path.join(output_dir, n))]
    for split in shards.SPLITS:
        found += shards.shard_paths(output_dir, split)
    return found


def _read_sources(source_dirs, diagnosis_table):
    results = {}
    for name, directory in source_dirs.items():
        if not os.path.isdir(directory):
            raise BuildError(f"--{name}_dir {directory} is not a folder")
        if name == "local":
            results[name] = READERS[name](directory, diagnosis_table=diagnosis_table)
        else:
            results[name] = READERS[name](directory)
    return results


def _hash_all(results, skipped):
    """Content hash of every readable image file (labelled or not) -> {path: sha256}."""
    hashes = {}
    for result in results.values():
        for example in result.examples:
            if example.image_path in hashes:
                continue
            try:
                hashes[example.image_path] = images.file_sha256(example.image_path)
            except OSError as error:
                skipped.append({"path": example.image_path, "reason": f"unreadable: {error}"})
    return hashes


def _duplicate_groups(results, hashes):
    by_hash = collections.defaultdict(list)
    for result in results.values():
        for example in result.examples:
            if example.image_path in hashes:
                by_hash[hashes[example.image_path]].append(example)
    groups = []
    for digest, members in sorted(by_hash.items()):
        if len(members) > 1:
            groups.append({
                "sha256": digest,
                "images": sorted({os.path.basename(e.image_path) for e in members}),
                "paths": sorted({e.image_path for e in members}),
                "patients": sorted({e.patient_id for e in members}),
                "labelled_patients": sorted({e.patient_id for e in members if e.label is not None}),
            })
    return groups


def _load_usable(results, hashes, crop, skipped):
    """Labelled examples whose image decodes -> list of (example, cropped rgb)."""
    usable = []
    for result in results.values():
        for example in result.labelled:
            if example.image_path not in hashes:
                continue
            try:
                rgb = images.load_image(example.image_path)
            except images.ImageError as error:
                logging.warning("Skipping %s: %s", example.image_path, error)
                skipped.append({"path": example.image_path, "reason": str(error)})
                continue
            usable.append((example, images.crop(rgb, crop, example.polygons)))
    return usable


def _label_counts(items):
    counts = {name: 0 for name in LABEL_NAMES}
    for item in items:
        counts[LABEL_NAMES[item["label"]]] += 1
    return counts


def build(output_dir, ddti_dir=None, local_dir=None, protocol="patient",
          validation_fraction=0.15, test_fraction=0.2, augment_copies=2, crop="scan",
          num_shards=2, seed=0, overwrite=False, diagnosis_table=None):
    """Reads the sources, splits, augments, writes shards, labels.txt and manifest.json.

    Returns the manifest dict. Raises NoUsableExamplesError, OutputExistsError or BuildError.
    """
    started = time.time()
    if protocol not in PROTOCOLS:
        raise BuildError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if crop not in images.CROP_MODES:
        raise BuildError(f"unknown crop {crop!r}; expected one of {images.CROP_MODES}")
    if num_shards < 1 or augment_copies < 0:
        raise BuildError("num_shards must be >= 1 and augment_copies >= 0")
    if not (validation_fraction >= 0 and test_fraction >= 0
            and validation_fraction + test_fraction < 1):
        raise BuildError("validation_fraction + test_fraction must be in [0, 1)")
    source_dirs = {name: d for name, d in (("ddti", ddti_dir), ("local", local_dir)) if d}
    if not source_dirs:
        raise BuildError("give --ddti_dir, --local_dir or both")
    existing = _existing_outputs(output_dir)
    if existing and not overwrite:
        raise OutputExistsError(f"{output_dir} already holds a dataset ({len(existing)} files); "
                                "pass --overwrite to replace it")

    results = _read_sources(source_dirs, diagnosis_table)
    skipped = [item for result in results.values() for item in result.skipped]
    hashes = _hash_all(results, skipped)
    duplicates = _duplicate_groups(results, hashes)
    usable = _load_usable(results, hashes, crop, skipped)
    if not usable:
        raise NoUsableExamplesError(
            f"no usable labelled image in {', '.join(source_dirs.values())} "
            f"({len(skipped)} files skipped); nothing to write")

    rng = np.random.RandomState(seed)
    items = []  # dicts: example fields + image + split
    if protocol == "patient":
        assignment = splits.split_by_patient(
            [e.patient_id for e, _ in usable], [e.label for e, _ in usable],
            [hashes[e.image_path] for e, _ in usable], validation_fraction, test_fraction, seed)
        for (example, rgb), split in zip(usable, assignment):
            items.append(_item(example, rgb, split, False))
            if split == "train":
                for copy in augment.augmented_copies(rgb, augment_copies, rng):
                    items.append(_item(example, copy, split, True))
    else:
        for example, rgb in usable:
            items.append(_item(example, rgb, None, False))
            for copy in augment.augmented_copies(rgb, augment_copies, rng):
                items.append(_item(example, copy, None, True))
        for item, split in zip(items, splits.split_by_image(
                len(items), validation_fraction, test_fraction, seed)):
            item["split"] = split

    patient_ids = [item["patient_id"] for item in items]
    assignment = [item["split"] for item in items]
    leakage = splits.leakage(patient_ids, assignment)
    if protocol == "patient":
        splits.assert_no_patient_overlap(patient_ids, assignment)
    split_of_path = collections.defaultdict(set)
    for item in items:
        split_of_path[item["path"]].add(item["split"])
    for group in duplicates:
        group["splits"] = sorted({s for p in group["paths"] for s in split_of_path.get(p, ())})
    leakage["duplicate_groups_in_multiple_splits"] = sum(
        1 for g in duplicates if len(g["splits"]) > 1)

    os.makedirs(output_dir, exist_ok=True)
    for path in existing:  # stale shards of another --num_shards must not linger
        if path.endswith(".tfrecord"):
            os.remove(path)
    split_summary = {}
    for split in shards.SPLITS:
        chosen = [item for item in items if item["split"] == split]
        order = np.random.RandomState(seed + 1 + shards.SPLITS.index(split)).permutation(len(chosen))
        chosen = [chosen[i] for i in order]  # shuffled so shards mix labels and patients
        records = [_serialize(item) for item in chosen]
        shards.write_split(records, output_dir, split, num_shards)
        split_summary[split] = {
            "patients": len({item["patient_id"] for item in chosen}),
            "images": len(chosen),
            "original": _label_counts([i for i in chosen if not i["augmented"]]),
            "total": _label_counts(chosen),
        }
    shards.write_labels_file(output_dir)

    manifest = {
        "protocol": protocol,
        "seed": seed,
        "crop": crop,
        "augment_copies": augment_copies,
        "validation_fraction": validation_fraction,
        "test_fraction": test_fraction,
        "num_shards": num_shards,
        "labels": {str(i): name for i, name in enumerate(LABEL_NAMES)},
        "sources": {name: dict(result.counts(), directory=os.path.abspath(source_dirs[name]),
                               excluded=result.excluded,
                               marks_without_polygon=result.marks_without_polygon)
                    for name, result in results.items()},
        "splits": split_summary,
        "skipped": skipped,
        "leakage": leakage,
        "duplicates": duplicates,
        "build_seconds": round(time.time() - started, 2),
    }
    if protocol == "image":
        manifest["warning"] = (f"{IMAGE_PROTOCOL_WARNING} Patients in more than one split: "
                               f"{leakage['patients_in_multiple_splits']}; test images whose "
                               f"patient is in train: {leakage['test_images_with_patient_in_train']}.")
        logging.warning(manifest["warning"])
    atomic_write_json(os.path.join(output_dir, shards.MANIFEST_NAME), manifest)
    logging.info("Wrote %s in %.1fs: %s; %d files skipped", output_dir, time.time() - started,
                 {s: v["images"] for s, v in split_summary.items()}, len(skipped))
    return manifest


def image_key(example):
    """The original image's name in the shards: patient id plus file name (unique per source)."""
    return f"{example.patient_id}/{os.path.basename(example.image_path)}"


def _item(example, rgb, split, augmented):
    return {"path": example.image_path, "key": image_key(example), "patient_id": example.patient_id,
            "source": example.source, "tirads": example.tirads, "label": int(example.label),
            "image": rgb, "split": split, "augmented": augmented}


def _serialize(item):
    rgb = item["image"]
    return shards.make_tf_example(
        shards.encode_jpeg(rgb), rgb.shape[0], rgb.shape[1], item["label"], item["patient_id"],
        item["source"], item["tirads"], item["augmented"], item["key"]).SerializeToString()
