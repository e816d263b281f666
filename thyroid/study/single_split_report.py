"""Report of a single-split study: summary.md, summary.csv, roc.png and
confusion_matrices.png, each written atomically.

``write_report(run_dir, rows, run_info)``.

``rows``: one ``thyroid.study.results.RowResult`` per method, read by attribute: row_id,
model, mode, label, title, status ('ok' | 'skipped' | 'failed'), checkpoint (str or None),
note (e.g. the command that fixes a missing checkpoint), train_seconds (float or None),
metrics (the dict ``thyroid.stats.metrics.evaluate_predictions`` returns, or None), labels /
probs (the test arrays, or None; for the ROC curve).

``run_info``: dict, all keys optional
  dataset, protocol ('patient' or 'image' or a longer description starting with one of
  them), counts (dict or str), date, machine, total_seconds, threshold, image_level (bool,
  forces the leakage warning), manifest (the ``build_tfrecords`` manifest: its per-split
  counts, leakage check and warning are shown), and any other key, listed compactly.
"""

import os

from thyroid import io_utils
from thyroid.stats import metric_text, metrics
from thyroid.study import paper
from thyroid.study.figures import CONFUSION_PNG, ROC_PNG, plot_confusion_matrices, plot_roc
from thyroid.study.html_page import SUMMARY_MD
from thyroid.study.report_csv import SUMMARY_CSV, summary_csv_text
from thyroid.study.tables import (PAPER_PROTOCOL_NOTE, duration, md, metric_entry, paper_cell,
                                  short, table_rows)

IMAGE_LEVEL_WARNING = (
    "**Warning: image-level protocol.** Images were split without regard to patients, so "
    "images of the same patient (often near-identical frames of the same nodule) can be in "
    "both the training and the test set. This leaks patients across the split and inflates "
    "every number below; use the patient-level protocol for an honest estimate.")
_RUN_INFO_ORDER = ("dataset", "protocol", "counts", "threshold", "date", "machine",
                   "total_seconds")


def is_image_level(run_info):
    """True when the run used the image-level (patient-leaking) protocol."""
    if run_info.get("image_level"):
        return True
    protocol = str(run_info.get("protocol") or "").strip().lower().replace("_", "-")
    return protocol.startswith("image")


def _counts_text(counts):
    if counts is None:
        return "—"
    if isinstance(counts, str):
        return counts
    if isinstance(counts, dict):
        parts = []
        for key, value in counts.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{k} {v}" for k, v in value.items())
                parts.append(f"{key}: {inner}")
            else:
                parts.append(f"{key}: {value}")
        return "; ".join(parts)
    return str(counts)


def _split_table(split_summary):
    """Markdown table of a build manifest's per-split counts."""
    lines = ["| split | patients | images | original benign / malignant | "
             "with augmentation benign / malignant |", "|---|---|---|---|---|"]
    for split, info in split_summary.items():
        if not isinstance(info, dict):
            continue
        original = info.get("original") or {}
        total = info.get("total") or {}
        lines.append(
            f"| {md(split)} | {info.get('patients', '—')} | {info.get('images', '—')} | "
            f"{original.get('benign', '—')} / {original.get('malignant', '—')} | "
            f"{total.get('benign', '—')} / {total.get('malignant', '—')} |")
    return lines + [""]


def _with_protocol(run_info):
    """``run_info`` with the manifest's protocol when it names none itself."""
    manifest = run_info.get("manifest") if isinstance(run_info.get("manifest"), dict) else {}
    if "protocol" not in run_info and manifest.get("protocol"):
        return dict(run_info, protocol=manifest["protocol"])
    return run_info


def _findings_section(rows, run_info):
    """The answer first: the best row by test-set AUC with its interval, what one split
    cannot tell, and the image-level warning where it applies (the figures are the results
    table's own entries)."""
    lines = ["## Findings", ""]
    scored = [r for r in rows if r.status == "ok" and r.metrics
              and (metric_entry(r, "auc") or {}).get("value") is not None]
    if scored:
        best = max(scored, key=lambda r: metric_entry(r, "auc")["value"])
        lines.append(f"- Best row by test-set AUC: {best.row_id} ({md(best.label)}), AUC "
                     f"{metric_text.format_value(metric_entry(best, 'auc'))} (95% CI).")
        lines.append("- One train/validation/test split: rows are not compared by a test, "
                     "and the intervals are wide; the cross-validated protocol (the default) "
                     "pools every patient and compares rows by DeLong's test.")
    else:
        lines.append("- No row was evaluated (see the rows not run below).")
    if is_image_level(_with_protocol(run_info)):
        lines.append("- **Image-level split**: patients leak across the split, so every figure "
                     "is optimistic (see the warning below).")
    return lines + [""]


def _run_section(run_info):
    """The "Run" table, the leakage warning and the split counts of a single-split study."""
    manifest = run_info.get("manifest") if isinstance(run_info.get("manifest"), dict) else {}
    run_info = _with_protocol(run_info)
    lines = ["## Run", "", "| | |", "|---|---|"]
    shown = {"image_level", "manifest"}
    for key in _RUN_INFO_ORDER:
        if key not in run_info:
            continue
        shown.add(key)
        value = run_info[key]
        if key == "counts":
            value = _counts_text(value)
        elif key == "total_seconds":
            key, value = "total time", duration(value)
        lines.append(f"| {key} | {md(value)} |")
    for key, value in run_info.items():
        if key in shown:
            continue
        lines.append(f"| {md(key)} | {md(short(value))} |")
    lines.append("")
    if is_image_level(run_info):
        lines += [IMAGE_LEVEL_WARNING, ""]
        if manifest.get("warning"):
            lines += [f"Dataset manifest: {md(manifest['warning'])}", ""]
    if isinstance(manifest.get("splits"), dict):
        lines += _split_table(manifest["splits"])
    if isinstance(manifest.get("leakage"), dict):
        leak = ", ".join(f"{md(k.replace('_', ' '))} {md(v)}" for k, v in manifest["leakage"].items()
                         if not isinstance(v, (dict, list)))
        if leak:
            lines += [f"Leakage check: {leak}.", ""]
    return lines


def _test_results_section(rows):
    lines = ["## Results (test set)", "",
             "Values: point estimate [95% CI, bootstrap over patients]. "
             "Malignant is the positive class; sensitivity = TP/(TP+FN), "
             "specificity = TN/(TN+FP).", "",
             "| # | Method | Status | Accuracy | Sensitivity | Specificity | AUC | "
             "Train time | Checkpoint |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ok = row.status == "ok" and row.metrics
        cells = [metric_text.format_value(metric_entry(row, name)) if ok else "—"
                 for name in metrics.METRIC_NAMES]
        lines.append(
            f"| {row.row_id} | {md(row.label)} | {md(row.status)} | "
            + " | ".join(cells)
            + f" | {duration(row.train_seconds)} | {md(row.checkpoint)} |")
    return lines + [""]


def _not_run_section(rows):
    """Skipped or failed rows with their fix."""
    not_run = [r for r in rows if r.status in ("skipped", "failed")]
    if not not_run:
        return []
    lines = ["## Skipped or failed rows", ""]
    for row in not_run:
        lines.append(f"- **{md(row.title)}** ({md(row.status)}): {md(row.note or '(no note)')}")
    return lines + [""]


def _paper_section(rows):
    """The paper's Table 1 beside our test-set figures."""
    lines = ["## Comparison with the paper's Table 1", "",
             f"Paper: {paper.PAPER_AUTHORS}, \"{paper.PAPER_TITLE}\" ({paper.PAPER_URL}).", "",
             PAPER_PROTOCOL_NOTE, ""]
    header = ["#", "Method", "Ours acc", "Ours sens", "Ours spec"]
    for dataset in paper.PAPER_DATASETS:
        header += [f"Paper {dataset} acc", f"Paper {dataset} sens", f"Paper {dataset} spec"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_key = {(r.model, r.mode): r for r in rows}
    for study_row in table_rows(rows):
        ours = by_key.get((study_row.model, study_row.mode))
        cells = [str(study_row.id), md(study_row.label)]
        for name in paper.PAPER_METRICS:
            entry = metric_entry(ours, name) if ours and ours.status == "ok" else None
            cells.append("—" if entry is None or entry.get("value") is None
                         else f"{entry['value']:.2f}")
        for dataset in paper.PAPER_DATASETS:
            values = paper.paper_values(study_row.model, study_row.mode, dataset)
            for name in paper.PAPER_METRICS:
                cells.append("not in paper" if values is None else paper_cell(values[name]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def summary_markdown(rows, run_info):
    """summary.md of a single-split study: the findings, the results and their plots, rows
    not run, the paper; the run's details last."""
    lines = ["# Thyroid ultrasound study: results", ""]
    lines += _findings_section(rows, run_info)
    lines += _test_results_section(rows)
    lines += ["## Plots", "",
              f"- [ROC curves]({ROC_PNG})",
              f"- [Confusion matrices]({CONFUSION_PNG})", ""]
    lines += _not_run_section(rows)
    lines += _paper_section(rows)
    lines += _run_section(run_info)
    return "\n".join(lines)


def write_report(run_dir, rows, run_info):
    """Writes summary.md, summary.csv, roc.png and confusion_matrices.png into run_dir.

    Returns {"summary_md", "summary_csv", "roc", "confusion"} -> path.
    """
    os.makedirs(run_dir, exist_ok=True)
    rows = list(rows)
    run_info = dict(run_info or {})
    paths = {
        "summary_md": os.path.join(run_dir, SUMMARY_MD),
        "summary_csv": os.path.join(run_dir, SUMMARY_CSV),
        "roc": os.path.join(run_dir, ROC_PNG),
        "confusion": os.path.join(run_dir, CONFUSION_PNG),
    }
    io_utils.atomic_write_text(paths["summary_csv"], summary_csv_text(rows))
    plot_roc(rows, paths["roc"])
    plot_confusion_matrices(rows, paths["confusion"])
    io_utils.atomic_write_text(paths["summary_md"], summary_markdown(rows, run_info))
    return paths
