import json
import os

import numpy as np
from PIL import Image

from thyroid.datasets import word_reports
from thyroid.datasets.synthetic import docx_bytes


def _patient(root, name, paragraphs=(), table_rows=(), images=("a.jpg",), report=None):
    folder = root / name
    folder.mkdir()
    (folder / "report.docx").write_bytes(report if report is not None
                                         else docx_bytes(list(paragraphs), table_rows))
    for image in images:
        Image.fromarray(np.full((40, 60, 3), 120, np.uint8)).save(folder / image)
    return folder


def test_paragraph_and_table_diagnoses(tmp_path):
    _patient(tmp_path, "p1", ["Report", "Diagnosis: Papillary carcinoma"], images=("a.jpg", "b.png"))
    _patient(tmp_path, "p2", ["Report", "Findings: isthmus normal"],
             table_rows=(("Patient", "p2"), ("Diagnosis", "Multinodular goiter")), images=("a.bmp",))
    _patient(tmp_path, "p3", ["Impression: TIRADS 4b nodule"])
    _patient(tmp_path, "p4", ["Diagnosis: non-cancerous; thyroiditis"])
    result = word_reports.read(str(tmp_path))
    labels = {e.patient_id: e.label for e in result.labelled}
    assert labels == {"local:p1": 1, "local:p2": 0, "local:p3": 1, "local:p4": 0}
    assert result.counts()["labelled_images"] == 5
    p3 = [e for e in result.examples if e.case_id == "p3"][0]
    assert p3.tirads == "4b"


def test_unknown_diagnosis_excluded_with_reason(tmp_path):
    _patient(tmp_path, "p1", ["Diagnosis: pending review"])
    result = word_reports.read(str(tmp_path))
    assert list(result) == []
    assert result.excluded == [{"case_id": "p1", "reason": "no recognisable diagnosis"}]


def test_corrupt_docx_skipped_and_listed(tmp_path):
    _patient(tmp_path, "bad", report=b"PK\x03\x04 not really a zip")
    _patient(tmp_path, "empty", report=b"")
    _patient(tmp_path, "good", ["Diagnosis: simple goiter"])
    result = word_reports.read(str(tmp_path))
    skipped = {os.path.basename(os.path.dirname(s["path"])): s["reason"] for s in result.skipped}
    assert set(skipped) == {"bad", "empty"}
    assert all(r.startswith("unreadable .docx") for r in skipped.values())
    assert [e.case_id for e in result] == ["good"]


def test_unknown_files_and_missing_report(tmp_path):
    folder = _patient(tmp_path, "p1", ["Diagnosis: benign nodule"])
    (folder / "scan.xyz").write_text("?")
    (tmp_path / "p2").mkdir()
    (tmp_path / "stray.txt").write_text("?")
    result = word_reports.read(str(tmp_path))
    reasons = sorted(s["reason"] for s in result.skipped)
    assert reasons == ["not a patient folder", "unknown file type"]
    assert {"case_id": "p2", "reason": "no report.docx"} in result.excluded


def test_diagnosis_table_override(tmp_path):
    _patient(tmp_path, "p1", ["Diagnosis: Graves disease"])
    table_file = tmp_path.parent / "table.json"
    table_file.write_text(json.dumps({"Graves disease": 0}))
    assert list(word_reports.read(str(tmp_path))) == []
    result = word_reports.read(str(tmp_path), diagnosis_table=str(table_file))
    assert [e.label for e in result] == [0]
    assert "graves disease" in word_reports.load_diagnosis_table(str(table_file))
    assert "graves disease" not in word_reports.DIAGNOSIS_LABELS


def test_malignant_wins_when_both_match():
    label, _ = word_reports.diagnosis_label(
        ["Diagnosis: multinodular goiter with papillary carcinoma"])
    assert label == 1
