"""What each kind of job does. ``run_job(plan, job)`` runs one job of the plan in this process,
reading its inputs' results from their files, and commits its own ``JobResult`` (and records).

A row whose ImageNet checkpoint is missing ends ``skipped`` with the command that fixes it (or
runs from random weights with ``allow_random_init``); any other error ends the job ``failed``
with its reason, and the other jobs go on. Every executor calls this function: the in-process
one directly, the Ray one inside a task.
"""

import dataclasses
import importlib
import os
import resource
import time
import traceback

from absl import logging

from thyroid.checkpoints.locate import (MissingCheckpointError, default_checkpoint_path,
                                        fetch_command)
from thyroid.datasets import duplicates, folds, shards
from thyroid.flag_errors import FlagValueError
from thyroid.nets import get_network
from thyroid.stats import pooled
from thyroid.stats.recalibration import RecalibrationMap
from thyroid.study import (data, fitting, kinds, localisation_data, localisation_fitting,
                           payloads, robustness)
from thyroid.study.config import row_config
from thyroid.study.fingerprint import job_fingerprint
from thyroid.study.fitting import EXTERNAL_SPLIT
from thyroid.study.assemble import write_report
from thyroid.study.jobspec import job_id
from thyroid.study.kinds import (EXTERNAL_DIR, MOBILE_DIR, OUTLINES_DIR, SEGMENT_DIR,
                                 SHARDS_DIR)
from thyroid.study.plan import row_of
from thyroid.study.resources import tensorflow_gpus
from thyroid.study.rows import SEGMENTING_MODE, is_localisation
from thyroid.study.results import (FAILED, OK, SKIPPED, FoldResult, JobResult, read_records,
                                   read_result, this_worker, write_result)



@dataclasses.dataclass
class Outcome:
    """What a job's body returns: its payload (its kind's ``study.payloads`` dataclass; None
    when it did not run) and, for fits, its prediction records."""
    payload: object = None
    records: list | None = None


def _path(plan, *parts):
    return os.path.join(plan.run_dir, *parts)


def row_train_dir(plan, row_id):
    return kinds.row_train_dir(plan.run_dir, row_id)


def _ok(plan, input_id):
    result = read_result(plan.run_dir, input_id)
    return result is not None and result.ok


def _sources(plan):
    return read_result(plan.run_dir, job_id("data")).payload


def _row_run_config(plan, job):
    """The row's RunConfig on the study's shards (with the fold file when cross-validated)."""
    dataset_dir = _path(plan, SHARDS_DIR)
    config = row_config(plan.study, row_of(job), dataset_dir)
    if plan.cross_validated:
        config = config.replace(fold_file=os.path.join(dataset_dir, folds.FOLDS_NAME))
    return config


def run_data(plan, job):
    return Outcome(data.prepare_sources(plan.study, plan.run_dir))


def run_shards(plan, job):
    sources = _sources(plan)
    build = (data.build_development_shards if plan.cross_validated
             else data.build_single_split_shards)
    manifest = build(plan.study, sources, _path(plan, SHARDS_DIR))
    checked = None
    if plan.study.init_from is not None:  # before any row trains on these folds
        from thyroid.study.previous_run import check_no_overlap, previous_run
        checked = check_no_overlap(previous_run(plan.study.init_from), _path(plan, SHARDS_DIR))
    return Outcome(payloads.ShardsPayload(_path(plan, SHARDS_DIR),
                                          manifest.get("build_seconds"), checked))


def run_external_shards(plan, job):
    data.build_external_shards(plan.study.external_sources, _path(plan, EXTERNAL_DIR),
                               plan.study.seed)
    return Outcome(payloads.ShardsPayload(_path(plan, EXTERNAL_DIR)))


def run_checkpoints(plan, job):
    models = sorted({row.model for row in plan.study.selected_rows()})
    data.prepare_checkpoints(plan.study.checkpoint_dir, models, plan.study.download_checkpoints)
    return Outcome(payloads.CheckpointsPayload(models))


def run_outlines(plan, job):
    sources = _sources(plan)
    return Outcome(localisation_data.build_outlines(sources, _path(plan, SHARDS_DIR),
                                               _path(plan, OUTLINES_DIR)))


def run_variant(plan, job):
    return Outcome(robustness.build_variant(_sources(plan), job.variant,
                                            robustness.variant_dir(plan.run_dir, job.variant),
                                            plan.study.seed))


def run_robustness(plan, job):
    """The row's folds scored again on every crop variant (``study.robustness``)."""
    inputs = [plan.job(input_id) for input_id in job.inputs]
    fits = [(fold_train_dir(plan, job.row_id, fit.repeat, fit.fold),
             read_records(plan.run_dir, fit.id)) for fit in inputs if fit.kind == "fit"]
    variants = {variant.variant: read_result(plan.run_dir, variant.id).payload.dataset_dir
                for variant in inputs if variant.kind == "variant"}
    return Outcome(robustness.row_robustness(fits, variants))


def run_segment(plan, job):
    row = next(r for r in plan.study.selected_rows() if r.mode == SEGMENTING_MODE)
    config = row_config(plan.study, row, _path(plan, SHARDS_DIR))
    return Outcome(localisation_fitting.refit_segmentation(
        plan.study, row, config, _path(plan, OUTLINES_DIR), _path(plan, SEGMENT_DIR)))


def run_features(plan, job):
    """Computes the row's frozen activations once, into the shards' activation cache, so that
    every fold reads them (a row fed images has none: nothing to do)."""
    if is_localisation(row_of(job)):
        return Outcome(localisation_data.prepare(plan.study, row_of(job),
                                                 _row_run_config(plan, job),
                                                 _path(plan, OUTLINES_DIR)))
    return Outcome(frozen_features(plan, _row_run_config(plan, job)))


def frozen_features(plan, config):
    """The activation cache of the row ``config`` trains, for every split it reads (nothing
    for a row fed images); -> its FeaturesPayload."""
    from thyroid.training.inputs import load_split_inputs
    from thyroid.training.model import IMAGES, input_kind
    from thyroid.training.run import resolve
    config = resolve(config.replace(fold_file=None).validate())
    kind = input_kind(config.mode, config.uses_frozen_prefix)
    if kind == IMAGES:
        return payloads.FeaturesPayload(kind)
    for split in ((data.DEV_SPLIT,) if plan.cross_validated else shards.SPLITS):
        load_split_inputs(config, split)
    return payloads.FeaturesPayload(kind)


def run_fit(plan, job):
    if not plan.cross_validated:
        return _fit_single_split(plan, job)
    train_dir = fold_train_dir(plan, job.row_id, job.repeat, job.fold)
    if is_localisation(row_of(job)):
        fold, facts = localisation_fitting.run_fold(
            plan.study, row_of(job), _row_run_config(plan, job), job.repeat, job.fold,
            train_dir, _path(plan, OUTLINES_DIR))
        return Outcome(fold.facts(facts), fold.records)
    fold = fitting.run_fold(_row_run_config(plan, job), job.row_id, job.repeat, job.fold,
                            train_dir, plan.study.operating_point, plan.study.recalibrate)
    return Outcome(fold.facts(), fold.records)


def _fit_single_split(plan, job):
    trained, metrics, records = fitting.fit_single_split(
        _row_run_config(plan, job), job.row_id, row_train_dir(plan, job.row_id),
        plan.study.seed, plan.study.num_bootstrap)
    return Outcome(payloads.SplitFit(metrics, trained.checkpoint_description, trained.seconds,
                                     trained.train_dir), records)


def fold_results(plan, job_ids, kind="fit"):
    """The FoldResults of the given jobs of ``kind`` (a fit kind: facts from result.json,
    records beside it)."""
    found = []
    for input_id in job_ids:
        result = read_result(plan.run_dir, input_id)
        if result is not None and result.ok and plan.job(input_id).kind == kind:
            found.append(FoldResult.from_payload(result.payload,
                                                 read_records(plan.run_dir, input_id)))
    return found


def fold_train_dir(plan, row_id, repeat, fold):
    return kinds.fold_train_dir(plan.run_dir, row_id, repeat, fold)


def run_external_check(plan, job):
    """The external set's images that duplicate development images (exact ones are left out
    of the external figures; near ones listed)."""
    check = duplicates.check_external(_path(plan, SHARDS_DIR), data.DEV_SPLIT,
                                      _path(plan, EXTERNAL_DIR), EXTERNAL_SPLIT)
    for pair in check.exact:
        logging.warning("external image %s is byte-identical to development image %s: left "
                        "out of the external figures", pair["external"], pair["development"])
    return Outcome(payloads.ExternalCheckPayload(**check.to_json()))


def excluded_external(plan):
    """Keys of the external images the figures leave out (byte-identical to development)."""
    result = read_result(plan.run_dir, job_id("external_check"))
    return set() if result is None or not result.ok else result.payload.excluded_keys()


def run_refit(plan, job):
    """Refits the row on all development data; scores the external set when there is one."""
    train_dir = os.path.join(row_train_dir(plan, job.row_id), "refit")
    folds_done = fold_results(plan, job.inputs)
    _, recalibration = fitting.refit_row(_row_run_config(plan, job), folds_done, train_dir,
                                         plan.study.recalibrate)
    records = None
    if plan.study.external:
        records = fitting.external_records(job.row_id, train_dir, _path(plan, EXTERNAL_DIR),
                                           recalibration, excluded_external(plan))
    return Outcome(payloads.RefitPayload(train_dir, recalibration.to_json()), records)


def run_ensemble(plan, job):
    """The fold ensemble of repeat 0 scores the external set."""
    folds_done = fold_results(plan, job.inputs)
    dirs = [fold_train_dir(plan, job.row_id, fold.repeat, fold.fold) for fold in folds_done]
    records = fitting.ensemble_records(job.row_id, dirs, folds_done, _path(plan, EXTERNAL_DIR),
                                       excluded_external(plan))
    return Outcome(payloads.EnsemblePayload(len(dirs)), records)


def export_choice(plan, job):
    """(row id, train_dir) of the fine-tuned mobile row with the best AUC, or None: pooled
    out of fold (its refit is exported) or on the single split's test set."""
    fits = [input_id for input_id in job.inputs
            if plan.job(input_id).kind == "fit" and _ok(plan, input_id)]
    records = [record for input_id in fits for record in read_records(plan.run_dir, input_id)]
    summaries = pooled.summarize_predictions(records, num_samples=0)
    refitted = plan.cross_validated and plan.study.final_model == "refit"
    candidates = [row_id for row_id in summaries
                  if not refitted or _ok(plan, job_id("refit", row_id))]
    if not candidates:
        return None
    best = max(candidates, key=lambda row_id: summaries[row_id].auc or 0.0)
    train_dir = row_train_dir(plan, best)
    return best, os.path.join(train_dir, "refit") if refitted else train_dir


def threshold_source(plan, job, row_id):
    """Where the exported threshold came from, in words (metadata.json, the web app)."""
    if not plan.cross_validated:
        return None  # the row's own threshold setting: the export says so
    ensemble = plan.study.final_model == "folds"  # repeat 0's folds; the refit: every fit
    fits = [input_id for input_id in job.inputs if plan.job(input_id).kind == "fit"
            and plan.job(input_id).row_id == row_id
            and (not ensemble or plan.job(input_id).repeat == 0)]
    return (f"the study's operating point {plan.study.operating_point!r}, chosen on each "
            f"fold's inner-validation predictions (never test data); the median over the "
            f"{len(fits)} fold thresholds of row {row_id}")


def run_export(plan, job):
    # TFLite conversion is only needed here
    from thyroid.deploy.ensemble import export_ensemble
    from thyroid.deploy.export import export_model
    from thyroid.study.card_facts import study_facts
    choice = export_choice(plan, job)
    if choice is None:
        logging.info("no fine-tuned mobile model to export")
        return Outcome(payloads.ExportPayload())
    row_id, train_dir = choice
    output_dir = _path(plan, MOBILE_DIR)
    source = threshold_source(plan, job, row_id)
    shift = shift_result(plan, job)
    reference = shift.reference if shift else None
    if plan.cross_validated and plan.study.final_model == "folds":
        fits = [input_id for input_id in job.inputs if plan.job(input_id).row_id == row_id
                and plan.job(input_id).repeat == 0]
        folds_done = fold_results(plan, fits)
        paths = export_ensemble(
            [fold_train_dir(plan, row_id, f.repeat, f.fold) for f in folds_done],
            [RecalibrationMap.from_json(f.recalibration) for f in folds_done],
            fitting.refit_settings(folds_done)[0], output_dir, source,
            study=study_facts(plan, row_id, len(folds_done)), shift_reference=reference)
        facts = payloads.ExportPayload(paths.model, row_id, False, len(folds_done),
                                       paths.layout, shift_reference=paths.shift_reference)
    else:
        paths = export_model(train_dir, output_dir, quantize="none", threshold_source=source,
                             study=study_facts(plan, row_id), shift_reference=reference)
        facts = payloads.ExportPayload(paths.model, row_id, plan.cross_validated,
                                       shift_reference=paths.shift_reference)
    return Outcome(dataclasses.replace(facts, segment=_export_segment(plan, job, output_dir)))


def _export_segment(plan, job, output_dir):
    """Row 12's segmentation network (trained on every outlined image) beside the model."""
    segment = job_id("segment")
    if segment not in job.inputs or not _ok(plan, segment):
        return None
    from thyroid.deploy.segment import export_segmentation
    return export_segmentation(_path(plan, SEGMENT_DIR), output_dir)


def shift_result(plan, job):
    """The ``ShiftPayload`` of the job's ``shift`` input, or None (none planned, or it did not
    end ok: the export then carries no reference, the report no shift figures)."""
    shift = job_id("shift")
    if shift not in job.inputs or not _ok(plan, shift):
        return None
    return read_result(plan.run_dir, shift).payload


def run_pooled(plan, job):
    """The pooled statistics of every row (out of fold, and external), kept in the result so
    that the report, written again, shows the same figures."""
    records = [record for input_id in job.inputs if _ok(plan, input_id)
               for record in read_records(plan.run_dir, input_id)]
    samples, seed = plan.study.num_bootstrap, plan.study.seed
    unranked = [row.id for row in plan.study.selected_rows() if not row.deployable]
    summaries = pooled.summarize_predictions(records, samples, seed, unranked)
    final = plan.study.final_model
    if not plan.study.external:
        return Outcome(payloads.PooledPayload(summaries, final))
    shift = shift_result(plan, job)
    by_model = {name: pooled.summarize_external(records, samples, seed, fold,
                                                shift.external if shift else None)
                for name, fold in (("refit", pooled.EXTERNAL_FOLD),
                                   ("folds", pooled.ENSEMBLE_FOLD))}
    return Outcome(payloads.PooledPayload(summaries, final, by_model[final], by_model["refit"],
                                          by_model["folds"]))


def run_report(plan, job):
    return Outcome(payloads.ReportPayload(write_report(plan.run_dir)))


def runner(kind):
    """The function that runs jobs of ``kind`` (its registry entry's ``module:function``)."""
    module, name = kinds.get(kind).runner.split(":")
    return getattr(importlib.import_module(module), name)


# The jobs every row is built from: without them even the summary jobs have nothing to use.
DATA_JOBS = (job_id("data"), job_id("shards"))


def _failed_input(plan, job):
    """The first input that did not end ok, as (status, note), or None. The summary kinds use
    what there is, but not without the data jobs."""
    summary = kinds.get(job.kind).summary
    for input_id in job.inputs:
        if summary and input_id not in DATA_JOBS:
            continue
        result = read_result(plan.run_dir, input_id)
        if result is None or not result.ok:
            status = SKIPPED if result is not None and result.status == SKIPPED else FAILED
            return status, result.note if result else f"{input_id} did not finish"
    return None


def missing_checkpoint_note(plan, job):
    """A skipped row's reason and fix: which checkpoint, where it goes, the command that puts
    it there (the report adds how to resume)."""
    model = row_of(job).model if job.row_id else ""
    if not model:
        return "no ImageNet checkpoint (see the log)"
    path, _ = default_checkpoint_path(get_network(model), plan.study.checkpoint_dir)
    return (f"no {model} ImageNet checkpoint at {path}; get it there with: "
            f"{fetch_command(model)} --checkpoint_dir={plan.study.checkpoint_dir} (or run "
            "with --allow_random_init)")


def _run_body(plan, job):
    """-> (status, note, Outcome)."""
    blocked = _failed_input(plan, job)
    if blocked:
        return blocked[0], blocked[1], Outcome()
    try:
        return OK, "", runner(job.kind)(plan, job)
    except MissingCheckpointError as error:
        logging.warning("%s skipped: %s", job.id, error)
        return SKIPPED, missing_checkpoint_note(plan, job), Outcome()
    except FlagValueError as error:  # the user's value, said in one line (by the study too)
        logging.info("%s failed: %s", job.id, error)
        logging.debug("%s failed:\n%s", job.id, traceback.format_exc())
        return FAILED, f"{type(error).__name__}: {error}", Outcome()
    except Exception as error:  # one failing job must not lose the others
        logging.error("%s failed:\n%s", job.id, traceback.format_exc())
        return FAILED, f"{type(error).__name__}: {error}", Outcome()


def cpu_seconds():
    """CPU seconds (user and system) of this process and of its waited-for children so far."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_job(plan, job, worker=None):
    """Runs ``job`` here and commits its result; -> JobResult. ``worker``: where it runs, as
    the executor knows it (default: this host and process)."""
    started, cpu_started = time.monotonic(), cpu_seconds()
    status, note, outcome = _run_body(plan, job)
    worker = dict(worker or this_worker(), tensorflow_gpus=tensorflow_gpus())
    result = JobResult(job.id, job.kind, status, time.monotonic() - started, time.time(),
                       job_fingerprint(plan, job), note, outcome.payload, worker,
                       cpu_seconds() - cpu_started)
    write_result(plan.run_dir, result, outcome.records)
    return result
