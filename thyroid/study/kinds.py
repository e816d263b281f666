"""The job kinds: one ``JobKind`` entry per kind, the one place that says what a kind is.

An entry names the function that runs the job (``runner``, as ``"module:function"``: imported
where the job runs, so that planning, scheduling and listing jobs never load TensorFlow), how
its jobs and their inputs are planned (``plan``), what it may use (``gpu``), whether it uses
what its inputs left even when some failed (``summary``), the type of its result's payload
(``payload``, ``study.payloads``), and which of the user's data
sources it reads (``sources``: their recorded content is part of its fingerprint). The plan,
the jobs, the executors, the report and the fingerprint read these entries; a new kind is one
more entry (``register``).

Kinds are planned in the registry's order, each seeing the jobs planned before it, so every
job comes after its inputs. The ``row_major`` kinds (a row's features, then its fits) are
then listed row by row, so that the jobs of a row's stage are together.

Where each job writes (``outputs``: what must still be there for a job to count as done):

- ``data``: <run>/synthetic (the synthetic default only)
- ``shards`` / ``external_shards``: <run>/shards, <run>/external_shards
- ``checkpoints``: the study's --checkpoint_dir
- ``outlines`` (localisation rows only): <run>/outlines, the outline set
  (``datasets.outlines``); its segmentation encoder cache sits in the shards' activation cache
- ``features-<row>``: the activation cache inside <run>/shards (rows on frozen features)
- ``fit-<row>-r<repeat>-f<fold>`` / ``fit-<row>``: <run>/train/<row>/repeat<r>_fold<f> or
  <run>/train/<row> (single split)
- ``external_check``: the external set's duplicates of development images, in its result
- ``refit-<row>``: <run>/train/<row>/refit (then scores the external set)
- ``ensemble-<row>``: the fold ensemble (repeat 0's fold models) scores the external set
- ``variant-<name>`` (``--crop_variants``): <run>/variants/<name>, the labelled images cut with
  another crop (``study.robustness``); ``robustness-<row>``: the row's folds scored on them,
  in its result
- ``segment`` (row 12 with an export): <run>/train/segment, the segmentation network on every
  outlined image, exported beside the classifier
- ``shift`` (with an export or an external set, and an EfficientNet-Lite0 row): <run>/shift,
  the development images' shift reference and every image's shift score (``study.shift_scores``)
- ``pooled``: the pooled out-of-fold (and external) statistics, in its result
- ``export``: <run>/mobile; ``report``: summary.* in <run>
"""

import dataclasses
import os
import typing
from typing import Callable

from thyroid.stats.shift import FILE_NAME as SHIFT_REFERENCE
from thyroid.study import payloads, source_names
from thyroid.study import compared_kinds
from thyroid.study.jobspec import RECORDS_FILE, Job, ids, job_dir, job_id, row_stage
from thyroid.study.rows import MOBILE_MODELS, get_row, is_localisation

REPORT_STAGE = "report: pooled metrics and bootstrap"
# The stages of one row's jobs: its folds (features and fits), its refit, its fold ensemble,
# and the compared variants' jobs (study.compared_kinds).
ROW_STAGE_PARTS = ("folds", "refit", "fold ensemble") + compared_kinds.ROW_STAGE_PARTS
JOBS_MODULE = "thyroid.study.jobs"
# Where the jobs write inside the run folder (see above).
SHARDS_DIR, EXTERNAL_DIR, TRAIN_DIR, MOBILE_DIR = "shards", "external_shards", "train", "mobile"
OUTLINES_DIR, SEGMENT_DIR, VARIANT_DIR = "outlines", os.path.join("train", "segment"), "variants"
SHIFT_DIR = "shift"
SYNTHETIC_DIR, SUMMARY_FILE = "synthetic", "summary.md"


@dataclasses.dataclass(frozen=True)
class JobKind:
    name: str
    runner: str  # "module:function"; the function takes (plan, job) and returns an Outcome
    plan: Callable  # (StudyConfig, [Job planned so far]) -> [Job] of this kind
    payload: typing.Any  # its result's payload: a study.payloads dataclass (or a union)
    gpu: bool = False  # runs a network: takes the executor's GPU share
    summary: bool = False  # runs on what its inputs left, failed or not (data jobs aside)
    row_major: bool = False  # listed row by row with the other row-major kinds
    # Which of the plan's recorded data sources (study.data_record) it reads, by name.
    sources: Callable | None = None
    # (plan, job, payload) -> the paths its result stands for (see above), [] for none.
    outputs: Callable = lambda plan, job, payload: []


KINDS = {}


def register(kind, before=None):
    """Adds ``kind`` to the registry (planned before the kind named ``before``, else last)."""
    if kind.name in KINDS:
        raise ValueError(f"job kind {kind.name!r} is registered already")
    entries = list(KINDS.values())
    at = next((i for i, k in enumerate(entries) if k.name == before), len(entries))
    entries.insert(at, kind)
    KINDS.clear()
    KINDS.update((k.name, k) for k in entries)


def unregister(name):
    KINDS.pop(name, None)


def get(name):
    """The entry of a kind; a ValueError naming the known kinds otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"no job kind {name!r}; the kinds are {', '.join(KINDS)}") from None


# --------------------------------------------------------------------------------------
# What each kind plans
# --------------------------------------------------------------------------------------

def _plan_data(study, planned):
    return [Job("data", "data" if study.source != "synthetic" else "synthetic data")]


def _plan_shards(study, planned):
    return [Job("shards", "shards", (job_id("data"),))]


def _plan_external_shards(study, planned):
    return [Job("external_shards", "external shards")] if study.external else []


def _plan_checkpoints(study, planned):
    return [Job("checkpoints", "checkpoints")]


def _plan_outlines(study, planned):
    if not study.localises():
        return []
    return [Job("outlines", "outlines", (job_id("data"), job_id("shards")))]


def _row_inputs(row):
    return ((job_id("shards"), job_id("checkpoints"))
            + ((job_id("outlines"),) if is_localisation(row) else ()))


def _plan_features(study, planned):
    """Rows not trained from scratch (the job finds out whether the row reads frozen features)."""
    return [Job("features", row_stage(row.id, "folds"), _row_inputs(row), row.id)
            for row in study.selected_rows() if row.mode != "scratch"]


def _plan_fits(study, planned):
    jobs = []
    for row in study.selected_rows():
        inputs = _row_inputs(row) + ids(planned, "features", row.id)
        stage = row_stage(row.id, "folds")
        if not study.cross_validated:
            jobs.append(Job("fit", stage, inputs, row.id))
            continue
        jobs += [Job("fit", stage, inputs, row.id, repeat, fold)
                 for repeat in range(study.cv_repeats) for fold in range(study.num_folds)]
    return jobs


def export_candidates(study):
    """The rows the export may choose: fine-tuned mobile networks."""
    return [row for row in study.selected_rows() if row.mode == "finetune"
            and row.model in MOBILE_MODELS]


def external_rows(study):
    """The rows scored on an external set (the localisation rows have no outline set of it)."""
    return [row for row in study.selected_rows() if not is_localisation(row)]


def refit_rows(study):
    """Rows refitted on all development data: every row for an external set (which both the
    refit and the fold ensemble score), else the rows the export may choose when it exports
    a refit."""
    if not study.cross_validated:
        return []
    if study.external:
        return external_rows(study)
    if study.export and study.final_model == "refit":
        return export_candidates(study)
    return []


def _plan_external_check(study, planned):
    if not study.external:
        return []
    return [Job("external_check", "external check", (job_id("shards"), job_id("external_shards")))]


def _external_inputs(study, planned):
    return ids(planned, "external_shards") + ids(planned, "external_check")


def _plan_refits(study, planned):
    return [Job("refit", row_stage(row.id, "refit"),
                ids(planned, "fit", row.id) + _external_inputs(study, planned), row.id)
            for row in refit_rows(study)]


def _plan_ensembles(study, planned):
    """The fold ensemble of repeat 0 of each row on the external set."""
    if not study.external:
        return []
    return [Job("ensemble", row_stage(row.id, "fold ensemble"),
                ids(planned, "fit", row.id, repeat=0) + _external_inputs(study, planned), row.id)
            for row in external_rows(study)]


def _plan_variants(study, planned):
    if not study.crop_variants or not study.cross_validated:
        return []
    return [Job("variant", "robustness: variant shards", (job_id("data"),), variant=name)
            for name in study.crop_variants]


def _plan_robustness(study, planned):
    """Per row, its folds scored on every crop variant (not the localisation rows: their
    nodule view is built for the scan field only)."""
    variants = ids(planned, "variant")
    if not variants:
        return []
    return [Job("robustness", "robustness: scoring", ids(planned, "fit", row.id) + variants,
                row.id) for row in external_rows(study)]


# The network whose frozen ImageNet prefix gives the shift score's features
# (``training.shift_features.MODEL``).
SHIFT_MODEL = "efficientnet_lite0"


def shift_row(study):
    """The row whose network and input size the shift score uses: the first selected
    fine-tuned EfficientNet-Lite0 row (an export of it carries the reference), else the first
    EfficientNet-Lite0 row, else None (the study fetches no checkpoint for it)."""
    rows = [row for row in study.selected_rows() if row.model == SHIFT_MODEL]
    return next((row for row in rows if row.mode == "finetune"), rows[0] if rows else None)


def _plan_shift(study, planned):
    """One shift score for every row, when something reads it: the export or external sets."""
    if not (study.cross_validated and (study.export or study.external) and shift_row(study)):
        return []
    inputs = (job_id("shards"), job_id("checkpoints")) + ids(planned, "external_shards")
    return [Job("shift", "shift score", inputs)]


def _plan_pooled(study, planned):
    if not study.cross_validated:
        return []
    inputs = ids(planned, "fit") + tuple(job.id for job in planned if job.kind in (
        "external_check", "refit", "ensemble", "shift"))
    return [Job("pooled", REPORT_STAGE, inputs)]


def _plan_segment(study, planned):
    """Row 12's segmentation network on every outlined image, for the export."""
    if not (study.export and export_candidates(study) and study.cross_validated
            and study.segments()):
        return []
    return [Job("segment", "segmentation refit", (job_id("outlines"), job_id("checkpoints")))]


def _plan_export(study, planned):
    if not study.export:
        return []
    candidates = [row.id for row in export_candidates(study)]
    inputs = tuple(i for row_id in candidates for i in ids(planned, "fit", row_id))
    if study.cross_validated and study.final_model == "refit":
        inputs += tuple(i for row_id in candidates for i in ids(planned, "refit", row_id))
    # The pooled figures go in the export's model card (card_facts); the shift reference in
    # the export itself.
    return [Job("export", "export", inputs + ids(planned, "pooled") + ids(planned, "segment")
                + ids(planned, "shift"))]


def _plan_report(study, planned):
    return [Job("report", "report", tuple(job.id for job in planned))]


def row_train_dir(run_dir, row_id):
    return os.path.join(run_dir, TRAIN_DIR, get_row(row_id).folder_name())


def fold_train_dir(run_dir, row_id, repeat, fold):
    return os.path.join(row_train_dir(run_dir, row_id), f"repeat{repeat}_fold{fold}")


def _under(*parts):
    """Outputs at fixed places in the run folder."""
    return lambda plan, job, payload: [os.path.join(plan.run_dir, *parts)]


def _data_outputs(plan, job, payload):
    synthetic = not plan.study.user_data
    return [os.path.join(plan.run_dir, SYNTHETIC_DIR)] if synthetic else []


def _records(plan, job):
    return os.path.join(job_dir(plan.run_dir, job.id), RECORDS_FILE)


def _fit_outputs(plan, job, payload):
    train_dir = (fold_train_dir(plan.run_dir, job.row_id, job.repeat, job.fold)
                 if job.fold is not None else row_train_dir(plan.run_dir, job.row_id))
    return [train_dir, _records(plan, job)]


def _refit_outputs(plan, job, payload):
    refit = [os.path.join(row_train_dir(plan.run_dir, job.row_id), "refit")]
    return refit + ([_records(plan, job)] if plan.study.external else [])


def _export_outputs(plan, job, payload):
    return [payload.exported] if payload.exported else []


def _kind(name, plan, payload, **facts):
    return JobKind(name, f"{JOBS_MODULE}:run_{name}", plan, payload, **facts)


for _entry in (
        _kind("data", _plan_data, payloads.Sources, sources=source_names.is_development,
              outputs=_data_outputs),
        # With --init_from the shards job checks this study's images against the previous
        # run's, and the rows after it start from that run's checkpoint.
        _kind("shards", _plan_shards, payloads.ShardsPayload,
              sources=source_names.is_previous_run, outputs=_under(SHARDS_DIR, "manifest.json")),
        _kind("external_shards", _plan_external_shards, payloads.ShardsPayload,
              sources=source_names.is_external, outputs=_under(EXTERNAL_DIR, "manifest.json")),
        _kind("checkpoints", _plan_checkpoints, payloads.CheckpointsPayload),
        _kind("outlines", _plan_outlines, payloads.OutlinesPayload, outputs=_under(OUTLINES_DIR)),
        _kind("features", _plan_features, payloads.FeaturesPayload, gpu=True, row_major=True),
        _kind("fit", _plan_fits, payloads.FoldFit | payloads.SplitFit, gpu=True, row_major=True,
              outputs=_fit_outputs),
        _kind("external_check", _plan_external_check, payloads.ExternalCheckPayload),
        _kind("refit", _plan_refits, payloads.RefitPayload, gpu=True, outputs=_refit_outputs),
        _kind("ensemble", _plan_ensembles, payloads.EnsemblePayload,
              outputs=lambda plan, job, payload: [_records(plan, job)]),
        _kind("variant", _plan_variants, payloads.VariantPayload,
              outputs=lambda plan, job, payload: [
                  os.path.join(plan.run_dir, VARIANT_DIR, job.variant)]),
        _kind("robustness", _plan_robustness, payloads.RobustnessPayload),
        JobKind("shift", "thyroid.study.shift_scores:run_shift", _plan_shift,
                payloads.ShiftPayload, gpu=True, outputs=_under(SHIFT_DIR, SHIFT_REFERENCE)),
        _kind("pooled", _plan_pooled, payloads.PooledPayload, summary=True),
        _kind("segment", _plan_segment, payloads.SegmentPayload, outputs=_under(SEGMENT_DIR)),
        _kind("export", _plan_export, payloads.ExportPayload, gpu=True, summary=True,
              outputs=_export_outputs),
        _kind("report", _plan_report, payloads.ReportPayload, summary=True,
              outputs=_under(SUMMARY_FILE))):
    register(_entry)
for _entry, _before in compared_kinds.entries(JobKind):
    register(_entry, before=_before)


def plan_jobs(study):
    """Every job of the study, each after its inputs, a stage's jobs together."""
    planned = []
    for kind in KINDS.values():
        planned = _row_by_row(planned + list(kind.plan(study, planned)))
    return tuple(planned)


def _row_by_row(jobs):
    """The row-major kinds' jobs (a contiguous run: adjacent kinds) ordered by row, each
    row's kinds in registry order."""
    block = [i for i, job in enumerate(jobs) if KINDS[job.kind].row_major]
    if not block:
        return jobs
    first, last = block[0], block[-1] + 1
    ordered = sorted(jobs[first:last], key=lambda job: job.row_id)  # stable: kinds in order
    return jobs[:first] + ordered + jobs[last:]


def outputs_present(plan, job, result):
    """Whether every output the job's committed result names is still there: a committed job
    whose outputs are gone (a deleted shards folder, records file or export) is not done."""
    return all(os.path.exists(path) for path in get(job.kind).outputs(plan, job, result.payload))
