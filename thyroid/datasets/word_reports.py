"""Reader for the hospital's layout of Word reports: ``<root>/<patient_id>/report.docx`` plus
that patient's images (the ``local`` source kind, ``--local_dir``).

The report gives the label through ``thyroid.datasets.report_labels`` (negation, uncertainty,
indication and history aware) and ``DIAGNOSIS_LABELS``, a table of phrases that callers may
extend or override (``read(..., diagnosis_table=...)`` or a JSON file of ``{"phrase": 0 or 1}``
via ``load_diagnosis_table``). The result lists, per patient, the label and the words that
decided it, and every excluded report with its reason.

report.docx is a zip archive: it is refused before parsing when it is larger than
``MAX_REPORT_BYTES``, holds more than ``MAX_REPORT_MEMBERS`` members or declares more than
``MAX_REPORT_UNCOMPRESSED`` bytes in its central directory (zip bombs).
"""

import json
import os
import zipfile

from absl import logging

from thyroid import BENIGN, MALIGNANT
from thyroid.datasets import files, images, report_labels
from thyroid.datasets.example import Example, ReadResult, make_image_key, make_patient_id

SOURCE = "local"
REPORT_NAME = "report.docx"
DIAGNOSIS_LABELS = report_labels.DIAGNOSIS_LABELS
DIAGNOSIS_HEADINGS = report_labels.HEADINGS
# A text report is a few tens of kB; these leave a wide margin for embedded pictures.
MAX_REPORT_BYTES = 20_000_000
MAX_REPORT_UNCOMPRESSED = 100_000_000
MAX_REPORT_MEMBERS = 1000


class ReportError(files.FileError):
    """A report .docx that cannot (or must not) be opened."""


def load_diagnosis_table(json_path=None):
    """The default table, updated with ``{"phrase": label}`` entries from a JSON file."""
    table = dict(DIAGNOSIS_LABELS)
    if json_path:
        with open(json_path, encoding="utf-8") as f:
            overrides = json.load(f)
        for phrase, label in overrides.items():
            if label not in (BENIGN, MALIGNANT):
                raise ValueError(f"label for {phrase!r} must be 0 or 1, got {label!r}")
            table[report_labels.normalise(phrase)] = int(label)
    return table


def check_report_size(docx_path):
    """Raises ReportError when the archive is too large, too many-membered or a zip bomb."""
    try:
        size = files.check_regular_file(docx_path)
    except files.FileError as error:
        raise ReportError("unreadable .docx", str(error)) from error
    if size == 0:
        raise ReportError("unreadable .docx", "empty file")
    if size > MAX_REPORT_BYTES:
        raise ReportError("report too large", f"{size} bytes (limit {MAX_REPORT_BYTES})")
    try:
        with zipfile.ZipFile(docx_path) as archive:
            members = archive.infolist()  # the central directory only; nothing is inflated
    except (zipfile.BadZipFile, OSError) as error:
        raise ReportError("unreadable .docx", str(error)) from error
    if len(members) > MAX_REPORT_MEMBERS:
        raise ReportError("report has too many zip members",
                          f"{len(members)} (limit {MAX_REPORT_MEMBERS})")
    total = sum(member.file_size for member in members)
    if total > MAX_REPORT_UNCOMPRESSED:
        raise ReportError("report too large uncompressed",
                          f"{total} bytes (limit {MAX_REPORT_UNCOMPRESSED})")


def read_report_lines(docx_path):
    """Paragraph texts, then one line per table row (cells joined by ': ')."""
    import docx  # python-docx
    check_report_size(docx_path)
    try:
        document = docx.Document(docx_path)
    except Exception as error:  # zipfile, KeyError, lxml errors for broken files
        raise ReportError("unreadable .docx", str(error)) from error
    lines = [p.text for p in document.paragraphs if p.text.strip()]
    for table in document.tables:
        for row in table.rows:
            cells = []
            for cell in row.cells:
                if cell.text.strip() and cell.text not in cells:  # merged cells repeat
                    cells.append(cell.text.strip())
            if cells:
                lines.append(": ".join(cells))
    return lines


def find_tirads(lines):
    for line in lines:
        match = report_labels.TIRADS.search(report_labels.normalise(line))
        if match:
            return match.group(1) + (match.group(2) or "")
    return ""


def explain_diagnosis(lines, table=None, suspicious_as_malignant=False):
    """report_labels.Decision(label or None, deciding words, reason when None)."""
    table = DIAGNOSIS_LABELS if table is None else table
    return report_labels.explain(lines, table, suspicious_as_malignant)


def diagnosis_label(lines, table=None):
    """(label or None, the words that decided it)."""
    decision = explain_diagnosis(lines, table)
    return decision.label, decision.text


def report_lines_or_error(docx_path):
    """``read_report_lines`` as a value: (lines, None), or (None, (kind, reason, detail)) for a
    report that cannot be read. Parsing the reports is most of the reader's time; a caller
    maps this over them in worker processes (``read``'s ``map_fn``), and errors come back as
    plain values."""
    try:
        return read_report_lines(docx_path), None
    except ReportError as error:
        return None, ("report", error.reason, error.detail)
    except OSError as error:
        return None, ("os", error.errno, error.strerror or str(error))


def _parsed_reports(directory, names, map_fn):
    """{report path: report_lines_or_error} of every patient folder's report.docx."""
    paths = [os.path.join(directory, name, REPORT_NAME) for name in names]
    paths = [path for path in paths if os.path.isfile(path)]
    return dict(zip(paths, map_fn(report_lines_or_error, paths)))


def read(directory, diagnosis_table=None, suspicious_as_malignant=False, map_fn=map):
    """Reads ``<directory>/<patient>/`` folders into a ReadResult. ``map_fn(fn, items)``
    parses the reports (the build passes its workers' ordered map)."""
    table = load_diagnosis_table() if diagnosis_table is None else diagnosis_table
    if isinstance(table, str):
        table = load_diagnosis_table(table)
    result = ReadResult(source=SOURCE)
    names = result.utf8_names(directory)
    parsed = _parsed_reports(directory, names, map_fn)
    for name in names:
        path = os.path.join(directory, name)
        if not os.path.isdir(path):
            result.skip(path, "not a patient folder")
            continue
        _read_patient(result, name, path, table, suspicious_as_malignant, parsed)
    for example in result.examples:
        example.key = make_image_key(SOURCE, directory, example.image_path)
    counts = result.counts()
    logging.info("Local %s: %d patients (%d labelled), %d images (%d labelled), excluded %s, "
                 "%d files skipped", directory, counts["cases"], counts["labelled_cases"],
                 counts["images"], counts["labelled_images"], counts["excluded_reasons"],
                 len(result.skipped))
    return result


def _report_lines(report_path, parsed):
    """The report's lines from ``parsed`` (or read now); raises what reading it raised."""
    lines, error = parsed.get(report_path) or report_lines_or_error(report_path)
    if error and error[0] == "report":
        raise ReportError(error[1], error[2])
    if error:
        raise OSError(error[1], error[2])
    return lines


def _read_patient(result, patient, folder, table, suspicious_as_malignant, parsed):
    result.cases += 1
    try:
        names = result.utf8_names(folder)
    except OSError as error:
        result.skip(folder, "unreadable folder", error.strerror or str(error))
        result.excluded.append({"case_id": patient, "reason": "unreadable folder"})
        return
    image_paths = []
    for name in names:
        path = os.path.join(folder, name)
        if name == REPORT_NAME or images.is_mask_file(name):
            continue  # a mask is an image's nodule outline (datasets.outlines), not a scan
        if not images.is_image_file(name):
            result.skip(path, "unknown file type")
            continue
        try:
            files.check_regular_file(path)
        except files.FileError as error:
            result.skip_error(path, error)
            continue
        image_paths.append(path)
    report_path = os.path.join(folder, REPORT_NAME)
    if not os.path.exists(report_path):
        result.excluded.append({"case_id": patient, "reason": "no report.docx"})
        return
    try:
        lines = _report_lines(report_path, parsed)
    except ReportError as error:
        result.skip_error(report_path, error)
        result.excluded.append({"case_id": patient, "reason": "unreadable report",
                                "detail": str(error)})
        return
    decision = explain_diagnosis(lines, table, suspicious_as_malignant)
    label, diagnosis = decision.label, decision.text
    if label is None:
        excluded = {"case_id": patient, "reason": decision.reason}
        if decision.text:
            excluded["words"] = decision.text
        result.excluded.append(excluded)
    else:
        result.labels.append({"case_id": patient, "label": label, "words": decision.text})
    if not image_paths:
        result.excluded.append({"case_id": patient, "reason": "no images"})
    fields = {"diagnosis": diagnosis, "report": "\n".join(lines)}
    for image_path in image_paths:
        result.examples.append(Example(
            source=SOURCE, case_id=patient, patient_id=make_patient_id(SOURCE, patient),
            image_path=image_path, label=label, tirads=find_tirads(lines), polygons=[],
            fields=dict(fields)))
