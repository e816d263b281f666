"""Builds train/validation/test TFRecord shards from the readers' examples (the library behind
``python -m thyroid.build_tfrecords``).

``protocol='patient'`` (default) splits by patient, stratified by label, keeps patients that
share a byte-identical image together, and augments training images only.
``protocol='image'`` is the paper's protocol: augment every image, then split images at random;
it leaks patients across splits, and the manifest says so.
A source's own split (a CSV ``split`` column) is honoured, except by ``evaluation_only``,
which puts every labelled image in the test split, unaugmented, for external validation.

The build writes into a sibling temporary folder and swaps it in only when complete (see
``thyroid.datasets.swap``), so a kill leaves the old dataset or the new one, never a mixture.
"""

import collections
import os
import time

import numpy as np
from absl import logging

from thyroid import LABEL_NAMES
from thyroid.datasets import READERS, images, shards, splits, swap  # noqa: F401
from thyroid.datasets.sources import SOURCE_FLAGS, ReaderOptions, SourceError, read_sources
from thyroid.io_utils import atomic_write_json
from thyroid.output_guard import InputPath, check_output_dir
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


def _read_sources(sources, options):
    try:
        return read_sources(sources, options)
    except SourceError as error:
        raise BuildError(str(error)) from error


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


def _load_usable(results, hashes, crop, skipped, max_pixels):
    """Labelled examples whose image decodes -> list of (example, cropped rgb)."""
    usable = []
    for result in results.values():
        for example in result.labelled:
            if example.image_path not in hashes:
                continue
            try:
                rgb = images.load_image(example.image_path, max_pixels)
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


def _check_arguments(protocol, crop, num_shards, augment_copies, validation_fraction,
                     test_fraction):
    if protocol not in PROTOCOLS:
        raise BuildError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if crop not in images.CROP_MODES:
        raise BuildError(f"unknown crop {crop!r}; expected one of {images.CROP_MODES}")
    if num_shards < 1 or augment_copies < 0:
        raise BuildError("num_shards must be >= 1 and augment_copies >= 0")
    if test_fraction == 1 and validation_fraction == 0:
        return  # evaluation only
    if not (validation_fraction >= 0 and test_fraction >= 0
            and validation_fraction + test_fraction < 1):
        raise BuildError("validation_fraction + test_fraction must be in [0, 1) "
                         "(or test_fraction=1 with validation_fraction=0: evaluation only)")


def _source_paths(ddti_dir, local_dir, image_dir, csv_path, sources):
    named = {"ddti": ddti_dir, "local": local_dir, "folders": image_dir, "csv": csv_path}
    chosen = dict(sources or {})
    chosen.update({kind: path for kind, path in named.items() if path})
    if not chosen:
        raise BuildError(f"give at least one of {', '.join(SOURCE_FLAGS.values())}")
    return chosen


def _unit_fixed_splits(usable, units):
    fixed = collections.defaultdict(set)
    for example, _ in usable:
        if example.split:
            fixed[units[example.patient_id]].add(example.split)
    return fixed


def _patient_assignment(usable, hashes, validation_fraction, test_fraction, seed):
    """Split per image: a source's own split where it gives one (and for the rest of that
    patient's images), the stratified patient split for everyone else."""
    patient_ids = [e.patient_id for e, _ in usable]
    units = splits.group_patients(patient_ids, [hashes[e.image_path] for e, _ in usable])
    fixed = _unit_fixed_splits(usable, units)
    free_labels = {}
    for example, _ in usable:
        unit = units[example.patient_id]
        if unit not in fixed:
            free_labels[unit] = max(free_labels.get(unit, 0), int(example.label))
    free_split = splits.split_units(free_labels, validation_fraction, test_fraction, seed)
    assignment = []
    for example, _ in usable:
        unit = units[example.patient_id]
        unit_split = free_split.get(unit) or min(fixed[unit], key=shards.SPLITS.index)
        assignment.append(example.split or unit_split)
    if not fixed:
        splits.assert_no_patient_overlap(patient_ids, assignment)
    return assignment


def _make_items(usable, hashes, protocol, validation_fraction, test_fraction, augment_copies,
                seed):
    """Dicts of example fields + image + split, augmented copies included (train only, or
    before the split under the image protocol)."""
    rng = np.random.RandomState(seed)
    items = []
    if protocol == "patient":
        assignment = _patient_assignment(usable, hashes, validation_fraction, test_fraction, seed)
        for (example, rgb), split in zip(usable, assignment):
            items.append(_item(example, rgb, split, False))
            if split == "train":
                for copy in augment.augmented_copies(rgb, augment_copies, rng):
                    items.append(_item(example, copy, split, True))
        return items
    for example, rgb in usable:
        items.append(_item(example, rgb, example.split, False))
        for copy in augment.augmented_copies(rgb, augment_copies, rng):
            items.append(_item(example, copy, example.split, True))
    random_splits = splits.split_by_image(len(items), validation_fraction, test_fraction, seed)
    for item, split in zip(items, random_splits):
        item["split"] = item["split"] or split
    return items


def _drop_source_splits(usable):
    """An evaluation-only build puts every image in test, whatever split a source names (a
    CSV ``split`` column): -> how many images named another split."""
    ignored = sum(1 for example, _ in usable if example.split not in (None, "test"))
    for example, _ in usable:
        example.split = None
    if ignored:
        logging.warning("evaluation-only build: %d images whose source names another split "
                        "go to test", ignored)
    return ignored


def _leakage(items, duplicates):
    patient_ids = [item["patient_id"] for item in items]
    leakage = splits.leakage(patient_ids, [item["split"] for item in items])
    split_of_path = collections.defaultdict(set)
    for item in items:
        split_of_path[item["path"]].add(item["split"])
    for group in duplicates:
        group["splits"] = sorted({s for p in group["paths"] for s in split_of_path.get(p, ())})
    leakage["duplicate_groups_in_multiple_splits"] = sum(
        1 for g in duplicates if len(g["splits"]) > 1)
    return leakage


def _write_splits(items, directory, num_shards, seed):
    """Shards of every split into ``directory`` -> (split summary, shard listing)."""
    summary, listing = {}, {}
    for split in shards.SPLITS:
        chosen = [item for item in items if item["split"] == split]
        order = np.random.RandomState(seed + 1 + shards.SPLITS.index(split)).permutation(len(chosen))
        chosen = [chosen[i] for i in order]  # shuffled so shards mix labels and patients
        paths = shards.write_split([_serialize(item) for item in chosen], directory, split,
                                   num_shards)
        listing[split] = shards.describe_shards(paths)
        summary[split] = {
            "patients": len({item["patient_id"] for item in chosen}),
            "images": len(chosen),
            "original": _label_counts([i for i in chosen if not i["augmented"]]),
            "total": _label_counts(chosen),
        }
    return summary, listing


def _source_summary(path, result):
    return dict(result.counts(), path=os.path.abspath(path), excluded=result.excluded,
                labels=result.labels, notes=result.notes,
                marks_without_polygon=result.marks_without_polygon)


def build(output_dir, ddti_dir=None, local_dir=None, protocol="patient",
          validation_fraction=0.15, test_fraction=0.2, augment_copies=2, crop="scan",
          num_shards=2, seed=0, overwrite=False, diagnosis_table=None, image_dir=None,
          csv_path=None, sources=None, reader_options=None, evaluation_only=False,
          max_pixels=images.DEFAULT_MAX_PIXELS):
    """Reads the sources, splits, augments, writes shards, labels.txt and manifest.json.

    Sources: the named paths and/or ``sources={kind: path}`` (``thyroid.datasets.sources``).
    Returns the manifest dict. Raises NoUsableExamplesError, OutputExistsError or BuildError.
    """
    started = time.time()
    if evaluation_only:
        validation_fraction, test_fraction, augment_copies = 0.0, 1.0, 0
    _check_arguments(protocol, crop, num_shards, augment_copies, validation_fraction,
                     test_fraction)
    source_paths = _source_paths(ddti_dir, local_dir, image_dir, csv_path, sources)
    options = reader_options or ReaderOptions(diagnosis_table=diagnosis_table)
    # Resolved: a symlinked output is built at its target and the link itself is kept.
    output_dir = check_output_dir("output_dir", output_dir, [
        InputPath(SOURCE_FLAGS.get(kind, kind).lstrip("-"), path) for kind, path in source_paths.items()])
    swap.remove_stale(output_dir)
    if swap.holds_dataset(output_dir) and not overwrite:
        raise OutputExistsError(f"{output_dir} already holds a dataset; "
                                "pass --overwrite to replace it")
    problem = swap.replace_problem(output_dir)
    if problem:
        raise BuildError(problem)

    results = _read_sources(source_paths, options)
    skipped = [item for result in results.values() for item in result.skipped]
    hashes = _hash_all(results, skipped)
    duplicates = _duplicate_groups(results, hashes)
    usable = _load_usable(results, hashes, crop, skipped, max_pixels)
    if not usable:
        raise NoUsableExamplesError(
            f"no usable labelled image in {', '.join(source_paths.values())} "
            f"({len(skipped)} files skipped); nothing to write")

    ignored_splits = _drop_source_splits(usable) if test_fraction == 1 else 0
    items = _make_items(usable, hashes, protocol, validation_fraction, test_fraction,
                        augment_copies, seed)
    leakage = _leakage(items, duplicates)
    temporary = swap.temporary_dir(output_dir)
    split_summary, listing = _write_splits(items, temporary, num_shards, seed)
    shards.write_labels_file(temporary)
    swap.stall_point("shards")
    manifest = {
        "protocol": protocol,
        "evaluation_only": bool(test_fraction == 1),
        "seed": seed,
        "crop": crop,
        "augment_copies": augment_copies,
        "validation_fraction": validation_fraction,
        "test_fraction": test_fraction,
        "num_shards": num_shards,
        "max_pixels": max_pixels,
        "labels": {str(i): name for i, name in enumerate(LABEL_NAMES)},
        "sources": {kind: _source_summary(source_paths[kind], result)
                    for kind, result in results.items()},
        "splits": split_summary,
        "shards": listing,
        "skipped": skipped,
        "leakage": leakage,
        "duplicates": duplicates,
        # Each original image's file hash, by key: external sets are checked against these.
        "image_sha256": {item["key"]: hashes[item["path"]] for item in items
                         if not item["augmented"]},
        "source_splits_ignored": ignored_splits,
        "build_seconds": round(time.time() - started, 2),
    }
    if protocol == "image":
        manifest["warning"] = (f"{IMAGE_PROTOCOL_WARNING} Patients in more than one split: "
                               f"{leakage['patients_in_multiple_splits']}; test images whose "
                               f"patient is in train: {leakage['test_images_with_patient_in_train']}.")
        logging.warning(manifest["warning"])
    atomic_write_json(os.path.join(temporary, shards.MANIFEST_NAME), manifest)
    swap.swap_in(temporary, output_dir)
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
