"""The report's "Progressive transfer" section (``--init_from``): each row that starts from a
previous run's exported model beside the row it is compared with (row 14 beside row 10), both
cross-validated on the same folds, with DeLong's test between them on the pooled out-of-fold
predictions, and what the starting model was."""

import math

from thyroid.stats import pooled
from thyroid.study.rows import starts_from_previous_run
from thyroid.study.tables import md


def _auc(figures):
    if figures is None or figures.auc is None or math.isnan(figures.auc):
        return "—"
    if math.isnan(figures.auc_ci_low):
        return f"{figures.auc:.3f}"
    return f"{figures.auc:.3f} [{figures.auc_ci_low:.3f}, {figures.auc_ci_high:.3f}]"


def report_lines(rows, summaries, records, init_from, checked=None):
    """Markdown lines of the section, or [] when no row started from a previous run.
    ``checked``: how many of this study's images were checked against that run's."""
    progressive = [row for row in rows if starts_from_previous_run(row.row)]
    if not progressive:
        return []
    by_id = {row.row_id: row for row in rows}
    lines = ["## Progressive transfer", "",
             f"Row 14 is row 10 started from the model a previous run exported "
             f"({md(init_from or 'not recorded')}) instead of ImageNet: every weight, the head "
             "included, then fine-tuned as row 10 is, on the same folds. DeLong's test compares "
             "the pooled out-of-fold predictions of the two rows on the same images.", ""]
    if checked is not None:
        lines += [f"None of this study's {checked} images is byte-identical to an image the "
                  "previous run was developed on (the study refuses such a run: its folds "
                  "would leak). Near-duplicates (the same scan re-encoded) are not checked.",
                  ""]
    lines += ["| # | Method | AUC (95 % CI) | AUC per repeat | p vs the compared row (DeLong) |",
              "|---|---|---|---|---|"]
    for row in progressive:
        compared = by_id.get(row.row.compared_with)
        for shown in ([compared] if compared else []) + [row]:
            figures = summaries.get(shown.row_id)
            test = None if shown is compared or compared is None else \
                pooled.delong_between(records, shown.row_id, compared.row_id)
            p = "reference" if shown is compared else ("—" if not test else
                                                       f"{test['p_value']:.3f}")
            repeats = ", ".join(f"{a:.3f}" for a in (figures.auc_by_repeat or [])) \
                if figures else ""
            lines.append(f"| {shown.row_id} | {md(shown.label)} | {_auc(figures)} | "
                         f"{repeats or '—'} | {p} |")
        lines.append("")
        if row.checkpoint:
            lines += [f"Row {row.row_id} started from: {md(row.checkpoint)}", ""]
    return lines
