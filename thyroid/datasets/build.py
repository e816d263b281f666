"""Builds train/validation/test TFRecord shards from the readers' examples (the library behind
``python -m thyroid.build_tfrecords``): ``build(BuildConfig(output_dir, sources, ...))``.

``protocol='patient'`` (default) splits by patient, stratified by label, keeps patients that
share a byte-identical image together, and augments training images only.
``protocol='image'`` is the paper's protocol: augment every image, then split images at random;
it leaks patients across splits, and the manifest says so.
A source's own split (a CSV ``split`` column) is honoured, except by ``evaluation_only``,
which puts every labelled image in the test split, unaugmented, for external validation.

``build_sources`` reads and checks the sources; this module splits, augments and writes.
The per-image work (hash, decode, crop, augment, JPEG-encode) runs in ``num_workers`` spawned
processes (``datasets.workers``, ``datasets.records``); the records stream from them into
the shards, so the build holds a few images at a time, not the dataset, and writes the same
bytes for any number of workers.

The build writes into a sibling temporary folder and swaps it in only when complete (see
``thyroid.datasets.swap``), so a kill leaves the old dataset or the new one, never a mixture.
"""

import collections
import dataclasses
import os
import time
from typing import Optional

import numpy as np
from absl import logging

from thyroid import LABEL_NAMES
from thyroid.datasets import READERS, images, records, shards, splits, swap  # noqa: F401
from thyroid.datasets.build_config import (  # noqa: F401  (build.PROTOCOLS, build.BuildError)
    PROTOCOLS, BuildConfig, BuildError, ConfigError)
from thyroid.datasets.build_sources import read_and_decode
from thyroid.datasets.example import Example, first_per_reason, reason_summary
# Re-exported for callers that build a BuildConfig through this module.
from thyroid.datasets.sources import (ReaderOptions, SourceError, named_sources,  # noqa: F401
                                      prefixed_flags, read_sources)
from thyroid.datasets.workers import WorkerError, Workers, available_cores
from thyroid.io_utils import atomic_write_json
from thyroid.output_guard import InputPath, check_output_dir
from thyroid.progress import Progress

IMAGE_PROTOCOL_WARNING = (
    "PATIENT LEAKAGE: protocol=image splits images (and their augmented copies) at random, so the same patient, "
    "and copies of the same image, appear in training and test: test scores are optimistic "
    "and not a measure of performance on new patients.")


class OutputExistsError(BuildError):
    """The output folder already holds a dataset and overwrite was not asked for."""


@dataclasses.dataclass
class Item:
    """One record of the shards: an original image or an augmented copy of it. Only what the
    split and the manifest need: the pixels are made, encoded and written by the workers."""
    example: Example
    split: Optional[str]
    augmented: bool

    @property
    def patient_id(self):
        return self.example.patient_id

    @property
    def path(self):
        return self.example.image_path

    @property
    def label(self):
        return int(self.example.label)


def _label_counts(items):
    counts = {name: 0 for name in LABEL_NAMES}
    for item in items:
        counts[LABEL_NAMES[item.label]] += 1
    return counts


def _unit_fixed_splits(usable, units):
    fixed = collections.defaultdict(set)
    for example in usable:
        if example.split:
            fixed[units[example.patient_id]].add(example.split)
    return fixed


def _patient_assignment(usable, hashes, validation_fraction, test_fraction, seed):
    """Split per image: a source's own split where it gives one (and for the rest of that
    patient's images), the stratified patient split for everyone else."""
    examples = usable
    patient_ids = [e.patient_id for e in examples]
    units = splits.group_patients(patient_ids, [hashes[e.image_path] for e in examples])
    fixed = _unit_fixed_splits(usable, units)
    free_labels = {}
    for example in examples:
        unit = units[example.patient_id]
        if unit not in fixed:
            free_labels[unit] = max(free_labels.get(unit, 0), int(example.label))
    free_split = splits.split_units(free_labels, validation_fraction, test_fraction, seed)
    assignment = []
    for example in examples:
        unit = units[example.patient_id]
        unit_split = free_split.get(unit) or min(fixed[unit], key=shards.SPLITS.index)
        assignment.append(example.split or unit_split)
    if not fixed:
        splits.assert_no_patient_overlap(patient_ids, assignment)
    return assignment


def _make_items(usable, hashes, config):
    """[[Item] per image]: the original first, then its augmented copies: of training images
    only under the patient protocol, of every image before the random split under the image
    protocol."""
    copies = config.augment_copies
    if config.protocol == "patient":
        assignment = _patient_assignment(usable, hashes, config.validation_fraction,
                                         config.test_fraction, config.seed)
        return [[Item(example, split, index > 0)
                 for index in range(1 + (copies if split == "train" else 0))]
                for example, split in zip(usable, assignment)]
    groups = [[Item(example, example.split, index > 0) for index in range(1 + copies)]
              for example in usable]
    items = [item for group in groups for item in group]
    random_splits = splits.split_by_image(len(items), config.validation_fraction,
                                          config.test_fraction, config.seed)
    for item, split in zip(items, random_splits):
        item.split = item.split or split
    return groups


def _drop_source_splits(usable):
    """An evaluation-only build puts every image in test, whatever split a source names (a
    CSV ``split`` column): -> how many images named another split."""
    ignored = sum(1 for example in usable if example.split not in (None, "test"))
    for example in usable:
        example.split = None
    if ignored:
        logging.warning("evaluation-only build: %d images whose source names another split "
                        "go to test", ignored)
    return ignored


def _leakage(items, duplicates):
    patient_ids = [item.patient_id for item in items]
    leakage = splits.leakage(patient_ids, [item.split for item in items])
    split_of_path = collections.defaultdict(set)
    for item in items:
        split_of_path[item.path].add(item.split)
    for group in duplicates:
        group["splits"] = sorted({s for p in group["paths"] for s in split_of_path.get(p, ())})
    leakage["duplicate_groups_in_multiple_splits"] = sum(
        1 for g in duplicates if len(g["splits"]) > 1)
    return leakage


def _image_job(group, config):
    example = group[0].example
    return records.ImageJob(
        path=example.image_path, max_pixels=config.max_pixels, crop=config.crop,
        polygons=example.polygons, copies=len(group) - 1, seed=config.seed,
        label=int(example.label), patient_id=example.patient_id, source=example.source,
        tirads=example.tirads, key=image_key(example), augmentation=config.augmentation,
        view=config.view)


def _write_records(groups, directory, config, workers):
    """Every image's records, made by the workers, into the shards of its splits -> {split:
    shard paths}. Images go in a seeded shuffled order (shards mix labels and patients), and
    the records of a split round-robin over its shards: the same files whatever the number of
    workers."""
    order = np.random.RandomState(config.seed + 1).permutation(len(groups))
    jobs = (_image_job(groups[index], config) for index in order)
    progress = Progress(len(groups), "build: write records", "images")
    with shards.ShardWriters(directory, config.num_shards) as writers:
        for index, made in zip(order, workers.map(records.image_records, jobs)):
            for item, record in zip(groups[index], made):
                writers.write(item.split, record)
            progress.update()
    return writers.paths


def _write_splits(groups, directory, config, workers):
    """Shards of every split into ``directory`` -> (split summary, shard listing)."""
    paths = _write_records(groups, directory, config, workers)
    items = [item for group in groups for item in group]
    summary, listing = {}, {}
    for split in shards.SPLITS:
        chosen = [item for item in items if item.split == split]
        listing[split] = shards.describe_shards(paths[split])
        summary[split] = {
            "patients": len({item.patient_id for item in chosen}),
            "images": len(chosen),
            "original": _label_counts([i for i in chosen if not i.augmented]),
            "total": _label_counts(chosen),
        }
    return summary, listing


def _source_summary(path, result):
    return dict(result.counts(), path=os.path.abspath(path),
                excluded=first_per_reason(result.excluded),
                labels=result.labels, notes=result.notes,
                marks_without_polygon=result.marks_without_polygon)


def _prepare_output(config):
    """The output folder, resolved (a symlinked output is built at its target and the link
    kept), after leftovers of killed builds are cleared; refused when it holds a dataset
    and overwrite is off, or files that are not a dataset's."""
    output_dir = check_output_dir("output_dir", config.output_dir, [
        InputPath(config.flags()[kind].lstrip("-"), path) for kind, path in config.sources.items()])
    swap.remove_stale(output_dir)
    if swap.holds_dataset(output_dir) and not config.overwrite:
        raise OutputExistsError(f"{output_dir} already holds a dataset; "
                                "pass --overwrite to replace it")
    problem = swap.replace_problem(output_dir)
    if problem:
        raise BuildError(problem)
    return output_dir


def _manifest(config, found, written, leakage, ignored_splits, started, num_workers):
    """manifest.json's dict; ``written`` is _write_splits' (summary, listing)."""
    split_summary, listing = written
    manifest = {
        "build_config": config.to_dict(),
        "protocol": config.protocol,
        "evaluation_only": config.evaluation_only,
        "seed": config.seed,
        "crop": config.crop,
        "augment_copies": config.augment_copies,
        "augmentation": config.augmentation,
        "view": config.view,
        "validation_fraction": config.validation_fraction,
        "test_fraction": config.test_fraction,
        "num_shards": config.num_shards,
        "max_pixels": config.max_pixels,
        "labels": {str(i): name for i, name in enumerate(LABEL_NAMES)},
        "sources": {kind: _source_summary(config.sources[kind], result)
                    for kind, result in found.results.items()},
        "splits": split_summary,
        "shards": listing,
        "skipped": reason_summary(found.skipped),
        "decode_fallbacks": reason_summary(found.fallbacks),
        "leakage": leakage,
        "duplicates": found.duplicates,
        # Each original image's file hash, by key: external sets are checked against these.
        "image_sha256": {image_key(example): found.hashes[example.image_path]
                         for example in found.usable},
        "source_splits_ignored": ignored_splits,
        # How this build ran, not what it built: the only fields that differ between two
        # builds of the same settings.
        "build_seconds": round(time.time() - started, 2),
        "build_workers": num_workers,
    }
    if config.protocol == "image":
        manifest["warning"] = (f"{IMAGE_PROTOCOL_WARNING} Patients in more than one split: "
                               f"{leakage['patients_in_multiple_splits']}; test images whose "
                               f"patient is in train: {leakage['test_images_with_patient_in_train']}.")
        logging.warning(manifest["warning"])
    return manifest


def build(config: BuildConfig):
    """Reads the sources, splits, augments, writes shards, labels.txt and manifest.json.

    ``config`` is validated here (ConfigError naming the flag) and saved, resolved, in the
    manifest. The per-image work runs in ``config.num_workers`` processes (0: every core this
    process may use). Returns the manifest dict. Raises build_sources.NoUsableExamplesError,
    OutputExistsError or BuildError.
    """
    started = time.time()
    config = config.validate().resolved()
    output_dir = _prepare_output(config)
    num_workers = config.num_workers or available_cores()
    try:
        with Workers(num_workers) as workers:
            found = read_and_decode(config, workers)
            ignored_splits = _drop_source_splits(found.usable) if config.evaluation_only else 0
            groups = _make_items(found.usable, found.hashes, config)
            leakage = _leakage([item for group in groups for item in group], found.duplicates)
            temporary = swap.temporary_dir(output_dir)
            written = _write_splits(groups, temporary, config, workers)
    except (WorkerError, records.RecordError) as error:
        raise BuildError(f"{error}; the build stopped (--num_workers={num_workers})") from error
    shards.write_labels_file(temporary)
    swap.stall_point("shards")
    manifest = _manifest(config, found, written, leakage, ignored_splits, started, num_workers)
    atomic_write_json(os.path.join(temporary, shards.MANIFEST_NAME), manifest)
    swap.swap_in(temporary, output_dir)
    logging.info("Wrote %s in %.1fs with %d worker(s): %s; %d files skipped", output_dir,
                 time.time() - started, num_workers,
                 {s: v["images"] for s, v in written[0].items()}, len(found.skipped))
    return manifest


def image_key(example):
    """The original image's name in the shards: its source and its path below the source's
    root (``example.make_image_key``), unique per image."""
    if not example.key:
        raise BuildError(f"{example.image_path}: the {example.source} reader gave no image key")
    return example.key
