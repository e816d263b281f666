"""Reader for a CSV list of images: columns ``path,label`` and optional ``patient_id``,
``split``, ``tirads``.

Paths are relative to the CSV's folder (absolute paths are kept). Labels are 0/1 or a class-map
name (benign / malignant, ...). A ``split`` column (train / validation / test; val and valid
also accepted) is honoured by the build; an empty cell leaves the row to the random split.
Without ``patient_id`` a DICOM file's PatientID is used, else each file is its own patient.
"""

import collections
import csv
import dataclasses
import os

from absl import logging

from thyroid.datasets import files, folders
from thyroid.datasets.example import Example, ReadResult, make_image_key, make_patient_id

SOURCE = "csv"
REQUIRED_COLUMNS = ("path", "label")
SPLIT_NAMES = {"train": "train", "training": "train", "validation": "validation",
               "val": "validation", "valid": "validation", "test": "test", "": None}


class RowError(files.FileError):
    """A row that cannot be used: ``reason`` the kind of problem, ``detail`` the value."""


class CsvError(folders.ReaderError):
    """The CSV file as a whole cannot be used; the message starts with its path (the caller
    adds the flag)."""


def _header(reader, csv_path):
    columns = [c.strip().lower() for c in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise CsvError(f"{csv_path}: missing column(s) {', '.join(missing)} "
                       f"(has {', '.join(columns) or 'no header'})")
    # A repeated column would silently win by position: refuse rather than guess.
    for column, count in collections.Counter(columns).items():
        if count > 1:
            raise CsvError(f"{csv_path}: column {column!r} appears {count} times (column "
                           "names are case-insensitive); keep one")
    return columns


def _row_label(value, class_map):
    text = (value or "").strip().lower()
    if text not in class_map:
        raise RowError("unknown label", repr(value))
    return class_map[text]


def _row_split(value):
    text = (value or "").strip().lower()
    if text not in SPLIT_NAMES:
        raise RowError("unknown split", f"{value!r} (train, validation or test)")
    return SPLIT_NAMES[text]


def _example(row, base, class_map):
    relative = (row.get("path") or "").strip()
    if not relative:
        raise RowError("empty path")
    # Normalised, so ``img/a.jpg`` and ``./img/a.jpg`` are seen as one image.
    path = os.path.normpath(os.path.join(base, relative))
    try:
        files.check_regular_file(path)
    except files.FileError as error:  # the row's line is the skip's path: name the file here
        shown = files.printable(path)
        raise RowError(error.reason, f"{shown} ({error.detail})" if error.detail else shown) \
            from error
    label, split = _row_label(row["label"], class_map), _row_split(row.get("split"))
    patient = (row.get("patient_id") or "").strip() or folders.default_patient(path, relative)
    return Example(source=SOURCE, case_id=patient, patient_id=make_patient_id(SOURCE, patient),
                   image_path=path, label=label, tirads=(row.get("tirads") or "").strip(),
                   split=split, key=make_image_key(SOURCE, base, path))


@dataclasses.dataclass
class _Row:
    line: int
    example: Example

    def values(self):
        """What a row says about its image; two rows of one image must agree on all of it."""
        e = self.example
        return {"label": e.label, "patient_id": e.case_id, "split": e.split, "tirads": e.tirads}


def _merge_rows(result, rows, csv_path, base):
    """One example per image: a repeated row counts once; rows that disagree about one image
    exclude it (kept unlabelled, so copies of it elsewhere are still seen) with the reason."""
    by_path = {}
    for row in rows:
        by_path.setdefault(row.example.image_path, []).append(row)
    for same in by_path.values():
        first = same[0]
        differing = [name for name in first.values()
                     if len({str(row.values()[name]) for row in same}) > 1]
        if not differing:
            result.examples.append(first.example)
            result.skipped.extend({"path": f"{csv_path}:{row.line}", "reason": "repeated row",
                                   "detail": f"as line {first.line}"} for row in same[1:])
            continue
        reason = ("contradictory labels" if "label" in differing
                  else f"contradictory rows ({', '.join(differing)})")
        result.excluded.append({"case_id": os.path.relpath(first.example.image_path, base),
                                "reason": reason,
                                "lines": ", ".join(str(row.line) for row in same)})
        first.example.label = None
        result.examples.append(first.example)


class _CountedLines:
    """The file's lines, counted: the number of the line a parse error is on (the csv module's
    own ``line_num`` lags behind on a failing line)."""

    def __init__(self, f):
        self.file, self.number = f, 0

    def __iter__(self):
        return self

    def __next__(self):
        line = next(self.file)
        self.number += 1
        return line


def _first_undecodable_line(csv_path):
    """Number of the first line that is not UTF-8 (a text read decodes ahead in blocks, so
    its error cannot say)."""
    with open(csv_path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 1


def check_header(csv_path):
    """CsvError when the header (the first line only is read) lacks or repeats a column."""
    read_csv(csv_path, lambda reader, lines: _header(reader, csv_path))


def _read_rows(reader, lines, csv_path, base, class_map, result):
    """[_Row] of the usable rows; the others are skipped in ``result`` with the reason."""
    columns = _header(reader, csv_path)
    reader.fieldnames = columns
    if "patient_id" not in columns:
        result.notes.append(folders.NO_PATIENT_NOTE.replace("--patient_id_regex",
                                                            "patient_id column"))
    rows = []
    for row in reader:
        where = f"{csv_path}:{lines.number}"
        try:
            rows.append(_Row(lines.number, _example(row, base, class_map)))
        except files.FileError as error:  # RowError, or ImageError reading a DICOM header
            result.skip_error(where, error)
    return rows


def read_csv(csv_path, parse):
    """``parse(csv.DictReader, counted lines)`` over the file; CsvError (one line naming the
    file and line) when the file cannot be read or parsed as UTF-8 CSV."""
    lines = None
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            lines = _CountedLines(f)
            return parse(csv.DictReader(lines), lines)
    except UnicodeDecodeError as error:
        raise CsvError(f"{csv_path} line {_first_undecodable_line(csv_path)}: not UTF-8 "
                       "text; save the file as UTF-8") from error
    except csv.Error as error:  # e.g. a cell above the csv module's field size limit
        raise CsvError(f"{csv_path} line {lines.number}: {error}") from error
    except OSError as error:
        raise CsvError(f"{csv_path}: cannot read ({error.strerror or error})") from error


def read(csv_path, class_map=None):
    """Reads the rows of ``csv_path`` into a ReadResult; bad rows are skipped with the reason.
    CsvError (one line naming the file and line) when the file cannot be parsed as CSV."""
    class_map = folders.DEFAULT_CLASS_MAP if class_map is None else class_map
    base = os.path.dirname(os.path.abspath(csv_path))
    result = ReadResult(source=SOURCE)
    rows = read_csv(csv_path, lambda reader, lines: _read_rows(reader, lines, csv_path, base,
                                                                class_map, result))
    _merge_rows(result, rows, csv_path, base)
    result.cases = len({e.patient_id for e in result.examples})
    logging.info("CSV %s: %d patients, %d images, %d rows skipped", csv_path, result.cases,
                 len(result.examples), len(result.skipped))
    return result
