"""The one place that turns ``{source kind: path}`` into ReadResults, for the dataset build and
for studies that evaluate on external sets.

Kinds: ``ddti`` (``--ddti_dir``), ``local`` (patient folders with report.docx, read by
``word_reports``, ``--local_dir``), ``folders`` (images per class folder, ``--image_dir``) and
``csv`` (a CSV list, ``--csv``).
"""

import dataclasses
import os
from typing import Dict, Optional

from thyroid.datasets import csv_list, ddti, folders, word_reports
from thyroid.datasets.example import log_summary

READERS = {"ddti": ddti.read, "local": word_reports.read, "folders": folders.read,
           "csv": csv_list.read}
SOURCE_FLAGS = {"ddti": "--ddti_dir", "local": "--local_dir", "folders": "--image_dir",
                "csv": "--csv"}


class SourceError(ValueError):
    """A source path or reader option that cannot be used; the message names the flag (a
    ValueError: the entry points print it as one line)."""


@dataclasses.dataclass
class ReaderOptions:
    diagnosis_table: Optional[object] = None  # dict or JSON path (local reports)
    suspicious_as_malignant: bool = False      # local reports
    class_map: Optional[Dict[str, int]] = None  # folders and CSV labels
    patient_id_regex: Optional[str] = None      # folders


def named_sources(ddti_dir=None, local_dir=None, image_dir=None, csv=None):
    """``{kind: path}`` from paths held by their flag's name (None or '' left out)."""
    named = {"ddti": ddti_dir, "local": local_dir, "folders": image_dir, "csv": csv}
    return {kind: path for kind, path in named.items() if path}


def prefixed_flags(prefix):
    """The source flags of a command that names them with a prefix:
    ``prefixed_flags("external_")["csv"] == "--external_csv"``."""
    return {kind: f"--{prefix}{flag[2:]}" for kind, flag in SOURCE_FLAGS.items()}


def _flag(kind, flag_names):
    return (flag_names or {}).get(kind) or SOURCE_FLAGS[kind]


def _path_problem(kind, path):
    """Why ``path`` cannot be a source of ``kind`` ('' when it can); reads nothing but a
    folder's listing or a file's first bytes."""
    wants_file = kind == "csv"
    if not os.path.exists(path):
        return "no such file" if wants_file else "no such folder"
    if wants_file and os.path.isdir(path):
        return "a folder, expected a CSV file"
    if wants_file and not os.path.isfile(path):
        return "not a regular file"  # a FIFO would block the read
    if not wants_file and not os.path.isdir(path):
        return "not a folder"
    try:  # unreadable, it would look empty or fail halfway through the work
        if wants_file:
            with open(path, "rb") as f:
                f.read(1)
        else:
            with os.scandir(path) as entries:  # the first entry is enough to know
                next(entries, None)
    except OSError as error:
        return f"cannot read ({error.strerror or error})"
    return ""


def check_sources(sources, flag_names=None):
    """Checks ``{kind: path}`` before any work: known kinds; paths that exist, are folders (a
    file for ``csv``) and can be read; a CSV's header. ``flag_names`` ``{kind: flag}`` says how
    the caller's command line names each source (default ``SOURCE_FLAGS``; see
    ``prefixed_flags``). Raises SourceError, one line naming the flag and the path."""
    unknown = sorted(set(sources) - set(SOURCE_FLAGS))
    if unknown:
        raise SourceError(f"unknown source kind(s) {unknown}; expected {sorted(SOURCE_FLAGS)}")
    for kind, path in sources.items():
        flag = _flag(kind, flag_names)
        problem = _path_problem(kind, path)
        if problem:
            raise SourceError(f"{flag} {path}: {problem}")
        if kind == "csv":
            try:
                csv_list.check_header(path)
            except csv_list.CsvError as error:
                raise SourceError(f"{flag} {error}") from error


def _read_one(kind, path, options, map_fn=map):
    if kind == "ddti":
        return ddti.read(path)
    if kind == "local":
        return word_reports.read(path, diagnosis_table=options.diagnosis_table,
                                 suspicious_as_malignant=options.suspicious_as_malignant,
                                 map_fn=map_fn)
    if kind == "folders":
        return folders.read(path, class_map=options.class_map,
                            patient_id_regex=options.patient_id_regex)
    return csv_list.read(path, class_map=options.class_map)


def read_sources(sources, options=None, flag_names=None, map_fn=map):
    """``{kind: path}`` -> ``{kind: ReadResult}``; raises SourceError naming the flag
    (``flag_names`` as for ``check_sources``). ``map_fn(fn, items)``, an ordered map, runs
    the readers' per-file parsing (the Word reports; the build passes its workers')."""
    options = options or ReaderOptions()
    check_sources(sources, flag_names)
    results = {}
    for kind, path in sources.items():
        flag = _flag(kind, flag_names)
        try:
            results[kind] = _read_one(kind, path, options, map_fn)
        except csv_list.CsvError as error:
            raise SourceError(f"{flag} {error}") from error
        except folders.ReaderError as error:
            raise SourceError(str(error)) from error
        log_summary(f"{flag} {path}", results[kind].skipped)
    return results


def _why_unusable(result):
    reasons = [entry.get("reason", "") for entry in result.excluded + result.skipped]
    first = f"; first: {reasons[0]}" if reasons and reasons[0] else ""
    return (f"{len(result.examples)} image(s) found, {len(result.excluded)} case(s) excluded, "
            f"{len(result.skipped)} file(s) or row(s) skipped{first}")


def check_labelled(sources, options=None, flag_names=None):
    """Reads every source and refuses, naming its flag, one that holds no usable labelled
    image: checked before any work, so a study does not train for an evaluation set it can
    never score. Raises SourceError."""
    for kind, path in sources.items():
        flag = _flag(kind, flag_names)
        try:
            result = read_sources({kind: path}, options, flag_names)[kind]
        except SourceError:
            raise
        except (OSError, ValueError) as error:
            raise SourceError(f"{flag} {path}: cannot be read ({error})") from error
        if not result.labelled:
            raise SourceError(f"{flag} {path}: no usable labelled image ({_why_unusable(result)})")
