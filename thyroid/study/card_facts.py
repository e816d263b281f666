"""What a study tells its export for the model card (``deploy.model_card.StudyFacts``): the row,
the protocol, the pooled out-of-fold figures and the external sets' figures of the exported
row, read from the result files of the jobs the export waits for (``pooled``, which comes after
every fit, refit and fold ensemble, and ``data``)."""

from thyroid.deploy.model_card import Figures, StudyFacts
from thyroid.study.jobspec import job_id
from thyroid.study.results import read_result
from thyroid.study.rows import get_row


def _payload(plan, job_id):
    """The job's typed payload, or None when it did not end ok."""
    result = read_result(plan.run_dir, job_id)
    return result.payload if result is not None and result.ok else None


def _row_figures(figures_by_row, row_id):
    """The row's ``pooled.RowFigures``, or None."""
    return (figures_by_row or {}).get(row_id)


def protocol_text(study):
    """The study's protocol in one paragraph (no user text in it)."""
    if study.protocol != "patient":
        return ("image-level single split (the paper's protocol: images split after "
                "augmenting, so one patient's images can be on both sides; optimistic)")
    if not study.cross_validated:
        return ("one patient-grouped train / validation / test split; the threshold chosen "
                f"on the validation split ({study.operating_point})")
    repeats = f" x {study.cv_repeats} repeats" if study.cv_repeats > 1 else ""
    return (f"patient-grouped, label-stratified {study.num_folds}-fold cross-validation"
            f"{repeats} (patients sharing a byte-identical image kept together); in each fold "
            f"an inner validation set ({study.inner_validation_fraction:.0%} of its training "
            "patients per class) chose early stopping, the threshold "
            f"({study.operating_point}) and the recalibration map ({study.recalibrate}); "
            f"{study.augment_copies} augmented copies per image, in training parts only")


def final_model_text(study, folds=None):
    if not study.cross_validated:
        return "trained on the single split's training part"
    if study.final_model == "folds":
        return (f"fold ensemble of the first repeat's {folds} fold models: the mean of their "
                "probabilities, the mean of their recalibrated risks")
    return ("refitted on every development image for the median over folds of the best "
            "epoch, judged at the median fold threshold; recalibrated on every fold's inner "
            "validation predictions")


def _external_name(study):
    return ", ".join(f"{kind} {path}" for kind, path in study.external)


def study_facts(plan, row_id, folds=None):
    """The card facts of ``row_id``'s exported model (``folds``: a fold ensemble's size)."""
    study = plan.study
    pooled = _payload(plan, job_id("pooled"))
    summary = _row_figures(pooled and pooled.summaries, row_id)
    development = None
    if summary:
        repeats = f" x {study.cv_repeats} repeats" if study.cv_repeats > 1 else ""
        development = Figures.from_summary(
            f"pooled out-of-fold predictions of {study.num_folds}-fold cross-validation"
            f"{repeats}, at each fold's own threshold", summary.to_json())
    external = ()
    found = _row_figures(pooled and pooled.external, row_id)
    if found:
        scope = ("the fold ensemble" if study.final_model == "folds" else "the refitted model")
        external = ((_external_name(study), Figures.from_summary(
            f"{scope} scoring the external set (images byte-identical to a development image "
            "left out)", found.to_json())),)
    return StudyFacts(
        row_id=row_id, row_label=get_row(row_id).label,
        final_model=final_model_text(study, folds), protocol=protocol_text(study),
        data_description=getattr(_payload(plan, job_id("data")), "description", "") or "",
        run=f"{plan.run_dir} (started {plan.date})", quick=study.quick,
        synthetic=study.source == "synthetic", development=development, external=external)
