"""Reader for folders of images per class: ``<root>/<class>/...`` or ``<root>/<split>/<class>/...``.

The label of a file is the class of the enclosing folders whose names the class map knows
(case-insensitive); when those folders name different classes (``benign/1/scan.jpg``) the
image is excluded with the reason, since no single rule can say which one is meant.
Patient ids come from ``patient_id_regex`` applied to the path relative to the root (its
``patient`` group, else its first group, else the whole match); without it a DICOM file's
PatientID is used, and any other file is its own patient, which the result's notes say.
"""

import os
import re

from absl import logging

from thyroid import BENIGN, MALIGNANT
from thyroid.datasets import dicom, files, images
from thyroid.datasets.example import Example, ReadResult, make_image_key, make_patient_id

SOURCE = "folders"
DEFAULT_CLASS_MAP = {"benign": BENIGN, "malignant": MALIGNANT, "0": BENIGN, "1": MALIGNANT}
IGNORED_NAMES = ("README", "SOURCE", "LICENSE", ".DS_Store", "Thumbs.db")
IGNORED_EXTENSIONS = (".md", ".txt", ".csv", ".json")
# The words every "no patient ids" note holds (the study's report finds them in the manifest).
NO_PATIENT_IDS = "every image is its own patient"
NO_PATIENT_NOTE = (f"no --patient_id_regex: {NO_PATIENT_IDS} (DICOM PatientID aside), so "
                   "patient-level splitting cannot be guaranteed")


class ReaderError(Exception):
    """A reader option (class map, regular expression, CSV header) that cannot be used."""


def parse_class_map(text, base=None):
    """``"name:0,other:1"`` -> the default map (or ``base``) extended; names case-insensitive."""
    mapping = dict(DEFAULT_CLASS_MAP if base is None else base)
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, _, label = item.rpartition(":")
        if not name or label.strip() not in ("0", "1"):
            raise ReaderError(f"--class_map entry {item!r}: expected name:0 or name:1")
        mapping[name.strip().lower()] = int(label)
    return mapping


def compile_patient_regex(pattern):
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ReaderError(f"--patient_id_regex {pattern!r}: {error}") from error


def patient_from_path(regex, relative):
    """Patient id from a relative path, or None when the expression does not match."""
    match = regex.search(relative.replace(os.sep, "/"))
    if not match:
        return None
    if "patient" in regex.groupindex:
        return match.group("patient")
    return match.group(1) if regex.groups else match.group(0)


def class_folders(relative, class_map):
    """The enclosing folders the class map knows, outermost first."""
    return [folder for folder in os.path.dirname(relative).split(os.sep)
            if folder.strip().lower() in class_map]


def label_from_folders(relative, class_map):
    """(label, nearest class folder's name); (None, '') without a class folder or when the
    class folders name different classes (``class_folders`` says which)."""
    found = class_folders(relative, class_map)
    labels = {class_map[folder.strip().lower()] for folder in found}
    if len(labels) != 1:
        return None, ""
    return labels.pop(), found[-1]


def default_patient(path, relative):
    """DICOM PatientID when present, else the file itself (relative path)."""
    if os.path.splitext(path)[1].lower() in images.DICOM_EXTENSIONS:
        return dicom.dicom_patient(path, relative)[0]
    return relative


def _walk(directory, result):
    def unreadable(error):  # os.walk would silently leave the folder out
        result.skip(error.filename, "unreadable folder", error.strerror or str(error))

    for folder, subfolders, names in os.walk(directory, onerror=unreadable):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and os.path.splitext(name)[0] not in IGNORED_NAMES:
                yield os.path.join(folder, name)


def read(directory, class_map=None, patient_id_regex=None):
    """Reads every image below ``directory`` into a ReadResult."""
    class_map = DEFAULT_CLASS_MAP if class_map is None else class_map
    regex = compile_patient_regex(patient_id_regex) if isinstance(patient_id_regex, str) \
        else patient_id_regex
    result = ReadResult(source=SOURCE)
    if regex is None:
        result.notes.append(NO_PATIENT_NOTE)
        logging.warning("%s: %s", directory, NO_PATIENT_NOTE)
    patients = set()
    for path in _walk(directory, result):
        relative = os.path.relpath(path, directory)
        try:
            files.check_name(relative)
        except files.FileError as error:
            result.skip_error(path, error)
            continue
        if images.is_mask_file(path):
            continue  # a nodule outline beside its image (datasets.outlines), not a scan
        if not images.is_image_file(path):
            if not path.lower().endswith(IGNORED_EXTENSIONS):
                result.skip(path, "unknown file type")
            continue
        label, folder = label_from_folders(relative, class_map)
        try:
            files.check_regular_file(path)  # before the DICOM header is read for its patient
            patient = patient_from_path(regex, relative) if regex else default_patient(path, relative)
        except files.FileError as error:
            result.skip_error(path, error)
            continue
        if patient is None:
            result.skip(path, "--patient_id_regex does not match its path")
            continue
        if label is None:
            result.excluded.append(_unlabelled(relative, class_map))
        patients.add(patient)
        result.examples.append(Example(
            source=SOURCE, case_id=patient, patient_id=make_patient_id(SOURCE, patient),
            image_path=path, label=label, fields={"class_folder": folder},
            key=make_image_key(SOURCE, directory, path)))
    result.cases = len(patients)
    counts = result.counts()
    logging.info("Folders %s: %d patients, %d images (%d labelled), %d files skipped", directory,
                 counts["cases"], counts["images"], counts["labelled_images"], len(result.skipped))
    return result


def _unlabelled(relative, class_map):
    """Why an image has no label: no class folder, or class folders that disagree."""
    found = class_folders(relative, class_map)
    if not found:
        return {"case_id": relative, "reason": "no class folder"}
    return {"case_id": relative, "reason": "class folders disagree", "folders": "/".join(found)}
