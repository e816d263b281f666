"""The report's CSV files: summary.csv of either protocol and predictions.csv of a
cross-validated study (every file written atomically)."""

import csv
import io

from thyroid import io_utils
from thyroid.stats import decision, metrics, pooled
from thyroid.study.tables import metric_entry, num, row_figures

SUMMARY_CSV = "summary.csv"
PREDICTIONS_CSV = "predictions.csv"
CSV_COLUMNS = [
    "row_id", "model", "mode", "status", "checkpoint",
    "accuracy", "accuracy_ci_low", "accuracy_ci_high",
    "sensitivity", "sensitivity_ci_low", "sensitivity_ci_high",
    "specificity", "specificity_ci_low", "specificity_ci_high",
    "auc", "auc_ci_low", "auc_ci_high",
    "train_seconds", "note",
]


def _csv_num(value):
    value = num(value)
    return "" if value is None else f"{value:.6g}"


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
            entry = metric_entry(row, name) or {}
            ci = entry.get("ci95") or [None, None]
            out[name] = _csv_num(entry.get("value"))
            out[f"{name}_ci_low"] = _csv_num(ci[0])
            out[f"{name}_ci_high"] = _csv_num(ci[1])
        writer.writerow(out)
    return buf.getvalue()


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
_EXTERNAL_BY_MODEL = ["external_auc_refit", "external_auc_folds", "external_spread_mean_folds"]
_AT_0_5 = [name.replace("_ci", "_at_0_5_ci") if "_ci" in name else f"{name}_at_0_5"
           for name in _RATES_WITH_CI]
# The external images by the shift score (pooled.shift_figures): an AUC is blank where its
# side has too few images of a class, whose counts follow.
_SHIFT = ["unusual_share", "median_shift", "auc_usual", "auc_unusual", "usual_benign",
          "usual_malignant", "unusual_benign", "unusual_malignant"]
_EXTERNAL = [f"external_{name}" for name in _CV_FIGURES + _SHIFT
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


def cv_summary_csv_text(rows, summaries, external=None, external_by_model=None):
    """summary.csv of a cross-validated study.

    ``rows``: ``thyroid.study.results.RowResult`` (row_id, model, mode, status, checkpoint,
    note read by attribute); ``summaries``: {row_id: RowFigures}
    from ``pooled.summarize_predictions``; ``external``: {row_id: RowFigures} from
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
        figures = row_figures(summaries, row) or pooled.RowFigures()
        outside = row_figures(external, row) or pooled.RowFigures()
        out = {name: getattr(row, name) or "" for name in _ROW_TEXT}
        for name in columns[4:]:  # figures by attribute: a column no figure has is an error
            if name in _EXTERNAL_BY_MODEL:
                base, _, model = name[len("external_"):].rpartition("_")
                by_row = (external_by_model or {}).get(model)
                out[name] = _csv_num(getattr(row_figures(by_row, row) or pooled.RowFigures(),
                                             base))
            elif name.startswith("external_"):
                out[name] = _csv_num(getattr(outside, name[len("external_"):]))
            elif name not in _ROW_TEXT:
                out[name] = _csv_num(getattr(figures, name))
        writer.writerow(out)
    return buf.getvalue()
