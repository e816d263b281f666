"""The one place that turns ``{source kind: path}`` into ReadResults, for the dataset build and
for studies that evaluate on external sets.

Kinds: ``ddti`` and ``local`` (folders), ``folders`` (images per class folder, ``--image_dir``)
and ``csv`` (a CSV list, ``--csv``).
"""

import dataclasses
import os
from typing import Dict, Optional

from thyroid.datasets import csv_list, ddti, folders, local
from thyroid.datasets.example import log_summary

SOURCE_FLAGS = {"ddti": "--ddti_dir", "local": "--local_dir", "folders": "--image_dir",
                "csv": "--csv"}


class SourceError(Exception):
    """A source path or reader option that cannot be used; the message names the flag."""


@dataclasses.dataclass
class ReaderOptions:
    diagnosis_table: Optional[object] = None  # dict or JSON path (local reports)
    suspicious_as_malignant: bool = False      # local reports
    class_map: Optional[Dict[str, int]] = None  # folders and CSV labels
    patient_id_regex: Optional[str] = None      # folders


def _check_path(kind, path):
    wants_file = kind == "csv"
    if wants_file and not os.path.isfile(path):
        raise SourceError(f"{SOURCE_FLAGS[kind]} {path} is not a file")
    if not wants_file and not os.path.isdir(path):
        raise SourceError(f"{SOURCE_FLAGS[kind]} {path} is not a folder")
    try:  # a folder or file that cannot be read would otherwise look empty or fail later
        if wants_file:
            with open(path, "rb"):
                pass
        else:
            os.listdir(path)
    except OSError as error:
        raise SourceError(f"{SOURCE_FLAGS[kind]} {path}: cannot read "
                          f"({error.strerror or error})") from error


def _read_one(kind, path, options):
    if kind == "ddti":
        return ddti.read(path)
    if kind == "local":
        return local.read(path, diagnosis_table=options.diagnosis_table,
                          suspicious_as_malignant=options.suspicious_as_malignant)
    if kind == "folders":
        return folders.read(path, class_map=options.class_map,
                            patient_id_regex=options.patient_id_regex)
    return csv_list.read(path, class_map=options.class_map)


def read_sources(sources, options=None):
    """``{kind: path}`` -> ``{kind: ReadResult}``; raises SourceError naming the flag."""
    options = options or ReaderOptions()
    unknown = sorted(set(sources) - set(SOURCE_FLAGS))
    if unknown:
        raise SourceError(f"unknown source kind(s) {unknown}; expected {sorted(SOURCE_FLAGS)}")
    results = {}
    for kind, path in sources.items():
        _check_path(kind, path)
        try:
            results[kind] = _read_one(kind, path, options)
        except csv_list.CsvError as error:
            raise SourceError(f"{SOURCE_FLAGS[kind]} {error}") from error
        except folders.ReaderError as error:
            raise SourceError(str(error)) from error
        log_summary(f"{SOURCE_FLAGS[kind]} {path}", results[kind].skipped)
    return results
