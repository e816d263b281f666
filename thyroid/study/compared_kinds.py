"""The jobs that compare variants of the rows with the rows themselves, on the same folds and
images: another training augmentation (``--augment=ultrasound``) and test-time augmentation
(``--tta``). Their kinds are registered by ``study.kinds`` (``entries``); their bodies are
``study.comparison_jobs``, their report section ``study.comparison_report``.

``--augment=ultrasound``:

- ``aug_shards``: <run>/shards_ultrasound, every development image again with its copies made
  by the ultrasound augmentation (``preprocessing.augmentation_kinds``), and the study's own
  folds.json copied beside it: the same originals under the same keys, so every fold trains,
  validates and tests on the same images; the copies stay in training parts, as ever.
- ``aug_features-<row>`` / ``aug_fit-<row>-r<r>-f<f>``: the row on those shards
  (<run>/train_ultrasound/<row>/repeat<r>_fold<f>), for the rows that train on copies
  (``TRAINS_ON_COPIES``); the others would give the same predictions twice.
- ``aug_external-<row>`` (with external sets): the final model of those fits (the refit in
  <run>/train_ultrasound/<row>/refit, or the fold ensemble) scores the external set.

``--tta``:

- ``tta_views``: <run>/tta/<view> (and <run>/tta/external-<view>): every development (and
  external) image as one of the views of ``preprocessing.tta`` other than the image itself,
  built as evaluation-only shards, so that any row scores a view as it scores any image set
  (frozen features through the activation cache of that set, images resized from it).
- ``tta-<row>``: each fold's model scores the views of its inner-validation and test images;
  the mean over the views (the image itself included) is the row's TTA score, its threshold and
  recalibration map chosen on the TTA scores of the inner validation alone; the final model
  does the same on the external set. Not for the localisation rows (``tta_rows``).

``comparison``: the variants' pooled figures and DeLong's p against the row itself.
"""

import os

from thyroid.study import payloads
from thyroid.study.jobspec import Job, ids, job_dir, job_id, row_stage
from thyroid.study.rows import LOCALISATION_MODES, get_row, is_localisation

RUNNERS = "thyroid.study.comparison_jobs"
AUGMENTED = "ultrasound"  # the augmentation compared with the standard one
TTA = "tta"  # the comparison's name of test-time augmentation
AUG_SHARDS_DIR, AUG_TRAIN_DIR, TTA_DIR = "shards_ultrasound", "train_ultrasound", "tta"
AUG_PART, TTA_PART = "folds, ultrasound augmentation", "test-time augmentation"
ROW_STAGE_PARTS = (AUG_PART, TTA_PART)
VIEWS_STAGE, AUG_SHARDS_STAGE, COMPARISON_STAGE = (
    "test-time views", "shards, ultrasound augmentation", "comparison")
# The modes that leave the augmented copies out: the logistic-regression rows (the mirror
# average is their augmentation) and the localisation rows built on their features.
LEAVES_COPIES_OUT = ("bottleneck_logreg",) + LOCALISATION_MODES


def trains_on_copies(row):
    return row.mode not in LEAVES_COPIES_OUT


def augmented_rows(study):
    """The rows fitted again on the ultrasound shards."""
    if not (study.compares_augmentation and study.cross_validated):
        return []
    return [row for row in study.selected_rows() if trains_on_copies(row)]


def tta_rows(study):
    """The rows scored with test-time augmentation: not the localisation rows, whose nodule
    view comes from the outline set of the images as they are."""
    if not (study.tta and study.cross_validated):
        return []
    return [row for row in study.selected_rows() if not is_localisation(row)]


def aug_row_dir(run_dir, row_id):
    return os.path.join(run_dir, AUG_TRAIN_DIR, get_row(row_id).folder_name())


def aug_fold_dir(run_dir, row_id, repeat, fold):
    return os.path.join(aug_row_dir(run_dir, row_id), f"repeat{repeat}_fold{fold}")


def view_dir(run_dir, view, external=False):
    return os.path.join(run_dir, TTA_DIR, f"external-{view}" if external else view)


# --------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------

def _plan_aug_shards(study, planned):
    if not augmented_rows(study):
        return []
    return [Job("aug_shards", AUG_SHARDS_STAGE, (job_id("data"), job_id("shards")))]


def _plan_tta_views(study, planned):
    if not tta_rows(study):
        return []
    return [Job("tta_views", VIEWS_STAGE, (job_id("data"),) + ids(planned, "external_shards"))]


def _aug_inputs(row):
    return (job_id("aug_shards"), job_id("checkpoints"))


def _plan_aug_features(study, planned):
    return [Job("aug_features", row_stage(row.id, AUG_PART), _aug_inputs(row), row.id)
            for row in augmented_rows(study) if row.mode != "scratch"]


def _plan_aug_fits(study, planned):
    jobs = []
    for row in augmented_rows(study):
        inputs = _aug_inputs(row) + ids(planned, "aug_features", row.id)
        jobs += [Job("aug_fit", row_stage(row.id, AUG_PART), inputs, row.id, repeat, fold)
                 for repeat in range(study.cv_repeats) for fold in range(study.num_folds)]
    return jobs


def _external_inputs(planned):
    return ids(planned, "external_shards") + ids(planned, "external_check")


def _plan_aug_external(study, planned):
    """The final model of each augmented row on the external set (the refit of every fit, or
    the fold ensemble of repeat 0)."""
    if not study.external:
        return []
    repeat = 0 if study.final_model == "folds" else None
    return [Job("aug_external", row_stage(row.id, AUG_PART),
                ids(planned, "aug_fit", row.id, repeat) + _external_inputs(planned), row.id)
            for row in augmented_rows(study)]


def _plan_tta(study, planned):
    """Each row's folds scored on the views; with external sets its final model too."""
    final = "refit" if study.final_model == "refit" else "ensemble"

    def external(row_id):
        if not study.external:
            return ()
        return ids(planned, final, row_id) + ids(planned, "external_check")
    return [Job("tta", row_stage(row.id, TTA_PART),
                ids(planned, "fit", row.id) + ids(planned, "tta_views") + external(row.id),
                row.id)
            for row in tta_rows(study)]


def _plan_comparison(study, planned):
    inputs = tuple(job.id for job in planned if job.kind in (
        "fit", "refit", "ensemble", "aug_fit", "aug_external", "tta"))
    if not (augmented_rows(study) or tta_rows(study)):
        return []
    return [Job("comparison", COMPARISON_STAGE, inputs)]


def _records(plan, job):
    return os.path.join(job_dir(plan.run_dir, job.id), "records.json")


def _aug_fit_outputs(plan, job, payload):
    return [aug_fold_dir(plan.run_dir, job.row_id, job.repeat, job.fold), _records(plan, job)]


def _aug_external_outputs(plan, job, payload):
    refit = [payload.train_dir] if isinstance(payload, payloads.RefitPayload) else []
    return refit + [_records(plan, job)]


def _view_outputs(plan, job, payload):
    return [os.path.join(path, "manifest.json")
            for path in list(payload.development.values()) + list(payload.external.values())]


def entries(job_kind):
    """[(kind, the kind it is planned before)] of the comparison's kinds, each made by
    ``job_kind`` (``kinds.JobKind``, passed in: that module registers them)."""
    def kind(name, plan, payload, **facts):
        return job_kind(name, f"{RUNNERS}:run_{name}", plan, payload, **facts)

    def under(*parts):
        return lambda plan, job, payload: [os.path.join(plan.run_dir, *parts)]
    return [
        (kind("aug_shards", _plan_aug_shards, payloads.ShardsPayload,
              outputs=under(AUG_SHARDS_DIR, "manifest.json")), "features"),
        (kind("tta_views", _plan_tta_views, payloads.ViewsPayload, outputs=_view_outputs),
         "features"),
        (kind("aug_features", _plan_aug_features, payloads.FeaturesPayload, gpu=True,
              row_major=True), "external_check"),
        (kind("aug_fit", _plan_aug_fits, payloads.FoldFit, gpu=True, row_major=True,
              outputs=_aug_fit_outputs), "external_check"),
        (kind("aug_external", _plan_aug_external,
              payloads.RefitPayload | payloads.EnsemblePayload, gpu=True,
              outputs=_aug_external_outputs), "variant"),
        (kind("tta", _plan_tta, payloads.TtaPayload, gpu=True,
              outputs=lambda plan, job, payload: [_records(plan, job)]), "variant"),
        (kind("comparison", _plan_comparison, payloads.ComparisonPayload, summary=True),
         "pooled"),
    ]
