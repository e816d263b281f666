"""Report of a cross-validated study: predictions.csv, summary.csv, summary.md (with its
study-design section), summary.html, roc.png, calibration.png and decision_curve.png, each
written atomically. Every figure comes from ``thyroid.stats.pooled`` (the pooled job's
summaries) and the jobs' prediction records; ``rows`` are ``thyroid.study.results.RowResult``.
"""

import dataclasses
import os

from thyroid import LABEL_NAMES, io_utils
from thyroid.study import clinical_report, findings, html_page, paper
from thyroid.study.figures import CALIBRATION_PNG, ROC_PNG, plot_calibration, plot_pooled_roc
from thyroid.study.html_page import SUMMARY_HTML, SUMMARY_MD
from thyroid.study.report_csv import (PREDICTIONS_CSV, SUMMARY_CSV, cv_summary_csv_text,
                                      write_predictions_csv)
from thyroid.study.tables import (cv_paper_markdown, cv_results_markdown, duration, md, short,
                                  stage_times_markdown)


@dataclasses.dataclass(frozen=True)
class StudyDesign:
    """What the study-design section says, built once from the plan and the result files:
    the data's description, the fold assignment (folds.json: num_folds, num_repeats, seed,
    inner_validation_fraction, patient_ids, labels), the training and threshold settings, the
    external sets (their description with any failure, and their images' patient_ids / labels
    less duplicates), the sources without patient ids, and the clinical sections' facts."""
    data: str
    assignment: dict
    augment_copies: int
    operating_point: str
    eval_every_n_epochs: float
    early_stopping_patience: int
    external: str | None = None
    ungrouped_sources: tuple = ()
    external_assignment: dict | None = None
    clinical: clinical_report.ClinicalFacts = dataclasses.field(
        default_factory=clinical_report.ClinicalFacts)


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
        lines.append(f"| {md(source)} | " + " | ".join(cells) + " |")
    return lines + [""]


def _interval(design):
    return f"{design.eval_every_n_epochs:g} epochs of the fold's training part"


def _grouping_lines(design):
    """A bullet for the sources whose images could not be grouped by patient."""
    ungrouped = design.ungrouped_sources
    if not ungrouped:
        return []
    return [f"- **Patient grouping was not possible** for {md(', '.join(ungrouped))}: the "
            "source gives no patient ids, so each image is its own unit (byte-identical images "
            "joined); images of one patient may sit on both sides of a split, and the figures "
            "may be optimistic. A `patient_id` column (CSV) gives the grouping."]


def _patience(design):
    if not design.early_stopping_patience:
        return ""
    epochs = design.eval_every_n_epochs * design.early_stopping_patience
    return f" after {epochs:g} epochs without a better AUC"


def study_design_markdown(design):
    """The study-design section of a ``StudyDesign``."""
    assignment = design.assignment
    lines = ["## Study design", "",
             f"- **Data**: {md(design.data)}. Images used (labelled, readable), by source "
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
        f"{design.augment_copies} augmented copies of each training image are added to the "
        "fold's training part only (validation and test images are never augmented).",
        "- **Class imbalance**: folds are stratified; trained rows weight the loss so that each "
        "class has the same total weight; the SVM rows keep scikit-learn's defaults (no "
        "weighting) as in the paper.",
        f"- **Threshold**: `{md(design.operating_point)}`, chosen on each fold's inner "
        "validation predictions only (never on the test fold). Sensitivity, specificity and "
        "accuracy judge each image at its own fold's threshold; `summary.csv` also gives them "
        "at 0.5.",
        *clinical_report.design_lines(design.clinical),
        f"- **External set**: {md(design.external or 'none given')}.",
        "- **The paper's protocol differs**: it augmented all images first and then split "
        "images at random, so copies of one image and images of one patient could be on both "
        "sides (image level). `--protocol=image` reproduces that protocol on a single split.",
        ""]
    if design.external_assignment:
        lines += ["External images used (duplicates of development images left out), by "
                  "source and class:", ""]
        lines += _counts_lines(design.external_assignment, "external source")
    return lines


def _run_table(run_info, rows):
    lines = ["## Run", "", "| | |", "|---|---|"]
    for key, value in run_info.items():
        if key == "stages":
            continue
        if key == "total_seconds":
            key, value = "total time", duration(value)
        lines.append(f"| {md(key)} | {md(short(value))} |")
    lines.append("")
    if run_info.get("stages"):
        stages, left_out = findings.ran_stages(run_info["stages"], rows)
        lines += stage_times_markdown(stages, run_info.get("total_seconds"))
        if findings.not_run(rows):
            lines += ["The stages of the rows that did not run are left out "
                      f"({duration(left_out)} in all).", ""]
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
    lines += [f"![Reliability diagrams, raw and recalibrated]({CALIBRATION_PNG})", ""]
    lines += ["## Decision curves", "", DECISION_NOTE, ""]
    if clinical.tirads_labels:
        lines += [clinical_report.TIRADS_NOTE, ""]
    lines += clinical_report.decision_markdown(rows, summaries)
    lines += clinical_report.best_strategy_lines(rows, summaries)
    lines += [f"![Decision curves]({clinical_report.DECISION_PNG})", ""]
    return lines


def _external_sections(rows, external, clinical):
    lines = ["## External validation", "",
             "Each row scored by its refit and by its fold ensemble; `(final)` marks "
             f"`--final_model={clinical.final_model}`, whose figures are the `external_` "
             "columns of `summary.csv`.", ""]
    by_model = clinical.external_by_model or {clinical.final_model: external}
    lines += clinical_report.external_markdown(rows, by_model, clinical.final_model)
    lines += clinical_report.shift_markdown(rows, external, clinical.shift_problem)
    lines += [f"Net benefit on the external set ({clinical_report.MODEL_NAMES[clinical.final_model]}):",
              ""]
    lines += clinical_report.decision_markdown(rows, external)
    return lines


RESULTS_HEADING = "Results (pooled out-of-fold predictions)"
# The sections summary.html shows unfolded; every other section folds.
OPEN_SECTIONS = (findings.FINDINGS_HEADING, RESULTS_HEADING)


def cv_summary_markdown(rows, summaries, external, run_info, design, extra=(), run_dir=None):
    """summary.md: the findings, the results and their plot, the clinical sections, the rows
    that did not run, the paper's table; then the study design (a ``StudyDesign``), the run
    and its timing."""
    clinical = design.clinical
    ran = findings.ran(rows)
    lines = ["# Thyroid ultrasound study: cross-validated results", ""]
    lines += findings.findings_markdown(rows, summaries, external, clinical)
    lines += [f"## {RESULTS_HEADING}", "", RESULTS_NOTE, ""]
    lines += cv_results_markdown(ran, summaries)
    lines += [f"![ROC curves, pooled out of fold]({ROC_PNG})", ""]
    lines += _clinical_sections(ran, summaries, clinical)
    lines += list(extra)  # sections of optional rows (localisation)
    if external:
        lines += _external_sections(ran, external, clinical)
    lines += findings.not_run_markdown(rows, run_dir)
    lines += ["## Comparison with the paper's Table 1", "",
              f"Paper: {paper.PAPER_AUTHORS}, \"{paper.PAPER_TITLE}\" ({paper.PAPER_URL}).", ""]
    lines += cv_paper_markdown(rows, summaries)
    lines += study_design_markdown(design)
    lines += _run_table(run_info, rows)
    weights = [f"- {md(r.title)}: {md(r.checkpoint)}" for r in rows if r.checkpoint]
    if weights:
        lines += ["## Weights each row started from", ""] + weights + [""]
    lines += ["## Files", "",
              f"- [Every prediction]({PREDICTIONS_CSV}), [summary table]({SUMMARY_CSV}), "
              f"[this page as HTML]({SUMMARY_HTML})", ""]
    return "\n".join(lines)


def write_cv_report(run_dir, rows, records, summaries, external, run_info, design, extra=()):
    """predictions.csv, summary.csv, summary.md, summary.html, roc.png, calibration.png and
    decision_curve.png in run_dir; ``summaries`` / ``external``: {row id: pooled.RowFigures};
    ``design``: a ``StudyDesign``; ``extra``: sections of optional rows (localisation,
    robustness)."""
    clinical = design.clinical
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
    markdown = cv_summary_markdown(rows, summaries, external, run_info, design, extra, run_dir)
    io_utils.atomic_write_text(paths["summary_md"], markdown)
    io_utils.atomic_write_text(paths["summary_html"], html_page.markdown_page(
        markdown, run_dir, "Thyroid ultrasound study", OPEN_SECTIONS))
    return paths
