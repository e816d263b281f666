"""The cross-validated report's answer first: the findings that open summary.md and
summary.html, the one list of the rows that did not run (each reason with the step that makes
the row run), and the timing table's stages less theirs.

Every figure is read from the pooled job's summaries (``summaries``: out of fold; ``external``:
the final model's on the external set), the very values ``report_csv`` writes summary.csv
from, and formatted by ``tables`` as the tables format them.
"""

from thyroid.datasets import label_meaning
from thyroid.stats.pooled import RowFigures
from thyroid.study.clinical_report import MODEL_NAMES, best_strategies
from thyroid.study.html_page import section_id
from thyroid.study.kinds import ROW_STAGE_PARTS, row_stage
from thyroid.study.plan import resume_command
from thyroid.study.results import OK, SKIPPED
from thyroid.study.tables import md, method_name, num, p_text, plain, row_figures, with_ci

FINDINGS_HEADING = "Findings"
NOT_RUN_HEADING = "Rows that did not run"
# DeLong's p at or above this: the row cannot be told apart from the best one.
ALPHA = 0.05
# A calibration slope this close to 1 reads as near ideal.
SLOPE_TOLERANCE = 0.1


def _figures(summaries, row):
    """The row's ``pooled.RowFigures``, empty ones where it has none."""
    return row_figures(summaries, row) or RowFigures()


def ran(rows):
    """The rows that ran to the end (the others are listed once, under NOT_RUN_HEADING)."""
    return [row for row in rows if row.status == OK]


def not_run(rows):
    return [row for row in rows if row.status != OK]


def _ranked(rows, summaries):
    """[(row, figures)] of the rows with a pooled AUC, highest first."""
    scored = [(row, _figures(summaries, row)) for row in ran(rows)]
    scored = [(row, f) for row, f in scored if num(f.auc) is not None]
    return sorted(scored, key=lambda pair: -num(pair[1].auc))


def _row_text(row):
    return f"row {row.row_id} ({method_name(row)})"


def _best_line(row, f):
    return (f"- **Best pooled AUC**: {_row_text(row)}, {with_ci(f, 'auc')} (95% interval, "
            f"bootstrap over patients; out-of-fold predictions of {f.images} images, "
            f"{f.patients} patients).")


def _p_phrase(f):
    text = p_text(f.p_vs_best)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _compared_line(best, best_figures, ranked):
    """Which rows DeLong's test cannot tell apart from the best, and which are lower."""
    others = [(row, f) for row, f in ranked
              if row is not best and num(f.p_vs_best) is not None]
    if not others:
        return None
    groups = {"same": [], "lower": [], "higher": []}
    for row, f in others:
        # A reference row (never ranked best: the expert-outline bound) may score higher.
        group = ("same" if num(f.p_vs_best) >= ALPHA
                 else "higher" if num(f.auc) > num(best_figures.auc) else "lower")
        groups[group].append(f"row {row.row_id} {plain(f, 'auc')} ({_p_phrase(f)})")
    titles = {"same": f"cannot be told apart from it (p ≥ {ALPHA:g})",
              "lower": f"lower (p < {ALPHA:g})",
              "higher": f"higher, a reference never ranked best (p < {ALPHA:g})"}
    parts = [f"{titles[name]}: {', '.join(found)}" for name, found in groups.items() if found]
    return (f"- **Compared with row {best.row_id}** (pooled AUC, DeLong's p not corrected for "
            "multiple comparisons): " + "; ".join(parts) + ".")


def _external_line(best, rows, external, clinical):
    if not external:
        if clinical.external_name:
            return ("- **External set**: not scored (see the External set line of the study "
                    "design).")
        return "- **External set**: none given; every figure here is out of fold."
    model = MODEL_NAMES[clinical.final_model]
    scored = [(row, _figures(external, row)) for row in ran(rows)]
    scored = sorted([(row, f) for row, f in scored if num(f.auc) is not None],
                    key=lambda pair: -num(pair[1].auc))
    if not scored:
        return f"- **External set** ({model}): no row scored it."
    mine = _figures(external, best)
    text = f"- **External set** ({model}): row {best.row_id} {with_ci(mine, 'auc')}"
    top, top_figures = scored[0]
    if top is not best:
        text += f"; highest there: row {top.row_id} {with_ci(top_figures, 'auc')}"
    return text + "."


def _decision_line(rows, summaries):
    """Which strategy has the highest net benefit at each threshold of the table."""
    winners = {}
    for threshold, strategy, _ in best_strategies(ran(rows), summaries):
        winners.setdefault(strategy, []).append(f"{threshold:.2f}")
    if not winners:
        return None
    parts = [f"{strategy} at t = {', '.join(thresholds)}"
             for strategy, thresholds in winners.items()]
    return ("- **Decision curves** (highest net benefit of acting on the recalibrated risk; a "
            "row must beat treating all and treating none): " + "; ".join(parts) + ".")


def _slope_phrase(slope):
    slope = num(slope)
    if slope is None:
        return "not estimable"
    if abs(slope - 1.0) <= SLOPE_TOLERANCE:
        return "near the ideal 1"
    return "below 1: risks too extreme" if slope < 1 else "above 1: risks too timid"


def _calibration_line(row, f, clinical):
    if clinical.recalibrate == "none":
        return (f"- **Calibration** of row {row.row_id}'s score (no recalibration): intercept "
                f"{plain(f, 'calibration_intercept')}, slope {plain(f, 'calibration_slope')} "
                f"({_slope_phrase(f.calibration_slope)}; ideal 0 and 1).")
    return (f"- **Calibration** of row {row.row_id}'s recalibrated risk: intercept "
            f"{plain(f, 'calibration_intercept_recalibrated')}, slope "
            f"{plain(f, 'calibration_slope_recalibrated')} "
            f"({_slope_phrase(f.calibration_slope_recalibrated)}; ideal 0 and 1); raw "
            f"score {plain(f, 'calibration_intercept')} / {plain(f, 'calibration_slope')}.")


def label_line(clinical):
    """What label 1 stands for, in the words the export and the web app use."""
    meaning = label_meaning.TIRADS if clinical.tirads_labels else label_meaning.MALIGNANCY
    return f"- **What the label means**: the {meaning.answer}. {meaning.detail}"


def _not_run_line(rows):
    missing = not_run(rows)
    if not missing:
        return None
    ids = ", ".join(str(row.row_id) for row in missing)
    several = len(missing) > 1
    return (f"- **Did not run**: row{'s' if several else ''} {ids}; why, and the step that "
            f"runs {'them' if several else 'it'}: "
            f"[{NOT_RUN_HEADING}](#{section_id(NOT_RUN_HEADING)}).")


def findings_markdown(rows, summaries, external, clinical):
    """The findings section: the best row by pooled AUC with its interval, the rows DeLong's
    test cannot tell apart from it, the external AUCs, the decision curves' verdict, the
    calibration, what the label means and which rows did not run."""
    lines = [f"## {FINDINGS_HEADING}", ""]
    ranked = _ranked(rows, summaries)
    if not ranked:
        lines.append("- **No row has pooled out-of-fold figures.**")
        return lines + [line for line in (label_line(clinical), _not_run_line(rows)) if line] \
            + [""]
    best, best_figures = next(((row, f) for row, f in ranked if f.best_row), ranked[0])
    bullets = [_best_line(best, best_figures), _compared_line(best, best_figures, ranked),
               _external_line(best, rows, external, clinical), _decision_line(rows, summaries),
               _calibration_line(best, best_figures, clinical), label_line(clinical),
               _not_run_line(rows)]
    return lines + [bullet for bullet in bullets if bullet] + [""]


def _fix(row, run_dir):
    """The step after the reason's own fix: resuming the run reruns the row's jobs and the
    summaries that left it out."""
    resume = resume_command(run_dir) if run_dir else (
        "python -m thyroid.study <the same flags> --resume")
    if row.status == SKIPPED:
        return f"then resume the run: {md(resume)}"
    return ("the reason is in the study's log and in the row's fit results under jobs; once "
            f"it is fixed, resume the run: {md(resume)}")


def not_run_markdown(rows, run_dir=None):
    """The rows that did not run, once: rows sharing a reason are listed together, with the
    reason (the job's note: for a missing checkpoint, which one, where it goes and the command
    that puts it there) and the step that then makes them run."""
    missing = not_run(rows)
    if not missing:
        return []
    groups = {}
    for row in missing:
        groups.setdefault((row.status, row.note or ""), []).append(row)
    lines = [f"## {NOT_RUN_HEADING}", "",
             "Left out of the results, clinical and timing tables; the comparison with the "
             "paper keeps a line for each.", ""]
    for (status, note), group in groups.items():
        names = ", ".join(f"**{md(row.title)}**" for row in group)
        lines.append(f"- {names} ({md(status)}): {md(note or 'no reason recorded')}; "
                     f"{_fix(group[0], run_dir)}.")
    return lines + [""]


def ran_stages(stages, rows):
    """(the stages of the timing table, the seconds of those left out): the stages of rows
    that did not run are left out."""
    dropped = {row_stage(row.row_id, part) for row in not_run(rows) for part in ROW_STAGE_PARTS}
    kept = [(name, seconds) for name, seconds in stages if name not in dropped]
    return kept, sum(seconds for name, seconds in stages if name in dropped)
