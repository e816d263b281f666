import csv
import dataclasses
import os

import numpy as np
import pytest

from study_rows import report_row
from thyroid.stats import metrics
from thyroid.study import paper, single_split_report, tables
from thyroid.study.rows import DEFAULT_ROW_IDS, STUDY_ROWS

DEFAULT_ROWS = [row for row in STUDY_ROWS if row.id in DEFAULT_ROW_IDS]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIX_COMMAND = "python -m thyroid.download_checkpoints --model inception_v3"


def _fake_rows():
    """Fabricated test input: two evaluated rows, one skipped, one failed."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    pids = np.repeat(np.arange(30), 2)
    rows = []
    for study_row in DEFAULT_ROWS:
        row_id = study_row.id
        row = report_row(row_id, study_row.model, study_row.mode, "skipped")
        if row_id in (1, 6):
            probs = np.clip(labels * 0.3 + rng.random(60) * 0.7, 0, 1)
            row = dataclasses.replace(
                row, status="ok", train_seconds=12.5 * row_id,
                checkpoint=("random init (no checkpoint)" if row_id == 1
                            else "ImageNet (vgg_16_2016_08_28)"),
                metrics=metrics.evaluate_predictions(labels, probs, pids, num_samples=200),
                labels=labels, probs=probs)
        elif row_id == 7:
            row = dataclasses.replace(row, status="failed", note="out of memory | see train.log")
        else:
            row = dataclasses.replace(row, note=f"checkpoint missing; run `{FIX_COMMAND}`")
        rows.append(row)
    return rows


RUN_INFO = {"dataset": "DDTI", "protocol": "patient", "date": "2024-01-01 12:00",
            "machine": "test box", "total_seconds": 3725.0,
            "counts": {"train": {"images": 300, "patients": 200}, "test": {"images": 60}}}


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_report_files_csv_and_png(tmp_path):
    rows = _fake_rows()
    paths = single_split_report.write_report(str(tmp_path), rows, RUN_INFO)
    for name in ("summary.md", "summary.csv", "roc.png", "confusion_matrices.png"):
        assert (tmp_path / name).is_file(), name
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]
    assert paths["summary_csv"] == str(tmp_path / "summary.csv")

    for png in ("roc.png", "confusion_matrices.png"):
        data = (tmp_path / png).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
        assert b"IEND" in data[-16:]

    columns, records = _read_csv(tmp_path / "summary.csv")
    expected = ["row_id", "model", "mode", "status", "checkpoint"]
    for name in ("accuracy", "sensitivity", "specificity", "auc"):
        expected += [name, f"{name}_ci_low", f"{name}_ci_high"]
    expected += ["train_seconds", "note"]
    assert columns == expected
    assert len(records) == len(DEFAULT_ROWS) == 11
    assert [int(r["row_id"]) for r in records] == list(range(1, 12))

    by_id = {int(r["row_id"]): r for r in records}
    for row in rows:
        rec = by_id[row.row_id]
        assert rec["model"] == row.model and rec["mode"] == row.mode
        assert rec["status"] == row.status
        if row.status == "ok":
            for name in ("accuracy", "sensitivity", "specificity", "auc"):
                entry = row.metrics[name]
                assert float(rec[name]) == pytest.approx(entry["value"], rel=1e-5)
                assert float(rec[f"{name}_ci_low"]) == pytest.approx(entry["ci95"][0], rel=1e-5)
                assert float(rec[f"{name}_ci_high"]) == pytest.approx(entry["ci95"][1], rel=1e-5)
                assert float(rec[f"{name}_ci_low"]) <= float(rec[name]) <= float(
                    rec[f"{name}_ci_high"])
            assert float(rec["train_seconds"]) == pytest.approx(row.train_seconds)
            assert rec["checkpoint"] == row.checkpoint
        else:
            assert rec["accuracy"] == "" and rec["auc_ci_high"] == ""
            assert rec["note"] == row.note
    assert FIX_COMMAND in by_id[2]["note"]


def test_summary_markdown_content(tmp_path):
    rows = _fake_rows()
    single_split_report.write_report(str(tmp_path), rows, RUN_INFO)
    md = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "DDTI" in md and "test box" in md and "1h 02m 05s" in md
    assert "Warning: image-level protocol" not in md
    # Evaluated row formatted as value [low, high].
    acc = rows[0].metrics["accuracy"]
    assert f"{acc['value']:.2f} [{acc['ci95'][0]:.2f}, {acc['ci95'][1]:.2f}]" in md
    # Skipped rows show their fix command; failed row's note survives the table escaping.
    assert tables.md(FIX_COMMAND) in md  # a note is the user's text, escaped
    assert "out of memory" in md
    assert "random init (no checkpoint)" in md
    # Paper's Table 1 beside ours, its protocol stated plainly.
    assert "Comparison with the paper's Table 1" in md
    assert "| 2 | VGG-16 pool5 + SVM | — | — | — | 0.99 | 1.00 | 0.985 |" in md
    assert "| 3 | Inception-v3 PreLogits + SVM | — | — | — | 0.967 | 0.985 | 0.95 |" in md
    acc6 = rows[5].metrics["accuracy"]["value"]
    assert f"| 6 | VGG-16 fine-tuning | {acc6:.2f} |" in md and "| 0.76 | 0.84 | 0.68 |" in md
    assert "augmented its images before splitting" in md and "--protocol=image" in md
    assert md.count("not in paper") == 4 * 3  # EfficientNet rows, ours included
    assert paper.NOT_AVAILABLE not in md
    assert "(roc.png)" in md and "(confusion_matrices.png)" in md
    for row in DEFAULT_ROWS:
        assert row.label in md


def test_the_single_split_report_opens_with_its_findings(tmp_path):
    """The best row by test-set AUC, with the results table's own figure, comes before the
    results, and the run's details come last."""
    rows = _fake_rows()
    single_split_report.write_report(str(tmp_path), rows, RUN_INFO)
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## Findings", "## Results (test set)"]
    assert headings[-1] == "## Run"
    best = max((r for r in rows if r.status == "ok"), key=lambda r: r.metrics["auc"]["value"])
    auc = best.metrics["auc"]
    line = next(line for line in text.splitlines() if line.startswith("- Best row"))
    assert line.startswith(f"- Best row by test-set AUC: {best.row_id} (")
    assert f"AUC {auc['value']:.2f} [{auc['ci95'][0]:.2f}, {auc['ci95'][1]:.2f}]" in line
    assert "Image-level split" not in text.split("## Results")[0]


def test_image_level_protocol_warns(tmp_path):
    info = dict(RUN_INFO, protocol="image-level (paper's protocol)")
    single_split_report.write_report(str(tmp_path), _fake_rows(), info)
    md = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "Warning: image-level protocol" in md
    assert "leaks patients" in md
    assert "**Image-level split**" in md.split("## Results")[0]  # in the findings


def test_manifest_counts_and_warning(tmp_path):
    manifest = {"protocol": "image",
                "splits": {"train": {"patients": 80, "images": 900,
                                     "original": {"benign": 40, "malignant": 60},
                                     "total": {"benign": 360, "malignant": 540}},
                           "test": {"patients": 30, "images": 45,
                                    "original": {"benign": 20, "malignant": 25},
                                    "total": {"benign": 20, "malignant": 25}}},
                "leakage": {"patients_in_multiple_splits": 17},
                "warning": "Image-level split. Patients in more than one split: 17"}
    info = {"dataset": "DDTI", "manifest": manifest, "quick": True, "big": list(range(500))}
    single_split_report.write_report(str(tmp_path), _fake_rows(), info)
    md = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "Warning: image-level protocol" in md  # protocol taken from the manifest
    assert "Patients in more than one split: 17" in md
    assert "| train | 80 | 900 | 40 / 60 | 360 / 540 |" in md
    assert "patients in multiple splits 17" in md
    assert max(len(line) for line in md.splitlines() if line.startswith("| big")) < 260


def test_report_with_nothing_evaluated(tmp_path):
    rows = [report_row(2, "vgg_16", "bottleneck_svm", "skipped", note=FIX_COMMAND)]
    single_split_report.write_report(str(tmp_path), rows, {})
    assert (tmp_path / "roc.png").read_bytes().startswith(PNG_SIGNATURE)
    assert (tmp_path / "confusion_matrices.png").read_bytes().startswith(PNG_SIGNATURE)
    _, records = _read_csv(tmp_path / "summary.csv")
    assert len(records) == 1 and records[0]["note"] == FIX_COMMAND


def test_paper_rows():
    assert [r.id for r in STUDY_ROWS] == list(range(1, 15))
    assert DEFAULT_ROW_IDS == tuple(range(1, 12))  # the localisation rows run when named
    # Row 14 is row 10 from a previous run's model (--init_from), compared with row 10.
    assert [(r.id, r.compared_with) for r in STUDY_ROWS if r.starts_from != "imagenet"] == [
        (14, 10)]
    assert (STUDY_ROWS[13].model, STUDY_ROWS[13].mode, STUDY_ROWS[13].settings) == (
        STUDY_ROWS[9].model, STUDY_ROWS[9].mode, STUDY_ROWS[9].settings)
    assert {r.model for r in STUDY_ROWS} == {"small_cnn", "vgg_16", "inception_v3",
                                             "efficientnet_lite0"}
    assert {r.mode for r in STUDY_ROWS} == {"scratch", "bottleneck_svm", "bottleneck_fc",
                                            "finetune", "bottleneck_logreg", "localise_logreg",
                                            "outline_logreg"}
    ours = [r for r in STUDY_ROWS if "(ours)" in r.label]
    assert [(r.id, r.model, r.mode) for r in ours] == [
        (11, "efficientnet_lite0", "bottleneck_logreg"), (12, "efficientnet_lite0", "localise_logreg")]
    assert [r.id for r in STUDY_ROWS if not r.deployable] == [13]
    assert "not deployable" in STUDY_ROWS[12].label
    assert paper.paper_values("efficientnet_lite0", "bottleneck_logreg") is None
    assert len(paper.PAPER_TABLE_1) == 7
    assert ("efficientnet_lite0", "finetune") not in paper.PAPER_TABLE_1
    assert paper.paper_values("efficientnet_lite0", "finetune") is None
    assert paper.PAPER_DATASETS == ("combined",)
    assert any(value is not None for entry in paper.PAPER_TABLE_1.values()
               for metrics in entry.values() for value in metrics.values())
    assert "2525" in paper.PAPER_SOURCE and "613" in paper.PAPER_SOURCE
    assert paper.paper_values("vgg_16", "bottleneck_svm") == {
        "accuracy": 0.99, "sensitivity": 1.00, "specificity": 0.985}
    assert paper.paper_values("small_cnn", "scratch") == {
        "accuracy": 0.82, "sensitivity": 0.89, "specificity": 0.82}
    assert paper.paper_values("inception_v3", "finetune") == {
        "accuracy": 0.79, "sensitivity": 0.80, "specificity": 0.77}
    for entry in paper.PAPER_TABLE_1.values():
        assert set(entry) == {"combined"}
        assert all(0.5 < v <= 1.0 for v in entry["combined"].values())
