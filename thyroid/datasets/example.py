"""The record every reader yields, and the result object a whole read returns."""

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

from absl import logging

from thyroid.datasets import files

Polygon = List[Tuple[float, float]]
# A manifest lists this many files per reason (and counts them all): a source with 100,000
# missing files must not make a manifest of megabytes.
PATHS_PER_REASON = 200


@dataclasses.dataclass
class Example:
    """One image of one patient, with its label (0 benign, 1 malignant, None unknown)."""
    source: str
    case_id: str
    patient_id: str
    image_path: str
    label: Optional[int]
    tirads: str = ""
    polygons: List[Polygon] = dataclasses.field(default_factory=list)
    fields: Dict[str, str] = dataclasses.field(default_factory=dict)
    split: Optional[str] = None  # a split the source fixes (CSV split column), else None
    key: str = ""  # the image's name in the shards (make_image_key), unique per image


def make_patient_id(source, case_id):
    """Patient ids carry their source so two sources never collide."""
    return f"{source}:{case_id}"


def path_entry(path, reason, detail=""):
    """A file (or CSV row) and why it is listed (skipped, or decoded with a fallback):
    ``reason`` a short category (what summaries count), ``detail`` this file's specifics."""
    entry = {"path": files.printable(path), "reason": reason}
    if detail:
        entry["detail"] = detail
    return entry


def reason_summary(entries, limit=PATHS_PER_REASON):
    """``path_entry`` records -> {reason: {"count", "files"}}: every entry counted, the first
    ``limit`` of each reason listed as ``{path, detail}``."""
    summary = {}
    for entry in entries:
        group = summary.setdefault(entry["reason"], {"count": 0, "files": []})
        group["count"] += 1
        if len(group["files"]) < limit:
            group["files"].append({k: v for k, v in entry.items() if k != "reason"})
    return summary


def first_per_reason(entries, limit=PATHS_PER_REASON):
    """``entries`` (dicts with a ``reason``) keeping only the first ``limit`` of each reason."""
    seen, kept = {}, []
    for entry in entries:
        seen[entry["reason"]] = seen.get(entry["reason"], 0) + 1
        if seen[entry["reason"]] <= limit:
            kept.append(entry)
    return kept


def log_summary(what, entries, verb="skipped"):
    """One log line per reason (count and first file) instead of one per file."""
    for reason, group in reason_summary(entries, limit=1).items():
        first = group["files"][0]
        example = first["path"] + (f" ({first['detail']})" if "detail" in first else "")
        logging.warning("%s: %d %s: %s (first: %s)", what, group["count"], verb, reason, example)


def make_image_key(source, root, path):
    """``<source>:<path relative to the source's root>``: one image, one key (two images of one
    patient may share a file name in different folders)."""
    return f"{source}:{os.path.relpath(path, root).replace(os.sep, '/')}"


@dataclasses.dataclass
class ReadResult:
    """What a reader found: every example (labelled or not) plus the bookkeeping.

    ``excluded`` lists cases left out, ``{case_id, reason}``; ``skipped`` lists files that could
    not be used, ``{path, reason}``. Iterating yields the labelled examples only.
    """
    source: str
    examples: List[Example] = dataclasses.field(default_factory=list)
    excluded: List[Dict[str, str]] = dataclasses.field(default_factory=list)
    skipped: List[Dict[str, str]] = dataclasses.field(default_factory=list)
    cases: int = 0
    marks_without_polygon: List[str] = dataclasses.field(default_factory=list)
    # path_entry records of images whose outline cannot be used, with the reason (DDTI marks
    # with an empty or cut-off polygon): the localisation skips them.
    broken_outlines: List[Dict[str, str]] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)  # caveats for the manifest
    labels: List[Dict[str, str]] = dataclasses.field(default_factory=list)  # how cases got labels

    @property
    def labelled(self):
        return [e for e in self.examples if e.label is not None]

    def __iter__(self):
        return iter(self.labelled)

    def skip(self, path, reason, detail=""):
        """Records a file (or CSV row) that cannot be used."""
        self.skipped.append(path_entry(path, reason, detail))

    def skip_error(self, path, error):
        """Records a file refused with a ``files.FileError`` (ImageError included)."""
        self.skip(path, error.reason, error.detail)

    def utf8_names(self, directory):
        """Sorted names in ``directory``; a name that is not UTF-8 is skipped with the reason
        (it could not be written into the shards or the manifest)."""
        names = []
        for name in sorted(os.listdir(directory)):
            try:
                files.check_name(name)
            except files.FileError as error:
                self.skip_error(os.path.join(directory, name), error)
                continue
            names.append(name)
        return names

    def excluded_reasons(self):
        reasons = {}
        for item in self.excluded:
            reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
        return reasons

    def counts(self):
        labelled = self.labelled
        by_label = {}
        for name, value in (("benign", 0), ("malignant", 1)):
            chosen = [e for e in labelled if e.label == value]
            by_label[name] = {"cases": len({e.case_id for e in chosen}), "images": len(chosen)}
        return {
            "cases": self.cases,
            "labelled_cases": len({e.case_id for e in labelled}),
            "images": len(self.examples),
            "labelled_images": len(labelled),
            "labels": by_label,
            "excluded_cases": len(self.excluded),
            "excluded_reasons": self.excluded_reasons(),
            "marks_without_polygon": len(self.marks_without_polygon),
            "skipped_files": len(self.skipped),
        }
