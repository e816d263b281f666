"""The build's first stage: read every source, check each image once in the workers (hash,
header, decode), find byte-identical copies and leave out those labelled both ways ->
``Found``, the labelled examples the build can use."""

import collections
import dataclasses
import os
from typing import Dict, List

from thyroid.datasets import records
from thyroid.datasets.build_config import BuildError
from thyroid.datasets.example import Example, ReadResult, log_summary, path_entry
from thyroid.datasets.sources import SourceError, read_sources
from thyroid.progress import Progress


class NoUsableExamplesError(BuildError):
    """No labelled example could be read from any source."""


@dataclasses.dataclass
class Found:
    """What reading and checking the sources gave."""
    results: Dict[str, ReadResult]
    hashes: Dict[str, str]           # image path -> sha256 of its bytes
    duplicates: List[dict]           # groups of byte-identical images (manifest ``duplicates``)
    usable: List[Example]            # labelled examples whose image decodes
    skipped: List[dict]              # path_entry records: the readers' and the build's own
    fallbacks: List[dict]            # path_entry records of decodes that fell back on something


# Images per inspection task: a few milliseconds each, so a task is worth a worker round trip.
INSPECT_CHUNK = 8


def _read_sources(config, workers):
    try:
        return read_sources(config.sources, config.reader_options, config.flags(), workers.map)
    except SourceError as error:
        raise BuildError(str(error)) from error


def _inspect_all(results, max_pixels, workers):
    """{path: records.Inspection} of every image file the readers found (labelled or not),
    in the workers: each hashed, the labelled ones decoded once to see that they can be used."""
    labelled = {e.image_path for result in results.values() for e in result.labelled}
    paths = list(dict.fromkeys(e.image_path for result in results.values()
                               for e in result.examples))
    tasks = [(path, max_pixels, path in labelled) for path in paths]
    chunks = [tasks[i:i + INSPECT_CHUNK] for i in range(0, len(tasks), INSPECT_CHUNK)]
    progress = Progress(len(tasks), "build: check images", "images")
    found = {}
    for inspections in workers.map(records.inspect_many, chunks):
        found.update((inspection.path, inspection) for inspection in inspections)
        progress.update(len(inspections))
    return found


def _hash_all(results, inspections, skipped):
    """Content hash of every readable image file -> {path: sha256}; files above
    ``images.max_file_bytes(max_pixels)`` were refused before being read."""
    hashes = {}
    for result in results.values():
        for example in result.examples:
            if example.image_path in hashes:
                continue
            inspection = inspections[example.image_path]
            if inspection.sha256 is None:
                skipped.append(path_entry(example.image_path, *inspection.error))
            else:
                hashes[example.image_path] = inspection.sha256
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
                "labels": sorted({e.label for e in members if e.label is not None}),
            })
    return groups


CONTRADICTORY_COPIES = "byte-identical copies labelled both benign and malignant"


def _contradictory_copies(duplicates, skipped):
    """Paths of byte-identical copies that carry both labels: one image cannot be both, and
    neither label can be trusted, so every copy is left out (recorded in ``skipped``)."""
    paths = set()
    for group in duplicates:
        if len(group["labels"]) > 1:
            paths.update(group["paths"])
            skipped.extend(path_entry(path, CONTRADICTORY_COPIES) for path in group["paths"])
    return paths


def _usable(results, inspections, hashes, left_out, skipped, fallbacks):
    """Labelled examples whose image decodes -> [Example]; paths in ``left_out`` are already
    excluded. Decodes that had to fall back on something (an invalid DICOM window) are
    recorded in ``fallbacks``."""
    usable = []
    for result in results.values():
        for example in result.labelled:
            if example.image_path not in hashes or example.image_path in left_out:
                continue
            inspection = inspections[example.image_path]
            if inspection.error:
                skipped.append(path_entry(example.image_path, *inspection.error))
                continue
            fallbacks.extend(path_entry(example.image_path, note) for note in inspection.fallbacks)
            usable.append(example)
    return usable


def read_and_decode(config, workers):
    """Reads every source, hashes and decodes its images (in the workers) -> Found;
    NoUsableExamplesError when no labelled image is left."""
    results = _read_sources(config, workers)
    skipped, fallbacks = [], []  # the build's own; the readers' are in their results
    inspections = _inspect_all(results, config.max_pixels, workers)
    hashes = _hash_all(results, inspections, skipped)
    duplicates = _duplicate_groups(results, hashes)
    contradictory = _contradictory_copies(duplicates, skipped)
    usable = _usable(results, inspections, hashes, contradictory, skipped, fallbacks)
    log_summary("build", skipped)
    log_summary("build", fallbacks, verb="decoded with a fallback")
    skipped = [item for result in results.values() for item in result.skipped] + skipped
    if not usable:
        raise NoUsableExamplesError(
            f"no usable labelled image in {', '.join(config.sources.values())} "
            f"({len(skipped)} files skipped); nothing to write")
    return Found(results, hashes, duplicates, usable, skipped, fallbacks)
