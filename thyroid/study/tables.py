"""The report's tables: cell text (numbers, intervals, durations, markdown-safe text) and the
markdown tables both protocols' reports share or the cross-validated report lists (pooled
results, the paper's Table 1 beside ours, time by stage)."""

import json
import math

from thyroid.markdown_text import plain as md  # the one escape for user strings (and the card's)
from thyroid.stats import pooled
from thyroid.study import paper
from thyroid.study.rows import DEFAULT_ROW_IDS, STUDY_ROWS


def num(value):
    """A finite float or None."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


def row_figures(summaries, row):
    """The row's ``pooled.RowFigures`` in ``summaries`` ({row id: figures}), or None."""
    return (summaries or {}).get(row.row_id)


def with_ci(figures, name, digits=2):
    """'0.83 [0.71, 0.92]' from the figure ``name`` of a ``pooled.RowFigures`` and its
    ``_ci_low`` / ``_ci_high`` (read by attribute: a name it lacks is an error, not a blank)."""
    value = num(getattr(figures, name))
    if value is None:
        return "—"
    low, high = num(getattr(figures, f"{name}_ci_low")), num(getattr(figures, f"{name}_ci_high"))
    text = f"{value:.{digits}f}"
    return text if low is None or high is None else f"{text} [{low:.{digits}f}, {high:.{digits}f}]"


def plain(figures, name, digits=2):
    value = num(getattr(figures, name))
    return "—" if value is None else f"{value:.{digits}f}"


def method_name(row):
    """The row's label without its number."""
    return md(row.title.split(". ", 1)[-1])


def metric_entry(row, name):
    """A single-split row's ``{value, ci95}`` for metric ``name``, or None."""
    m = row.metrics or {}
    entry = m.get(name)
    return entry if isinstance(entry, dict) else None


def duration(seconds):
    seconds = num(seconds)
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {sec:02d}s" if hours else f"{minutes}m {sec:02d}s"


def short(value, limit=200):
    """A compact one-line rendering of a run_info value."""
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def p_text(value):
    """A p-value as the tables and the findings show it."""
    value = num(value)
    if value is None:
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def paper_cell(value):
    """Table 1's value as printed (two decimals, or three where the paper gives three)."""
    if value is None:
        return paper.NOT_AVAILABLE
    return f"{value:.2f}" if abs(round(value, 2) - value) < 1e-9 else f"{value:.3f}"


PAPER_PROTOCOL_NOTE = (
    f"Paper values: {paper.PAPER_SOURCE}. The paper augmented its images before splitting "
    "them at random, so copies of an image and images of one patient could fall on both "
    "sides of the split (an image-level protocol); its numbers are therefore not comparable "
    "with patient-level results. `--protocol=image` reproduces that protocol here.")


def table_rows(rows):
    """The study rows a paper comparison lists: the default ones and any other this run has."""
    ran = {row.row_id for row in rows}
    return [row for row in STUDY_ROWS if row.id in DEFAULT_ROW_IDS or row.id in ran]


P_VALUE_NOTE = ("p vs best: DeLong's test of each row's pooled out-of-fold AUC against the "
                "row with the highest one, on the same images; not corrected for multiple "
                "comparisons.")


def cv_results_markdown(rows, summaries):
    """The cross-validated results table (markdown lines) with its p-value note."""
    lines = ["| # | Method | Status | AUC | AUC over folds | Threshold | Sensitivity | "
             "Specificity | Accuracy | Brier | Calibration intercept / slope | p vs best |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        figures = row_figures(summaries, row) or pooled.RowFigures()
        fold_mean, fold_sd = num(figures.auc_fold_mean), num(figures.auc_fold_sd)
        over_folds = "—" if fold_mean is None else (
            f"{fold_mean:.2f}" + ("" if fold_sd is None else f" ± {fold_sd:.2f}"))
        best = figures.best_row
        cells = [with_ci(figures, "auc"), over_folds, plain(figures, "threshold"),
                 with_ci(figures, "sensitivity"), with_ci(figures, "specificity"),
                 with_ci(figures, "accuracy"), plain(figures, "brier", 3),
                 f"{plain(figures, 'calibration_intercept')} / "
                 f"{plain(figures, 'calibration_slope')}",
                 "best" if best else p_text(figures.p_vs_best)]
        lines.append(f"| {row.row_id} | {md(row.title.split('. ', 1)[-1])} | "
                     f"{md(row.status)} | " + " | ".join(cells) + " |")
    return lines + ["", P_VALUE_NOTE, ""]


def external_results_markdown(rows, external):
    lines = ["| # | Method | AUC | Threshold | Sensitivity | Specificity | Accuracy | Brier | "
             "Calibration intercept / slope | Images (patients) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        figures = row_figures(external, row)
        if figures is None:
            continue
        cells = [with_ci(figures, "auc"), plain(figures, "threshold"),
                 with_ci(figures, "sensitivity"), with_ci(figures, "specificity"),
                 with_ci(figures, "accuracy"), plain(figures, "brier", 3),
                 f"{plain(figures, 'calibration_intercept')} / "
                 f"{plain(figures, 'calibration_slope')}",
                 f"{figures.images} ({figures.patients})"]
        lines.append(f"| {row.row_id} | {md(row.title.split('. ', 1)[-1])} | "
                     + " | ".join(cells) + " |")
    return lines + [""]


def cv_paper_markdown(rows, summaries):
    """The paper's Table 1 beside our pooled out-of-fold figures at 0.5 (the paper's rule)."""
    header = ["#", "Method", "Ours AUC", "Ours acc @0.5", "Ours sens @0.5", "Ours spec @0.5",
              "Paper acc", "Paper sens", "Paper spec"]
    lines = [PAPER_PROTOCOL_NOTE, "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_key = {(r.model, r.mode): r for r in rows}
    for row_id, model, mode, label in ((r.id, r.model, r.mode, r.label) for r in table_rows(rows)):
        ours = by_key.get((model, mode))
        figures = (row_figures(summaries, ours) if ours else None) or pooled.RowFigures()
        cells = [str(row_id), md(label), plain(figures, "auc")]
        cells += [plain(figures, f"{name}_at_0_5") for name in paper.PAPER_METRICS]
        values = paper.paper_values(model, mode)
        cells += ["not in paper" if values is None else paper_cell(values[name])
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
        lines.append(f"| {md(name)} | {duration(seconds)} | {share} |")
    lines += [f"| all jobs | {duration(jobs)} | |",
              f"| total | {duration(total_seconds)} | |", "", STAGE_NOTE, ""]
    return lines
