"""Pooled out-of-fold summary and the cross-validation report files."""

import csv
import dataclasses
import json
import time

import numpy as np
import pytest

from thyroid.datasets import splits
from study_rows import report_row
from study_runs import read_predictions_csv
from thyroid.stats import metrics, operating_point, pooled
from thyroid.study import figures, report_csv, tables

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _study_predictions(num_patients=80, num_repeats=2, seed=0):
    """Fabricated cross-validation output: rows 1 (strong), 2 (weak), 3 (noise)."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(num_patients), 2)
    labels = np.repeat((rng.random(num_patients) < 0.6).astype(int), 2)
    groups = [f"p{p}" for p in patients]
    assignment = splits.cross_validation_folds(labels.tolist(), groups, 4, num_repeats, seed)
    strength = {1: 2.5, 2: 0.8, 3: 0.0}
    records = []
    for repeat in assignment["repeats"]:
        for row_id, gap in strength.items():
            probs = 1 / (1 + np.exp(-(gap * (labels - 0.5) + rng.normal(size=labels.size))))
            for fold in repeat["folds"]:
                val = fold["validation"]
                threshold = operating_point.choose_threshold("youden", labels[val], probs[val])
                for i in fold["test"]:
                    records.append({"row_id": row_id, "repeat": repeat["repeat"],
                                    "fold": fold["fold"], "image": f"img{i}.png",
                                    "patient_id": f"ddti:{patients[i]}",
                                    "label": int(labels[i]), "prob": float(probs[i]),
                                    "threshold": threshold})
    return records


def test_every_image_has_one_out_of_fold_prediction_per_repeat_and_row():
    records = _study_predictions()
    keys = [(r["row_id"], r["repeat"], r["image"]) for r in records]
    assert len(keys) == len(set(keys)) == 3 * 2 * 160


def test_summary_matches_metrics_on_one_repeat():
    records = [r for r in _study_predictions() if r["repeat"] == 0]
    summary = pooled.summarize_predictions(records, num_samples=300)
    row = [r for r in records if r["row_id"] == 1]
    labels = [r["label"] for r in row]
    probs = [r["prob"] for r in row]
    thresholds = np.array([r["threshold"] for r in row])
    figures = summary[1]
    assert figures.auc == pytest.approx(metrics.auc_score(labels, probs))
    at_folds = metrics.binary_metrics(labels, probs, thresholds)
    assert figures.sensitivity == pytest.approx(at_folds["sensitivity"])
    assert figures.specificity_at_0_5 == pytest.approx(
        metrics.binary_metrics(labels, probs, 0.5)["specificity"])
    assert figures.brier == pytest.approx(metrics.brier_score(labels, probs))
    assert figures.auc_ci_low <= figures.auc <= figures.auc_ci_high
    assert figures.threshold == pytest.approx(thresholds.mean())
    assert figures.images == 160 and figures.patients == 80
    fold_aucs = [metrics.auc_score([r["label"] for r in row if r["fold"] == k],
                                   [r["prob"] for r in row if r["fold"] == k])
                 for k in range(4)]
    assert figures.auc_fold_mean == pytest.approx(np.mean(fold_aucs))
    assert figures.auc_fold_sd == pytest.approx(np.std(fold_aucs, ddof=1))


def test_repeats_are_averaged_and_best_row_compared():
    summary = pooled.summarize_predictions(_study_predictions(), num_samples=200)
    assert len(summary[1].auc_by_repeat) == 2
    assert summary[1].auc == pytest.approx(np.mean(summary[1].auc_by_repeat))
    assert summary[1].auc > 0.85 and abs(summary[3].auc - 0.5) < 0.12
    assert summary[1].p_vs_best is None and summary[1].best_row
    assert summary[3].p_vs_best < 0.001
    assert 0 < summary[2].p_vs_best < 1


def test_external_records_are_summarised_apart():
    records = _study_predictions(num_repeats=1)
    external = [dict(r, fold="external", image="ext-" + r["image"]) for r in records
                if r["row_id"] == 2]
    summary = pooled.summarize_predictions(records + external, num_samples=100)
    assert summary[2].images == 160
    outside = pooled.summarize_external(records + external, num_samples=100)
    assert set(outside) == {2} and outside[2].images == 160
    assert outside[2].auc == pytest.approx(summary[2].auc)


def test_summary_is_fast():
    records = _study_predictions(num_patients=300, num_repeats=1)
    start = time.perf_counter()
    pooled.summarize_predictions(records, num_samples=1000)
    assert time.perf_counter() - start < 5.0


def test_cv_report_files(tmp_path):
    records = _study_predictions(num_repeats=1)
    external = [dict(r, fold="external") for r in records if r["row_id"] == 1]
    rows = [report_row(1, "vgg_16", "bottleneck_svm", "ok", label="VGG-16 pool5 + SVM", checkpoint="ImageNet (vgg)"),
            report_row(2, "vgg_16", "finetune", "ok"),
            report_row(3, "small_cnn", "scratch", "ok"),
            report_row(4, "inception_v3", "finetune", "skipped", note="checkpoint missing")]
    path = report_csv.write_predictions_csv(str(tmp_path / report_csv.PREDICTIONS_CSV),
                                            records + external)
    read_back = read_predictions_csv(path)
    with open(path, encoding="utf-8") as f:
        assert f.readline().strip() == ("row_id,repeat,fold,image,patient_id,label,prob,risk,"
                                        "spread,threshold")
    assert len(read_back) == len(records) + len(external)
    assert {r["fold"] for r in read_back} == {"0", "1", "2", "3", "external"}

    summaries = pooled.summarize_predictions(read_back, num_samples=100)
    assert summaries[1].auc == pytest.approx(
        pooled.summarize_predictions(records, num_samples=100)[1].auc)
    outside = pooled.summarize_external(read_back, num_samples=100)
    text = report_csv.cv_summary_csv_text(rows, summaries, outside)
    table = list(csv.DictReader(text.splitlines()))
    required = ("row_id,model,mode,status,auc,auc_ci_low,auc_ci_high,auc_fold_mean,"
                "auc_fold_sd,threshold,sensitivity,specificity,accuracy,brier,"
                "calibration_intercept,calibration_slope,p_vs_best,sensitivity_at_0_5,"
                "specificity_at_0_5,accuracy_at_0_5,external_auc,external_sensitivity,"
                "external_brier,external_calibration_slope,brier_recalibrated,"
                "calibration_intercept_recalibrated,calibration_slope_recalibrated,"
                "external_brier_recalibrated,external_calibration_slope_recalibrated,"
                "patient_auc_mean,patient_auc_max,external_patient_auc_mean,"
                "external_patient_auc_max,net_benefit_at_0_10,net_benefit_at_0_10_ci_low,"
                "treat_all_at_0_10,external_net_benefit_at_0_10").split(",")
    assert set(required) <= set(table[0])
    by_id = {r["row_id"]: r for r in table}
    assert float(by_id["1"]["auc"]) == pytest.approx(summaries[1].auc, rel=1e-5)
    assert by_id["1"]["p_vs_best"] == "" and float(by_id["3"]["p_vs_best"]) < 0.05
    assert float(by_id["1"]["external_auc"]) == pytest.approx(outside[1].auc, rel=1e-5)
    assert by_id["2"]["external_auc"] == "" and by_id["4"]["auc"] == ""
    assert by_id["4"]["note"] == "checkpoint missing"
    assert by_id["1"]["checkpoint"] == "ImageNet (vgg)" and by_id["2"]["checkpoint"] == ""
    assert "external_auc" not in report_csv.cv_summary_csv_text(rows, summaries).split("\n")[0]

    for name, plot in (("roc.png", figures.plot_pooled_roc),
                       ("calibration.png", figures.plot_calibration)):
        assert plot(rows, read_back, str(tmp_path / name)) == 3
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE)


def test_predictions_csv_rejects_bad_label(tmp_path):
    record = {"row_id": 1, "repeat": 0, "fold": 0, "image": "a.png", "patient_id": "p",
              "label": 2, "prob": 0.3, "threshold": 0.5}
    with pytest.raises(ValueError, match="a.png"):
        report_csv.write_predictions_csv(str(tmp_path / "p.csv"), [record])
    assert not (tmp_path / "p.csv").exists()
    (tmp_path / "q.csv").write_text("row_id,prob\n1,0.5\n")
    with pytest.raises(ValueError, match="q.csv"):
        read_predictions_csv(str(tmp_path / "q.csv"))


def test_cv_results_markdown():
    summaries = pooled.summarize_predictions(_study_predictions(num_repeats=1), num_samples=100)
    rows = [report_row(1, "vgg_16", "bottleneck_svm", "ok"),
            report_row(3, "small_cnn", "scratch", "ok"),
            report_row(4, "inception_v3", "finetune", "skipped")]
    lines = tables.cv_results_markdown(rows, summaries)
    first = summaries[1]
    assert lines[2].startswith("| 1 | VGG-16 pool5 + SVM | ok | "
                               f"{first.auc:.2f} [{first.auc_ci_low:.2f}, "
                               f"{first.auc_ci_high:.2f}] | {first.auc_fold_mean:.2f} ± ")
    assert lines[2].endswith("| best |") and lines[3].endswith("| < 0.001 |")
    assert lines[4].startswith("| 4 | Inception-v3 fine-tuning | skipped | — |")
    assert "not corrected for multiple comparisons" in "\n".join(lines)


def test_row_figures_name_every_table_threshold_and_read_back_from_json():
    """The net-benefit fields are the table's thresholds; a saved row's figures come back
    equal, and a figure the type does not know is refused, naming it."""
    from thyroid.stats import decision
    names = {field.name for field in dataclasses.fields(pooled.RowFigures)}
    for threshold in decision.TABLE_THRESHOLDS:
        suffix = decision.threshold_name(threshold)
        assert {f"net_benefit_at_{suffix}", f"net_benefit_at_{suffix}_ci_low",
                f"net_benefit_at_{suffix}_ci_high", f"treat_all_at_{suffix}"} <= names
    assert len([n for n in names if n.startswith("treat_all_at_")]) == len(
        decision.TABLE_THRESHOLDS)
    figures = pooled.summarize_predictions(_study_predictions(num_repeats=1), num_samples=20)
    saved = json.loads(json.dumps({str(k): v.to_json() for k, v in figures.items()}))
    again = pooled.figures_of(saved)
    assert again.keys() == figures.keys()
    assert json.dumps(again[1].to_json()) == json.dumps(figures[1].to_json())
    with pytest.raises(ValueError, match="unknown row figure.*auc_renamed"):
        pooled.RowFigures.from_json(dict(saved["1"], auc_renamed=0.5))


def _external_by_shift(unusual_counts):
    """External records of rows 1 and 2 over 60 images (30 per class) and a shift per image:
    ``unusual_counts`` = (benign, malignant) images given shifts above 99, the rest below."""
    rng = np.random.default_rng(3)
    labels = np.array([0] * 30 + [1] * 30)
    shift = {}
    taken = {0: 0, 1: 0}
    for i, label in enumerate(labels):
        unusual = taken[label] < unusual_counts[label]
        taken[label] += unusual
        shift[f"ext{i}.png"] = 99.5 + rng.random() * 0.5 if unusual else rng.random() * 99.0
    records = []
    for row_id, gap in ((1, 3.0), (2, 0.5)):
        probs = 1 / (1 + np.exp(-(gap * (labels - 0.5) + rng.normal(size=labels.size))))
        records += [{"row_id": row_id, "repeat": 0, "fold": "external", "image": f"ext{i}.png",
                     "patient_id": f"p{i}", "label": int(label), "prob": float(p),
                     "threshold": 0.5} for i, (label, p) in enumerate(zip(labels, probs))]
    return records, shift


def test_external_figures_by_shift_and_the_dash_rule():
    """Usual and unusual external images get their own AUC, each only with at least 5 images
    of each class on its side; else — with the counts (summary.csv: blank, counts beside)."""
    from thyroid.study.clinical_report import shift_markdown
    rows = [report_row(1, "vgg_16", "finetune"), report_row(2, "small_cnn", "scratch")]
    for counts, unusual_auc in (((6, 5), True), ((6, 4), False), ((0, 0), False)):
        records, shift = _external_by_shift(dict(enumerate(counts)))
        outside = pooled.summarize_external(records, num_samples=50, shift=shift)
        for row_id, figures in outside.items():
            mine = [r for r in records if r["row_id"] == row_id]
            unusual = [r for r in mine if shift[r["image"]] > 99.0]
            usual = [r for r in mine if shift[r["image"]] <= 99.0]
            assert (figures.unusual_benign, figures.unusual_malignant) == counts
            assert (figures.usual_benign, figures.usual_malignant) == (30 - counts[0],
                                                                       30 - counts[1])
            assert figures.unusual_share == pytest.approx(sum(counts) / 60)
            assert figures.median_shift == pytest.approx(np.median(list(shift.values())))
            assert figures.auc_usual == pytest.approx(metrics.auc_score(
                [r["label"] for r in usual], [r["prob"] for r in usual]))
            if unusual_auc:
                assert figures.auc_unusual == pytest.approx(metrics.auc_score(
                    [r["label"] for r in unusual], [r["prob"] for r in unusual]))
            else:
                assert np.isnan(figures.auc_unusual)
        markdown = "\n".join(shift_markdown(rows, outside))
        table = list(csv.DictReader(report_csv.cv_summary_csv_text(
            rows, pooled.summarize_predictions(records, num_samples=0), outside).splitlines()))
        for line in table:
            figures = outside[int(line["row_id"])]
            assert float(line["external_unusual_share"]) == pytest.approx(figures.unusual_share,
                                                                          rel=1e-5)
            assert float(line["external_median_shift"]) == pytest.approx(figures.median_shift,
                                                                         rel=1e-5)
            assert float(line["external_auc_usual"]) == pytest.approx(figures.auc_usual,
                                                                      rel=1e-5)
            assert (line["external_unusual_benign"], line["external_unusual_malignant"]) == (
                str(counts[0]), str(counts[1]))
            cell = f"({counts[0]} benign, {counts[1]} malignant)"
            if unusual_auc:
                assert float(line["external_auc_unusual"]) == pytest.approx(
                    figures.auc_unusual, rel=1e-5)
                assert f"| {figures.auc_unusual:.2f} {cell} |" in markdown
            else:
                assert line["external_auc_unusual"] == ""
                assert f"| — {cell} |" in markdown
        assert f"| {round(100 * sum(counts) / 60)} % ({sum(counts)} of 60) |" in markdown


def test_no_shift_figures_without_a_shift_score():
    from thyroid.study.clinical_report import shift_markdown
    records, _ = _external_by_shift({0: 0, 1: 0})
    outside = pooled.summarize_external(records, num_samples=50)
    assert outside[1].unusual_share is None and np.isnan(outside[1].auc_usual)
    assert shift_markdown([report_row(1, "vgg_16", "finetune")], outside) == []
    said = shift_markdown([report_row(1, "vgg_16", "finetune")], outside,
                          "the shift job skipped: no checkpoint at /x/[a]*")
    assert said[0] == ("No shift score of the external images: the shift job skipped: no "
                       + tables.md("checkpoint at /x/[a]*") + ".")
