"""Study report: summary.md, summary.csv, roc.png and confusion_matrices.png.

``write_report(run_dir, rows, run_info)``; every file is written atomically.
Cross-validated studies use the pieces under "Cross-validation" beside the single-split
table: ``write_predictions_csv``, ``cv_summary_csv_text``, ``plot_pooled_roc`` and
``plot_calibration`` (their figures come from ``thyroid.stats.pooled``).

``rows``: one dict per method, keys
  row_id, model, mode, label, status ('ok' | 'skipped' | 'failed'),
  checkpoint (str or None), note (str or None, e.g. the command that fixes a missing
  checkpoint), train_seconds (float or None), metrics (``thyroid.stats.metrics.evaluate_predictions``
  result or None), labels / probs (optional arrays, for the ROC curve).

``run_info``: dict, all keys optional
  dataset, protocol ('patient' or 'image' or a longer description starting with one of
  them), counts (dict or str), date, machine, total_seconds, threshold, image_level (bool,
  forces the leakage warning), manifest (the ``build_tfrecords`` manifest: its per-split
  counts, leakage check and warning are shown), and any other key, listed compactly.
"""

import csv
import dataclasses
import io
import json
import math
import os

import numpy as np

from thyroid import LABEL_NAMES, io_utils
from thyroid.stats import decision, metrics, pooled
from thyroid.study import clinical_report, html_page, paper, tables
from thyroid.study.figures import save_figure
from thyroid.study.rows import DEFAULT_ROW_IDS, STUDY_ROWS

CSV_COLUMNS = [
    "row_id", "model", "mode", "status", "checkpoint",
    "accuracy", "accuracy_ci_low", "accuracy_ci_high",
    "sensitivity", "sensitivity_ci_low", "sensitivity_ci_high",
    "specificity", "specificity_ci_low", "specificity_ci_high",
    "auc", "auc_ci_low", "auc_ci_high",
    "train_seconds", "note",
]

SUMMARY_MD = "summary.md"
SUMMARY_CSV = "summary.csv"
ROC_PNG = "roc.png"
CONFUSION_PNG = "confusion_matrices.png"

IMAGE_LEVEL_WARNING = (
    "**Warning: image-level protocol.** Images were split without regard to patients, so "
    "images of the same patient (often near-identical frames of the same nodule) can be in "
    "both the training and the test set. This leaks patients across the split and inflates "
    "every number below; use the patient-level protocol for an honest estimate.")

PAPER_PROTOCOL_NOTE = (
    f"Paper values: {paper.PAPER_SOURCE}. The paper augmented its images before splitting "
    "them at random, so copies of an image and images of one patient could fall on both "
    "sides of the split (an image-level protocol); its numbers are therefore not comparable "
    "with patient-level results. `--protocol=image` reproduces that protocol here.")

_RUN_INFO_ORDER = ("dataset", "protocol", "counts", "threshold", "date", "machine",
                   "total_seconds")


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _entry(row, name):
    m = row.metrics or {}
    entry = m.get(name)
    return entry if isinstance(entry, dict) else None


_num = tables.num
_md = tables.md
_with_ci = tables.with_ci
_plain = tables.plain


def _csv_num(value):
    value = _num(value)
    return "" if value is None else f"{value:.6g}"


def _duration(seconds):
    seconds = _num(seconds)
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {sec:02d}s" if hours else f"{minutes}m {sec:02d}s"


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


def _short(value, limit=200):
    """A compact one-line rendering of a run_info value."""
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


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
            f"| {_md(split)} | {info.get('patients', '—')} | {info.get('images', '—')} | "
            f"{original.get('benign', '—')} / {original.get('malignant', '—')} | "
            f"{total.get('benign', '—')} / {total.get('malignant', '—')} |")
    return lines + [""]


def _roc_arrays(row):
    """(labels, probs) usable for a ROC curve, or None."""
    if row.status != "ok":
        return None
    labels, probs = row.labels, row.probs
    if labels is None or probs is None:
        return None
    labels = np.asarray(labels).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    if labels.size == 0 or labels.size != probs.size or len(np.unique(labels)) < 2:
        return None
    return labels, probs


# --------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------

def summary_csv_text(rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        out = {
            "row_id": row.row_id,
            "model": row.model,
            "mode": row.mode,
            "status": row.status,
            "checkpoint": row.checkpoint or "",
            "train_seconds": _csv_num(row.train_seconds),
            "note": row.note or "",
        }
        for name in metrics.METRIC_NAMES:
            entry = _entry(row, name) or {}
            ci = entry.get("ci95") or [None, None]
            out[name] = _csv_num(entry.get("value"))
            out[f"{name}_ci_low"] = _csv_num(ci[0])
            out[f"{name}_ci_high"] = _csv_num(ci[1])
        writer.writerow(out)
    return buf.getvalue()


# --------------------------------------------------------------------------------------
# plots (object-oriented matplotlib on the Agg canvas: no global backend switch)
# --------------------------------------------------------------------------------------

_save_figure = save_figure


def _plot_rows(panels, path, diagonal_label, draw_row, axes):
    """One figure of one or more panels ((rows, title)), each with the diagonal and one line
    per row that has both classes (``draw_row(ax, row, arrays)``); ``axes`` = (xlabel, ylabel,
    legend location). Returns the lines drawn in the first panel."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5 * len(panels), 6.0))
    counts = []
    for index, (rows, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), index + 1)
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label=diagonal_label)
        drawn = 0
        for row in rows:
            arrays = _roc_arrays(row)
            if arrays is not None:
                draw_row(ax, row, arrays)
                drawn += 1
        if not drawn:
            ax.text(0.5, 0.5, "no evaluated rows with both classes", ha="center", va="center")
        xlabel, ylabel, legend_location = axes
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.legend(loc=legend_location, fontsize=7)
        counts.append(drawn)
    _save_figure(fig, path)
    return counts[0]


def plot_roc(rows, path, title="ROC curves (test set, malignant = positive)"):
    def draw(ax, row, arrays):
        fpr, tpr, _ = metrics.roc_points(*arrays)
        auc = metrics.auc_score(*arrays)
        ax.plot(fpr, tpr, linewidth=1.5, label=f"{row.title} (AUC {auc:.3f})")

    return _plot_rows([(rows, title)], path, "chance", draw, (
        "1 - specificity (false positive rate)", "sensitivity (true positive rate)",
        "lower right"))


def plot_confusion_matrices(rows, path):
    from matplotlib.figure import Figure

    evaluated = [r for r in rows if r.status == "ok"
                 and (r.metrics or {}).get("confusion_matrix") is not None]
    n = max(len(evaluated), 1)
    cols = min(n, 4)
    nrows = int(math.ceil(n / cols))
    fig = Figure(figsize=(3.2 * cols, 3.0 * nrows))
    if not evaluated:
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        ax.text(0.5, 0.5, "no evaluated rows", ha="center", va="center")
    for i, row in enumerate(evaluated):
        ax = fig.add_subplot(nrows, cols, i + 1)
        cm = np.asarray(row.metrics["confusion_matrix"], dtype=np.float64)
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(cm.max(), 1))
        for (r, c), value in np.ndenumerate(cm):
            color = "white" if value > cm.max() / 2 else "black"
            ax.text(c, r, f"{int(value)}", ha="center", va="center", color=color)
        ax.set_xticks([0, 1])
        ax.set_yticks([0, 1])
        ax.set_xticklabels(["benign", "malignant"], fontsize=8)
        ax.set_yticklabels(["benign", "malignant"], fontsize=8)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(row.title, fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
    return len(evaluated)


# --------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------

def _paper_cell(value):
    """Table 1's value as printed (two decimals, or three where the paper gives three)."""
    if value is None:
        return paper.NOT_AVAILABLE
    return f"{value:.2f}" if abs(round(value, 2) - value) < 1e-9 else f"{value:.3f}"


def _run_section(run_info):
    """The "Run" table, the leakage warning and the split counts of a single-split study."""
    manifest = run_info.get("manifest") if isinstance(run_info.get("manifest"), dict) else {}
    if "protocol" not in run_info and manifest.get("protocol"):
        run_info = dict(run_info, protocol=manifest["protocol"])
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
            key, value = "total time", _duration(value)
        lines.append(f"| {key} | {_md(value)} |")
    for key, value in run_info.items():
        if key in shown:
            continue
        lines.append(f"| {_md(key)} | {_md(_short(value))} |")
    lines.append("")
    if is_image_level(run_info):
        lines += [IMAGE_LEVEL_WARNING, ""]
        if manifest.get("warning"):
            lines += [f"Dataset manifest: {_md(manifest['warning'])}", ""]
    if isinstance(manifest.get("splits"), dict):
        lines += _split_table(manifest["splits"])
    if isinstance(manifest.get("leakage"), dict):
        leak = ", ".join(f"{_md(k.replace('_', ' '))} {_md(v)}" for k, v in manifest["leakage"].items()
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
        cells = [metrics.format_value(_entry(row, name)) if ok else "—"
                 for name in metrics.METRIC_NAMES]
        lines.append(
            f"| {row.row_id} | {_md(row.label)} | {_md(row.status)} | "
            + " | ".join(cells)
            + f" | {_duration(row.train_seconds)} | {_md(row.checkpoint)} |")
    return lines + [""]


def _not_run_section(rows):
    """Skipped or failed rows with their fix."""
    not_run = [r for r in rows if r.status in ("skipped", "failed")]
    if not not_run:
        return []
    lines = ["## Skipped or failed rows", ""]
    for row in not_run:
        lines.append(f"- **{_md(row.title)}** ({_md(row.status)}): {_md(row.note or '(no note)')}")
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
        cells = [str(study_row.id), _md(study_row.label)]
        for name in paper.PAPER_METRICS:
            entry = _entry(ours, name) if ours and ours.status == "ok" else None
            cells.append("—" if entry is None or entry.get("value") is None
                         else f"{entry['value']:.2f}")
        for dataset in paper.PAPER_DATASETS:
            values = paper.paper_values(study_row.model, study_row.mode, dataset)
            for name in paper.PAPER_METRICS:
                cells.append("not in paper" if values is None else _paper_cell(values[name]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def summary_markdown(rows, run_info):
    """summary.md of a single-split study: run, results, rows not run, the paper, plots."""
    lines = ["# Thyroid ultrasound study: results", ""]
    lines += _run_section(run_info)
    lines += _test_results_section(rows)
    lines += _not_run_section(rows)
    lines += _paper_section(rows)
    lines += ["## Plots", "",
              f"- [ROC curves]({ROC_PNG})",
              f"- [Confusion matrices]({CONFUSION_PNG})", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Cross-validation: predictions.csv, summary.csv, pooled ROC, reliability diagram
# --------------------------------------------------------------------------------------

PREDICTIONS_CSV = "predictions.csv"
CALIBRATION_PNG = "calibration.png"

_RATES_WITH_CI = [f"{name}{suffix}" for name in ("sensitivity", "specificity", "accuracy")
                  for suffix in ("", "_ci_low", "_ci_high")]
_WITH_CI = ("", "_ci_low", "_ci_high")
_RECALIBRATED = ["brier_recalibrated", "calibration_intercept_recalibrated",
                 "calibration_slope_recalibrated"]
_PATIENT_AUC = [f"patient_auc_{how}{suffix}" for how in ("mean", "max") for suffix in _WITH_CI]
_NET_BENEFIT = ([f"net_benefit_at_{decision.threshold_name(t)}{suffix}"
                 for t in decision.TABLE_THRESHOLDS for suffix in _WITH_CI]
                + [f"treat_all_at_{decision.threshold_name(t)}" for t in decision.TABLE_THRESHOLDS])
_CV_FIGURES = (["auc", "auc_ci_low", "auc_ci_high", "auc_fold_mean", "auc_fold_sd",
                "threshold"] + _RATES_WITH_CI
               + ["brier", "calibration_intercept", "calibration_slope"] + _RECALIBRATED
               + _PATIENT_AUC + _NET_BENEFIT)
# The external set scored by each final model (the plain external_ columns are --final_model's).
_EXTERNAL_BY_MODEL = ["external_auc_refit", "external_auc_folds", "external_spread_mean_folds"]
_AT_0_5 = [name.replace("_ci", "_at_0_5_ci") if "_ci" in name else f"{name}_at_0_5"
           for name in _RATES_WITH_CI]
_EXTERNAL = [f"external_{name}" for name in _CV_FIGURES
             if name not in ("auc_fold_mean", "auc_fold_sd", "threshold")]

CV_CSV_COLUMNS = (["row_id", "model", "mode", "status"] + _CV_FIGURES + ["p_vs_best"]
                  + _AT_0_5 + ["images", "patients", "checkpoint", "note"])
_ROW_TEXT = ("row_id", "model", "mode", "status", "checkpoint", "note")


def _prediction_line(record):
    fold = record["fold"]
    if not pooled.is_external(fold):
        fold = int(fold)
    label = int(record["label"])
    if label not in (0, 1):
        raise ValueError(f"prediction for image {record['image']!r}: label {label} is not 0/1")
    spread = record.get("spread")
    return {"row_id": record["row_id"], "repeat": int(record["repeat"]), "fold": fold,
            "image": record["image"], "patient_id": record["patient_id"], "label": label,
            "prob": f"{float(record['prob']):.9g}",
            "risk": f"{float(record.get('risk', record['prob'])):.9g}",
            "spread": "" if spread in (None, "") else f"{float(spread):.9g}",
            "threshold": f"{float(record['threshold']):.9g}"}


def write_predictions_csv(path, records):
    """predictions.csv: one line per row, repeat and image, columns PREDICTION_COLUMNS."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=pooled.PREDICTION_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(_prediction_line(record))
    io_utils.atomic_write_text(path, buf.getvalue())
    return path


def read_predictions_csv(path):
    """The records of a predictions.csv (values as strings, as ``pooled`` accepts them)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != pooled.PREDICTION_COLUMNS:
            raise ValueError(f"{path}: columns {reader.fieldnames} are not "
                             f"{','.join(pooled.PREDICTION_COLUMNS)}")
        return list(reader)


def cv_summary_csv_text(rows, summaries, external=None, external_by_model=None):
    """summary.csv of a cross-validated study.

    ``rows``: dicts with row_id, model, mode, status, note; ``summaries``: {row_id: figures}
    from ``pooled.summarize_predictions``; ``external``: {row_id: figures} from
    ``pooled.summarize_external`` (the final model's) or None (then there are no
    ``external_`` columns); ``external_by_model``: {"refit" | "folds": {row_id: figures}}
    adds ``external_auc_refit`` and ``external_auc_folds``.
    """
    columns = list(CV_CSV_COLUMNS)
    if external is not None:
        extra = _EXTERNAL + (_EXTERNAL_BY_MODEL if external_by_model else [])
        columns[columns.index("images"):columns.index("images")] = extra
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        key = pooled.row_key(row.row_id)
        figures = summaries.get(key) or {}
        outside = (external or {}).get(key) or {}
        out = {name: getattr(row, name) or "" for name in _ROW_TEXT}
        for name in columns[4:]:
            if name in _EXTERNAL_BY_MODEL:
                base, _, model = name[len("external_"):].rpartition("_")
                by_row = (external_by_model or {}).get(model) or {}
                out[name] = _csv_num((by_row.get(key) or {}).get(base))
            elif name.startswith("external_"):
                out[name] = _csv_num(outside.get(name[len("external_"):]))
            elif name not in _ROW_TEXT:
                out[name] = _csv_num(figures.get(name))
        writer.writerow(out)
    return buf.getvalue()


def _pooled_rows(rows, records, score="prob"):
    """Rows with the labels and scores (``prob`` or ``risk``) of every repeat's out-of-fold
    predictions."""
    by_row = {}
    for record in records:
        if not pooled.is_external(record["fold"]):
            entry = by_row.setdefault(str(record["row_id"]), ([], []))
            entry[0].append(int(record["label"]))
            entry[1].append(float(record.get(score, record["prob"])))
    out = []
    for row in rows:
        labels, probs = by_row.get(str(row.row_id), ([], []))
        out.append(dataclasses.replace(row, labels=np.asarray(labels), probs=np.asarray(probs)))
    return out


def plot_pooled_roc(rows, records, path):
    """roc.png from the pooled out-of-fold predictions (all repeats together)."""
    return plot_roc(_pooled_rows(rows, records), path,
                    title="ROC curves (pooled out-of-fold predictions)")


def plot_calibration(rows, records, path, num_bins=10):
    """calibration.png: observed malignant fraction against the mean score in ``num_bins``
    equal-width bins, one line per row, with the diagonal; left the model's own P(malignant),
    right the recalibrated risk. -> rows drawn."""
    def draw(ax, row, arrays):
        predicted, observed, _ = metrics.calibration_bins(*arrays, num_bins=num_bins)
        ax.plot(predicted, observed, marker="o", markersize=3, linewidth=1.2,
                label=row.title)

    panels = [(_pooled_rows(rows, records, "prob"),
               f"Raw P(malignant) ({num_bins} bins, out of fold)"),
              (_pooled_rows(rows, records, "risk"),
               f"Recalibrated risk ({num_bins} bins, out of fold)")]
    return _plot_rows(panels, path, "perfect calibration", draw, (
        "mean predicted in bin", "observed fraction malignant", "upper left"))


P_VALUE_NOTE = ("p vs best: DeLong's test of each row's pooled out-of-fold AUC against the "
                "row with the highest one, on the same images; not corrected for multiple "
                "comparisons.")


def _p_text(value):
    value = _num(value)
    if value is None:
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def cv_results_markdown(rows, summaries):
    """The cross-validated results table (markdown lines) with its p-value note."""
    lines = ["| # | Method | Status | AUC | AUC over folds | Threshold | Sensitivity | "
             "Specificity | Accuracy | Brier | Calibration intercept / slope | p vs best |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        figures = summaries.get(pooled.row_key(row.row_id)) or {}
        fold_mean, fold_sd = _num(figures.get("auc_fold_mean")), _num(figures.get("auc_fold_sd"))
        over_folds = "—" if fold_mean is None else (
            f"{fold_mean:.2f}" + ("" if fold_sd is None else f" ± {fold_sd:.2f}"))
        best = figures.get("best_row")
        cells = [_with_ci(figures, "auc"), over_folds, _plain(figures, "threshold"),
                 _with_ci(figures, "sensitivity"), _with_ci(figures, "specificity"),
                 _with_ci(figures, "accuracy"), _plain(figures, "brier", 3),
                 f"{_plain(figures, 'calibration_intercept')} / "
                 f"{_plain(figures, 'calibration_slope')}",
                 "best" if best else _p_text(figures.get("p_vs_best"))]
        lines.append(f"| {row.row_id} | {_md(row.title.split('. ', 1)[-1])} | "
                     f"{_md(row.status)} | " + " | ".join(cells) + " |")
    return lines + ["", P_VALUE_NOTE, ""]


# --------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# Cross-validated study: summary.md with its study-design section, and every file
# --------------------------------------------------------------------------------------

def _class_counts(assignment):
    """{source: {label name: (images, patients)}} of the images in the folds."""
    counts = {}
    for patient, label in zip(assignment["patient_ids"], assignment["labels"]):
        source = patient.split(":", 1)[0]
        entry = counts.setdefault(source, {}).setdefault(LABEL_NAMES[int(label)],
                                                         [0, set()])
        entry[0] += 1
        entry[1].add(patient)
    return {source: {name: (images, len(patients)) for name, (images, patients) in by.items()}
            for source, by in counts.items()}


def _counts_lines(assignment, title):
    lines = [f"| {title} | benign images (patients) | malignant images (patients) |",
             "|---|---|---|"]
    for source, by_label in sorted(_class_counts(assignment).items()):
        cells = [f"{by_label.get(n, (0, 0))[0]} ({by_label.get(n, (0, 0))[1]})"
                 for n in ("benign", "malignant")]
        lines.append(f"| {_md(source)} | " + " | ".join(cells) + " |")
    return lines + [""]


def _interval(design):
    if design.get("eval_every_n_epochs"):
        return f"{design['eval_every_n_epochs']:g} epochs of the fold's training part"
    return f"{design['eval_every_n_steps']} steps"


def _grouping_lines(design):
    """A bullet for the sources whose images could not be grouped by patient."""
    ungrouped = design.get("ungrouped_sources") or ()
    if not ungrouped:
        return []
    return [f"- **Patient grouping was not possible** for {_md(', '.join(ungrouped))}: the "
            "source gives no patient ids, so each image is its own unit (byte-identical images "
            "joined); images of one patient may sit on both sides of a split, and the figures "
            "may be optimistic. A `patient_id` column (CSV) gives the grouping."]


def _patience(design):
    if not (design.get("eval_every_n_epochs") and design.get("early_stopping_patience")):
        return ""
    epochs = design["eval_every_n_epochs"] * design["early_stopping_patience"]
    return f" after {epochs:g} epochs without a better AUC"


def study_design_markdown(design):
    """The study-design section. ``design``: data (description), assignment (folds.json
    dict), augment_copies, operating_point, eval_every_n_epochs, early_stopping_patience
    (evaluations; older reports: eval_every_n_steps alone), external (description or
    None), external_assignment-like counts (dict with patient_ids/labels, or None)."""
    assignment = design["assignment"]
    lines = ["## Study design", "",
             f"- **Data**: {_md(design['data'])}. Images used (labelled, readable), by source "
             "and class:", ""]
    lines += _counts_lines(assignment, "source")
    lines += [
        "- **Labels**: malignant is the positive class. DDTI: the TIRADS of each case's XML, "
        "1-3 benign, 4a/4b/4c/5 malignant; cases without a TIRADS are excluded. Local set: the "
        "report's diagnosis, impression or conclusion lines first, read with negation, "
        "exclusion, indication, history and uncertainty understood; uncertain or conflicting "
        "reports are excluded (each reason in the manifest), never guessed. Folders and CSV "
        "files: the class folder or the label column.",
        f"- **Unit of splitting**: the patient; patients that share a byte-identical image are "
        f"merged into one unit. {assignment['num_folds']}-fold cross-validation, stratified by "
        f"label over units, {assignment['num_repeats']} repeat(s), seed {assignment['seed']}: "
        "every image is in exactly one test fold per repeat.",
        *_grouping_lines(design),
        f"- **Inside each fold**: {assignment['inner_validation_fraction']:.0%} of the training "
        "units of each class form an inner validation set. Trained rows evaluate its AUC every "
        f"{_interval(design)} and keep the best checkpoint (early stopping{_patience(design)}); "
        f"{design['augment_copies']} augmented copies of each training image are added to the "
        "fold's training part only (validation and test images are never augmented).",
        "- **Class imbalance**: folds are stratified; trained rows weight the loss so that each "
        "class has the same total weight; the SVM rows keep scikit-learn's defaults (no "
        "weighting) as in the paper.",
        f"- **Threshold**: `{_md(design['operating_point'])}`, chosen on each fold's inner "
        "validation predictions only (never on the test fold). Sensitivity, specificity and "
        "accuracy judge each image at its own fold's threshold; `summary.csv` also gives them "
        "at 0.5.",
        *clinical_report.design_lines(design.get("clinical") or clinical_report.ClinicalFacts()),
        f"- **External set**: {_md(design.get('external') or 'none given')}.",
        "- **The paper's protocol differs**: it augmented all images first and then split "
        "images at random, so copies of one image and images of one patient could be on both "
        "sides (image level). `--protocol=image` reproduces that protocol on a single split.",
        ""]
    if design.get("external_assignment"):
        lines += ["External images used (duplicates of development images left out), by "
                  "source and class:", ""]
        lines += _counts_lines(design["external_assignment"], "external source")
    return lines


def external_results_markdown(rows, external):
    lines = ["| # | Method | AUC | Threshold | Sensitivity | Specificity | Accuracy | Brier | "
             "Calibration intercept / slope | Images (patients) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        figures = external.get(pooled.row_key(row.row_id))
        if not figures:
            continue
        cells = [_with_ci(figures, "auc"), _plain(figures, "threshold"),
                 _with_ci(figures, "sensitivity"), _with_ci(figures, "specificity"),
                 _with_ci(figures, "accuracy"), _plain(figures, "brier", 3),
                 f"{_plain(figures, 'calibration_intercept')} / "
                 f"{_plain(figures, 'calibration_slope')}",
                 f"{figures.get('images')} ({figures.get('patients')})"]
        lines.append(f"| {row.row_id} | {_md(row.title.split('. ', 1)[-1])} | "
                     + " | ".join(cells) + " |")
    return lines + [""]


def table_rows(rows):
    """The study rows a paper comparison lists: the default ones and any other this run has."""
    ran = {row.row_id for row in rows}
    return [row for row in STUDY_ROWS if row.id in DEFAULT_ROW_IDS or row.id in ran]


def cv_paper_markdown(rows, summaries):
    """The paper's Table 1 beside our pooled out-of-fold figures at 0.5 (the paper's rule)."""
    header = ["#", "Method", "Ours AUC", "Ours acc @0.5", "Ours sens @0.5", "Ours spec @0.5",
              "Paper acc", "Paper sens", "Paper spec"]
    lines = [PAPER_PROTOCOL_NOTE, "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_key = {(r.model, r.mode): r for r in rows}
    for row_id, model, mode, label in ((r.id, r.model, r.mode, r.label) for r in table_rows(rows)):
        ours = by_key.get((model, mode))
        figures = summaries.get(pooled.row_key(ours.row_id)) if ours else None
        figures = figures or {}
        cells = [str(row_id), _md(label), _plain(figures, "auc")]
        cells += [_plain(figures, f"{name}_at_0_5") for name in paper.PAPER_METRICS]
        values = paper.paper_values(model, mode)
        cells += ["not in paper" if values is None else _paper_cell(values[name])
                  for name in paper.PAPER_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


STAGE_NOTE = ("A stage's time is the sum of its jobs' own times and its share is of all jobs' "
              "time; total is the study's wall time, shorter than the jobs' sum when an "
              "executor runs jobs side by side.")


def stage_times_markdown(stages, total_seconds):
    """The "Time by stage" table: [(stage, seconds), ...], their share of all jobs' time, the
    jobs' sum and the study's wall time."""
    lines = ["## Time by stage", "", "| Stage | Time | Share |", "|---|---|---|"]
    jobs = sum(seconds for _, seconds in stages)
    for name, seconds in stages:
        share = f"{100.0 * seconds / jobs:.0f} %" if jobs > 0 else "—"
        lines.append(f"| {_md(name)} | {_duration(seconds)} | {share} |")
    lines += [f"| all jobs | {_duration(jobs)} | |",
              f"| total | {_duration(total_seconds)} | |", "", STAGE_NOTE, ""]
    return lines


def _run_table(run_info):
    lines = ["## Run", "", "| | |", "|---|---|"]
    for key, value in run_info.items():
        if key == "stages":
            continue
        if key == "total_seconds":
            key, value = "total time", _duration(value)
        lines.append(f"| {_md(key)} | {_md(_short(value))} |")
    lines.append("")
    if run_info.get("stages"):
        lines += stage_times_markdown(run_info["stages"], run_info.get("total_seconds"))
    return lines


RESULTS_NOTE = (
    "AUC: pooled over every fold's test predictions, 95% interval from a bootstrap over "
    "patients; AUC over folds: mean ± SD. Threshold: mean of the fold thresholds. Rates at each "
    "fold's own threshold with bootstrap intervals. Calibration: logistic recalibration on "
    "logit P(malignant) (ideal 0 / 1) of the model's own score. The SVM rows give a logistic "
    "of the decision value, a ranking score rather than a calibrated probability.")
CALIBRATION_NOTE = (
    "The same pooled out-of-fold predictions before (raw score) and after each fold's "
    "recalibration map (risk, `predictions.csv`). Ideal: intercept 0, slope 1; a slope below 1 "
    "means too extreme scores, above 1 too timid. The maps saw inner-validation data only, so "
    "the recalibrated figures are an honest estimate, not a fit to these images.")
DECISION_NOTE = (
    "Net benefit of acting (e.g. biopsy) on the images whose recalibrated risk is at least the "
    "threshold probability t: TP/n − FP/n × t/(1 − t), in true positives per image, against "
    "treating every image and none; 95% intervals from a bootstrap over patients, pooled out of "
    "fold (mean over repeats). A model is worth using at t only where it beats both.")


def _clinical_sections(rows, summaries, clinical):
    lines = ["### Patient-level AUC", "",
             "Each patient scored by the mean or the max of their images' scores; a patient is "
             "malignant when any image is. Intervals: bootstrap over patients.", ""]
    lines += clinical_report.patient_markdown(rows, summaries)
    lines += ["### Calibration: raw score and recalibrated risk", "", CALIBRATION_NOTE, ""]
    lines += clinical_report.calibration_markdown(rows, summaries, clinical.refit_maps)
    lines += ["## Decision curves", "", DECISION_NOTE, ""]
    if clinical.tirads_labels:
        lines += [clinical_report.TIRADS_NOTE, ""]
    lines += clinical_report.decision_markdown(rows, summaries)
    lines += clinical_report.best_strategy_lines(rows, summaries)
    return lines


def _external_sections(rows, external, clinical):
    lines = ["## External validation", "",
             "Each row scored by its refit and by its fold ensemble; `(final)` marks "
             f"`--final_model={clinical.final_model}`, whose figures are the `external_` "
             "columns of `summary.csv`.", ""]
    by_model = clinical.external_by_model or {clinical.final_model: external}
    lines += clinical_report.external_markdown(rows, by_model, clinical.final_model)
    lines += [f"Net benefit on the external set ({clinical_report.MODEL_NAMES[clinical.final_model]}):",
              ""]
    lines += clinical_report.decision_markdown(rows, external)
    return lines


def cv_summary_markdown(rows, summaries, external, run_info, design, clinical=None, extra=()):
    clinical = clinical or design.get("clinical") or clinical_report.ClinicalFacts()
    lines = ["# Thyroid ultrasound study: cross-validated results", ""]
    lines += study_design_markdown(dict(design, clinical=clinical))
    lines += _run_table(run_info)
    lines += ["## Results (pooled out-of-fold predictions)", "", RESULTS_NOTE, ""]
    lines += cv_results_markdown(rows, summaries)
    lines += _clinical_sections(rows, summaries, clinical)
    lines += ["Weights each row started from:", ""]
    lines += [f"- {_md(r.title)}: {_md(r.checkpoint)}" for r in rows
              if r.checkpoint]
    lines.append("")
    lines += list(extra)  # sections of optional rows (localisation)
    if external:
        lines += _external_sections(rows, external, clinical)
    not_run = [r for r in rows if r.status in ("skipped", "failed")]
    if not_run:
        lines += ["## Skipped or failed rows", ""]
        lines += [f"- **{_md(r.title)}** ({_md(r.status)}): {_md(r.note or '')}"
                  for r in not_run]
        lines.append("")
    lines += ["## Comparison with the paper's Table 1", "",
              f"Paper: {paper.PAPER_AUTHORS}, \"{paper.PAPER_TITLE}\" ({paper.PAPER_URL}).", ""]
    lines += cv_paper_markdown(rows, summaries)
    lines += ["## Plots", "", f"![ROC curves, pooled out of fold]({ROC_PNG})", "",
              f"![Reliability diagrams, raw and recalibrated]({CALIBRATION_PNG})", "",
              f"![Decision curves]({clinical_report.DECISION_PNG})", "",
              "## Files", "",
              f"- [Every prediction]({PREDICTIONS_CSV}), [summary table]({SUMMARY_CSV}), "
              f"[this page as HTML]({SUMMARY_HTML})", ""]
    return "\n".join(lines)


SUMMARY_HTML = "summary.html"


def write_cv_report(run_dir, rows, records, summaries, external, run_info, design,
                    clinical=None, extra=()):
    """predictions.csv, summary.csv, summary.md, summary.html, roc.png, calibration.png and
    decision_curve.png in run_dir; ``extra``: sections of optional rows (localisation,
    robustness)."""
    clinical = clinical or clinical_report.ClinicalFacts()
    os.makedirs(run_dir, exist_ok=True)
    paths = {name: os.path.join(run_dir, file) for name, file in (
        ("predictions", PREDICTIONS_CSV), ("summary_csv", SUMMARY_CSV),
        ("summary_md", SUMMARY_MD), ("roc", ROC_PNG), ("calibration", CALIBRATION_PNG),
        ("decision", clinical_report.DECISION_PNG), ("summary_html", SUMMARY_HTML))}
    write_predictions_csv(paths["predictions"], records)
    io_utils.atomic_write_text(paths["summary_csv"], cv_summary_csv_text(
        rows, summaries, external, clinical.external_by_model or None))
    plot_pooled_roc(rows, records, paths["roc"])
    plot_calibration(rows, records, paths["calibration"])
    panels = [("Pooled out-of-fold predictions", summaries)]
    if external:
        panels.append((f"External set ({clinical_report.MODEL_NAMES[clinical.final_model]})",
                       external))
    clinical_report.plot_decision_curves(rows, panels, paths["decision"])
    markdown = cv_summary_markdown(rows, summaries, external, run_info, design, clinical,
                                   extra)
    io_utils.atomic_write_text(paths["summary_md"], markdown)
    io_utils.atomic_write_text(paths["summary_html"], html_page.markdown_page(
        markdown, run_dir, "Thyroid ultrasound study"))
    return paths
