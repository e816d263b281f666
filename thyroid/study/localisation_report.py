"""The report's "Localisation" section (rows 12 and 13): the segmentation's Dice / IoU /
centre-in-box against the prior mask, rows 11-13 side by side with DeLong's p against row 11,
and each member's AUC; all from the fit jobs' payloads and records."""

import numpy as np

from thyroid.study.rows import LOCALISATION_MODES
from thyroid.study.tables import num
from thyroid.training import localise

REFERENCE_ROW = 11  # the same scan-field features without localisation

def _interval(values, digits=2):
    mean, low, high = values
    if mean is None or np.isnan(mean):
        return "—"
    if np.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"

def segmentation_lines(evaluation, num_samples, seed):
    """The segmentation table of every fold's test images (markdown lines)."""
    summary = localise.summarize(evaluation, num_samples, seed)
    lines = [f"Segmentation (row 12's network): each fold's model on the outlined images of its "
             f"test units, {summary['images']} images of {summary['units']} units "
             f"({summary['unlabelled']} unlabelled); intervals from a bootstrap over units. "
             f"The prior mask is the mean training mask, the trivial reference.", "",
             "| Mask | Dice | IoU | Predicted box holds the nodule's centre |", "|---|---|---|---|"]
    for name, prefix in (("segmentation network", ""), ("prior mask", "prior_")):
        lines.append(f"| {name} | " + " | ".join(
            _interval(summary[prefix + figure]) for figure in ("dice", "iou", "centre_hit"))
            + " |")
    return lines + ["", f"Nothing found on {summary['empty']} of {summary['images']} test "
                        "images (their nodule view falls back to the scan field).", ""]

def comparison_lines(rows, summaries, records):
    """Rows 11-13 side by side, with DeLong's p against row 11 (markdown lines)."""
    from thyroid.stats import pooled
    lines = ["| # | Method | AUC | AUC per repeat | p vs row 11 (DeLong) |", "|---|---|---|---|---|"]
    for row in rows:
        if row.row_id != REFERENCE_ROW and row.mode not in LOCALISATION_MODES:
            continue
        figures = summaries.get(row.row_id) or pooled.RowFigures()
        auc = (figures.auc, figures.auc_ci_low, figures.auc_ci_high)
        test = None if row.row_id == REFERENCE_ROW else \
            pooled.delong_between(records, row.row_id, REFERENCE_ROW)
        p = "reference" if row.row_id == REFERENCE_ROW else (
            "—" if not test else f"{test['p_value']:.3f}")
        repeats = ", ".join("—" if num(a) is None else f"{a:.2f}"
                            for a in figures.auc_by_repeat or [])
        lines.append(f"| {row.row_id} | {row.label} | "
                     f"{_interval(tuple(np.nan if v is None else v for v in auc))} | "
                     f"{repeats or '—'} | {p} |")
    return lines + ["", "DeLong's test is on each image's probability averaged over the repeats; "
                        "compare the repeats too. Row 13 needs the expert's outline, which a new "
                        "image does not have: an upper bound, not a deployable method.", ""]

def member_lines(rows, fit_payloads, fit_records):
    """Pooled out-of-fold AUC of each member of rows 12 and 13 (markdown lines)."""
    from thyroid.stats.metrics import auc_score
    lines = ["Each member alone (pooled out-of-fold AUC; the row averages the three):", "",
             "| # | " + " | ".join(localise.MEMBERS) + " |", "|---|" + "---|" * len(localise.MEMBERS)]
    for row in rows:
        if row.mode not in LOCALISATION_MODES:
            continue
        labels, scores = [], {name: [] for name in localise.MEMBERS}
        for payload, records in zip(fit_payloads, fit_records):
            members = payload.localisation and payload.localisation.member_test_probabilities
            if not records or records[0]["row_id"] != row.row_id or not members:
                continue
            labels += [record["label"] for record in records]
            for name in localise.MEMBERS:
                scores[name] += members[name]
        if labels:
            lines.append(f"| {row.row_id} | " + " | ".join(
                f"{auc_score(np.asarray(labels), np.asarray(scores[name])):.2f}"
                for name in localise.MEMBERS) + " |")
    return lines + [""] if len(lines) > 4 else []

def report_lines(rows, summaries, records, fit_payloads, num_samples, seed, fit_records=()):
    """The "Localisation" section of summary.md, or [] when no localisation row ran."""
    ran = [row for row in rows if row.mode in LOCALISATION_MODES]
    if not ran:
        return []
    lines = ["## Localisation (rows 12 and 13)", ""]
    evaluation = [record for payload in fit_payloads if payload.localisation
                  for record in payload.localisation.segmentation or ()]
    if evaluation:
        lines += segmentation_lines(evaluation, num_samples, seed)
    lines += comparison_lines(rows, summaries, records)
    return lines + (member_lines(rows, fit_payloads, fit_records) if fit_records else [])
