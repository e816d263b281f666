"""Reader for the local hospital layout: ``<root>/<patient_id>/report.docx`` plus images.

The report's diagnosis gives the label through ``DIAGNOSIS_LABELS``, a table of phrases that
callers may extend or override (``read(..., diagnosis_table=...)`` or a JSON file of
``{"phrase": 0 or 1}`` via ``load_diagnosis_table``). Matching is on whole words, case- and
hyphen-insensitive. A line that starts with "diagnosis", "impression" or "conclusion" (or a
table row headed so) is searched first, then the whole report. When both a benign and a
malignant phrase match, malignant wins ("multinodular goiter with papillary carcinoma").
"""

import json
import os
import re

from absl import logging

from thyroid import BENIGN, MALIGNANT
from thyroid.datasets import images
from thyroid.datasets.example import Example, ReadResult, make_patient_id

SOURCE = "local"
REPORT_NAME = "report.docx"
DIAGNOSIS_LABELS = {
    "cancerous": MALIGNANT,
    "cancer": MALIGNANT,
    "malignant": MALIGNANT,
    "malignancy": MALIGNANT,
    "carcinoma": MALIGNANT,
    "normal": BENIGN,
    "simple goiter": BENIGN,
    "multinodular goiter": BENIGN,
    "toxic goiter": BENIGN,
    "goiter": BENIGN,
    "thyroiditis": BENIGN,
    "benign nodule": BENIGN,
    "benign": BENIGN,
}
# Negated phrases that would otherwise match a malignant word.
NEGATIONS = ("non cancerous", "noncancerous", "not malignant", "no malignancy",
             "no evidence of malignancy", "non malignant", "nonmalignant", "not cancerous")
TIRADS_PATTERN = re.compile(r"\bti\s?rads\s*:?\s*([1-5])\s*([abc])?\b")
DIAGNOSIS_HEADINGS = ("diagnosis", "impression", "conclusion")


class ReportError(Exception):
    """A report .docx that cannot be opened."""


def load_diagnosis_table(json_path=None):
    """The default table, updated with ``{"phrase": label}`` entries from a JSON file."""
    table = dict(DIAGNOSIS_LABELS)
    if json_path:
        with open(json_path, encoding="utf-8") as f:
            overrides = json.load(f)
        for phrase, label in overrides.items():
            if label not in (BENIGN, MALIGNANT):
                raise ValueError(f"label for {phrase!r} must be 0 or 1, got {label!r}")
            table[_normalise(phrase)] = int(label)
    return table


def read_report_lines(docx_path):
    """Paragraph texts, then one line per table row (cells joined by ': ')."""
    import docx  # python-docx
    try:
        document = docx.Document(docx_path)
    except Exception as error:  # zipfile, KeyError, lxml errors for broken files
        raise ReportError(f"unreadable .docx: {error}") from error
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


def _normalise(text):
    return re.sub(r"\s+", " ", text.lower().replace("-", " ").replace("_", " ")).strip()


def _phrase_labels(text, table):
    text = _normalise(text)
    for negation in NEGATIONS:
        text = text.replace(negation, " ")
    found = set()
    for phrase, label in table.items():
        if re.search(r"\b" + re.escape(_normalise(phrase)) + r"\b", text):
            found.add(label)
    for match in TIRADS_PATTERN.finditer(text):
        found.add(MALIGNANT if int(match.group(1)) >= 4 else BENIGN)
    return found


def find_tirads(lines):
    for line in lines:
        match = TIRADS_PATTERN.search(_normalise(line))
        if match:
            return match.group(1) + (match.group(2) or "")
    return ""


def diagnosis_label(lines, table=None):
    """(label or None, the text it came from)."""
    table = DIAGNOSIS_LABELS if table is None else table
    headed = [line for line in lines if _normalise(line).startswith(DIAGNOSIS_HEADINGS)]
    for candidates in (headed, lines):
        found = set()
        for line in candidates:
            found |= _phrase_labels(line, table)
        if found:
            text = " | ".join(candidates if candidates is headed else lines)
            return max(found), text
    return None, ""


def read(directory, diagnosis_table=None):
    """Reads ``<directory>/<patient>/`` folders into a ReadResult."""
    table = load_diagnosis_table() if diagnosis_table is None else diagnosis_table
    if isinstance(table, str):
        table = load_diagnosis_table(table)
    result = ReadResult(source=SOURCE)
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not os.path.isdir(path):
            _skip(result, path, "not a patient folder")
            continue
        _read_patient(result, name, path, table)
    counts = result.counts()
    logging.info("Local %s: %d patients (%d labelled), %d images (%d labelled), excluded %s, "
                 "%d files skipped", directory, counts["cases"], counts["labelled_cases"],
                 counts["images"], counts["labelled_images"], counts["excluded_reasons"],
                 len(result.skipped))
    return result


def _read_patient(result, patient, folder, table):
    result.cases += 1
    image_paths = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name == REPORT_NAME:
            continue
        if images.is_image_file(name):
            image_paths.append(path)
        else:
            _skip(result, path, "unknown file type")
    report_path = os.path.join(folder, REPORT_NAME)
    if not os.path.exists(report_path):
        result.excluded.append({"case_id": patient, "reason": "no report.docx"})
        return
    try:
        lines = read_report_lines(report_path)
    except ReportError as error:
        _skip(result, report_path, str(error))
        result.excluded.append({"case_id": patient, "reason": "unreadable report"})
        return
    label, diagnosis = diagnosis_label(lines, table)
    if label is None:
        result.excluded.append({"case_id": patient, "reason": "no recognisable diagnosis"})
    if not image_paths:
        result.excluded.append({"case_id": patient, "reason": "no images"})
    fields = {"diagnosis": diagnosis, "report": "\n".join(lines)}
    for image_path in image_paths:
        result.examples.append(Example(
            source=SOURCE, case_id=patient, patient_id=make_patient_id(SOURCE, patient),
            image_path=image_path, label=label, tirads=find_tirads(lines), polygons=[],
            fields=dict(fields)))


def _skip(result, path, reason):
    logging.warning("Skipping %s: %s", path, reason)
    result.skipped.append({"path": path, "reason": reason})
