"""The report's section on the compared variants (``--augment=ultrasound``, ``--tta``): each
row beside its variant on the same images (pooled out-of-fold AUC with its interval, the
difference, DeLong's p, and the external set's), the jobs' CPU time, and whether the variant
passes the bar for becoming a default: the best row's AUC up by at least ``MIN_GAIN`` at no
more than ``MAX_EXTRA_TIME`` more time for the study's cross-validated predictions."""

import dataclasses

from thyroid.study.compared_kinds import (AUGMENTED, TTA, augmented_rows, trains_on_copies,
                                          tta_rows)
from thyroid.study.jobspec import job_id
from thyroid.study.rows import is_localisation
from thyroid.study.tables import duration, md, method_name, num, p_text, with_ci

HEADING = "Training and test-time augmentation compared"
MIN_GAIN, MAX_EXTRA_TIME = 0.01, 0.10
# The jobs that turn the images into the cross-validated predictions; what a default study
# would run either way (the data, checkpoints, report and external jobs) is left out.
PLAIN_KINDS = ("shards", "features", "fit")
VARIANT_NAMES = {AUGMENTED: "ultrasound augmentation", TTA: "test-time augmentation"}
NOTE = (
    "Each row beside a variant of itself on the same images and folds: the pooled out-of-fold "
    "AUC with its patient-bootstrap 95% interval, the difference, and DeLong's test between "
    "the two (not corrected for multiple comparisons). Ultrasound augmentation: the same "
    "images built again with copies that also change gain and gamma, add speckle, blur or a "
    "lower resolution, another depth and calipers or text, used in training parts only, and "
    "the row fitted again. Test-time augmentation (TTA): each fold's own model scores the "
    "image, its mirror and both at a 0.85 centre zoom; the mean is the score, and its "
    "threshold and recalibration map are chosen again on the inner validation's TTA scores. "
    "CPU time (row, variant): the CPU seconds of the jobs that turn the images into the row's "
    "cross-validated predictions (the development set's build, the row's frozen features and "
    "fits; the wall seconds where a job has no CPU time), without and with the variant as the "
    "default: the ultrasound shards and fits instead, or the views' build and scoring on top. "
    "The study's time below is the same over every row. Other work on the machine slows "
    "every job, so compare times within one run.")


@dataclasses.dataclass(frozen=True)
class Times:
    """CPU seconds of a study's cross-validated predictions: ``plain`` without the variant,
    ``variant`` with it as the default; per row the same."""
    plain: float
    variant: float
    rows: dict  # {row id: (plain, variant)}

    @property
    def extra(self):
        return self.variant / self.plain - 1 if self.plain > 0 else None


def _seconds(results, ids):
    found = [results.get(one) for one in ids]
    return sum((r.cpu_seconds if r.cpu_seconds is not None else r.seconds)
               for r in found if r is not None)


def variant_times(plan, results, name):
    """The ``Times`` of variant ``name``: ultrasound shards and fits in place of the standard
    ones; test-time views and scoring on top of the plain predictions."""
    jobs = [job for job in plan.jobs if job.kind in PLAIN_KINDS]
    swapped = {AUGMENTED: {"shards": "aug_shards", "features": "aug_features",
                           "fit": "aug_fit"}}.get(name, {})
    compared = {row.id for row in (augmented_rows(plan.study) if name == AUGMENTED
                                   else tta_rows(plan.study))}

    def variant_ids(job):
        if job.kind in swapped and (job.row_id in compared or job.row_id is None):
            return [job_id(swapped[job.kind], job.row_id, job.repeat, job.fold)]
        return [job.id]
    added = [job_id("tta_views")] if name == TTA else []
    rows = {}
    for row_id in compared:
        own = [job for job in jobs if job.row_id in (row_id, None)]
        extra = [job_id("tta", row_id)] if name == TTA else []
        rows[row_id] = (_seconds(results, [job.id for job in own]),
                        _seconds(results, [i for job in own for i in variant_ids(job)]
                                 + added + extra))
    every = [i for job in jobs for i in variant_ids(job)]
    extra = [job_id("tta", row_id) for row_id in compared] if name == TTA else []
    return Times(_seconds(results, [job.id for job in jobs]),
                 _seconds(results, every + added + extra), rows)


def _difference(plain, variant):
    a, b = num(getattr(plain, "auc", None)), num(getattr(variant, "auc", None))
    return None if a is None or b is None else b - a


def _signed(value):
    return "—" if value is None else f"{value:+.3f}"


def _why_not(row, name):
    if name == AUGMENTED and not trains_on_copies(row.row):
        return "not compared: the row leaves the augmented copies out"
    if name == TTA and is_localisation(row.row):
        return ("not measured: the nodule view comes from the outline set of the images "
                "as they are; no cheap view of it")
    return "no predictions"


def _table(rows, name, summaries, variant, times, external):
    label = VARIANT_NAMES[name]
    header = ["#", "Method", "AUC", f"AUC, {label}", "Difference", "DeLong p",
              "CPU time (row, variant)"]
    if external is not None:
        header += ["External AUC", f"External AUC, {label}", "External p"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in (r for r in rows if r.status == "ok"):
        plain, other = summaries.get(row.row_id), variant.out_of_fold.get(row.row_id)
        if other is None:
            lines.append(f"| {row.row_id} | {method_name(row)} | "
                         f"{with_ci(plain, 'auc') if plain else '—'} | "
                         f"{_why_not(row, name)} |" + " |" * (len(header) - 4))
            continue
        row_times = times.rows.get(row.row_id, (None, None))
        cells = [with_ci(plain, "auc") if plain else "—", with_ci(other, "auc"),
                 _signed(_difference(plain, other)),
                 p_text(variant.p_vs_plain.get(row.row_id)),
                 f"{duration(row_times[0])}, {duration(row_times[1])}"]
        if external is not None:
            mine = (variant.external or {}).get(row.row_id)
            theirs = external.get(row.row_id)
            cells += [with_ci(theirs, "auc") if theirs else "—",
                      with_ci(mine, "auc") if mine else "—",
                      p_text((variant.external_p_vs_plain or {}).get(row.row_id))]
        lines.append(f"| {row.row_id} | {method_name(row)} | " + " | ".join(cells) + " |")
    return lines + [""]


def best_row(summaries):
    """The row id with the highest pooled AUC among the ranked rows, or None."""
    best = [row_id for row_id, figures in summaries.items() if figures.best_row]
    return best[0] if best else None


def verdict(name, summaries, variant, times):
    """One line: the best row's AUC under the variant, the study's extra time, and whether
    that passes the bar for a default."""
    label = VARIANT_NAMES[name]
    best = best_row(summaries)
    if best is None:
        return f"- **{label}**: no row has a pooled AUC; nothing to judge."
    gain = _difference(summaries[best], variant.out_of_fold.get(best))
    extra = times.extra
    time_text = "—" if extra is None else f"{100 * extra:+.0f} %"
    if gain is None:
        return (f"- **{label}**: the best row ({best}) has no {label} figures, so this run "
                "cannot say whether it should become a default.")
    passes = gain >= MIN_GAIN and extra is not None and extra <= MAX_EXTRA_TIME
    return (f"- **{label}**: best row {best}, AUC {with_ci(summaries[best], 'auc')} -> "
            f"{with_ci(variant.out_of_fold[best], 'auc')} ({gain:+.3f}, DeLong p "
            f"{p_text(variant.p_vs_plain.get(best))}); the study's cross-validated predictions "
            f"{duration(times.plain)} -> {duration(times.variant)} CPU ({time_text}). "
            + ("**Passes** the bar for a default" if passes else "Does **not** pass the bar "
               "for a default")
            + f" (AUC up by at least {MIN_GAIN:g} at no more than {100 * MAX_EXTRA_TIME:.0f} % "
            "more time).")


def report_lines(plan, results, rows, summaries, external, comparison):
    """The section (markdown lines), empty when nothing was compared; ``comparison``: the
    comparison job's ``ComparisonPayload`` (None when it did not end ok)."""
    names = ([AUGMENTED] if augmented_rows(plan.study) else []) + \
        ([TTA] if tta_rows(plan.study) else [])
    if not names:
        return []
    lines = [f"## {HEADING}", "", NOTE, ""]
    if comparison is None:
        note = results.get(job_id("comparison"))
        return lines + [f"The comparison did not finish: "
                        f"{md(note.note if note else 'not run')}.", ""]
    verdicts = []
    for name in names:
        variant = comparison.variants.get(name)
        if variant is None:
            continue
        times = variant_times(plan, results, name)
        lines += [f"### {VARIANT_NAMES[name].capitalize()}", ""]
        lines += _table(rows, name, summaries, variant, times, external)
        verdicts.append(verdict(name, summaries, variant, times))
    return lines + verdicts + [""]
