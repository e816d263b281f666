"""The report of a run, assembled only from its plan and its jobs' result files (times
included): the study's last job writes it, and ``--report_only`` writes it again, the same."""

import os

from absl import logging

from thyroid.datasets import folds
from thyroid.datasets.folders import NO_PATIENT_IDS
from thyroid.io_utils import atomic_write_json, read_json
from thyroid.study import (clinical_report, comparison_report, cv_report, data, kinds,
                           localisation_report, progressive_report, robustness,
                           single_split_report)
from thyroid.study.config import EARLY_STOPPING_PATIENCE, EVAL_EVERY_N_EPOCHS
from thyroid.study.fitting import EXTERNAL_SPLIT
from thyroid.study.html_page import SUMMARY_MD
from thyroid.study.jobspec import job_id
from thyroid.study.kinds import EXTERNAL_DIR, SHARDS_DIR
from thyroid.study.plan import EXTERNAL_JOBS, Plan
from thyroid.study.results import FAILED, OK, FoldResult, RowResult, read_records, read_result

NOT_EXPORTED = "not exported (no fine-tuned mobile model in this run)"


def _results(plan):
    """{job id: committed result or None}; a job whose outputs are gone (a deleted records
    file, say) counts as not finished, so its row is reported incomplete, never ok."""
    results = {}
    for job in plan.jobs:
        result = read_result(plan.run_dir, job.id)
        if result is not None and result.ok and not kinds.outputs_present(plan, job, result):
            logging.warning("%s: an output of its committed result is gone; counted as not "
                            "finished (run again with --resume)", job.id)
            result = None
        results[job.id] = result
    return results


def _row_status(fit_results):
    """(status, note) of a row from its fit jobs: the first that did not end ok decides."""
    for result in fit_results:
        if result is None:
            return FAILED, "did not finish (run again with --resume)"
        if result.status != OK:
            return result.status, result.note
    return OK, ""


def row_results(plan, results):
    """One RowResult per selected row, for either protocol."""
    rows = []
    for row in plan.study.selected_rows():
        fit_ids = [job.id for job in plan.jobs if job.kind == "fit" and job.row_id == row.id]
        fits = [results[fit_id] for fit_id in fit_ids]
        status, note = _row_status(fits)
        entry = RowResult(row, status, note)
        if status == OK:
            _fill_row(plan, entry, fit_ids, fits)
        refit = results.get(job_id("refit", row.id))
        if refit is not None and refit.ok:
            entry.refit_seconds = refit.seconds
        elif refit is not None and status == OK:
            entry.note = f"refit failed: {refit.note}"
        rows.append(entry)
    return rows


def _fill_row(plan, entry, fit_ids, fits):
    if plan.cross_validated:
        entry.folds = [FoldResult.from_payload(result.payload, read_records(plan.run_dir, fit_id))
                       for fit_id, result in zip(fit_ids, fits)]
        entry.checkpoint = entry.folds[0].checkpoint
        entry.train_seconds = sum(fold.seconds for fold in entry.folds)
        return
    split = fits[0].payload
    records = read_records(plan.run_dir, fit_ids[0])
    entry.metrics, entry.checkpoint = split.metrics, split.checkpoint
    entry.train_seconds = split.train_seconds
    entry.labels = [record["label"] for record in records]
    entry.probs = [record["prob"] for record in records]


def stage_times(plan, results):
    """[(stage, seconds)] in plan order: the sum of each stage's jobs' own times."""
    seconds = {}
    for job in plan.jobs:
        result = results[job.id]
        if job.kind == "report" or result is None:
            continue
        seconds[job.stage] = seconds.get(job.stage, 0.0) + result.seconds
    return list(seconds.items())


def total_seconds(plan, results):
    finished = [r.finished for one, r in results.items()
                if r is not None and one != job_id("report")]
    return max(finished) - plan.started if finished else 0.0


def mobile_text(plan, results, rows):
    export = _payload(results, job_id("export"))
    if export is None or not export.exported:
        return NOT_EXPORTED
    row = next(r for r in rows if r.row_id == export.row_id)
    how = ", refitted on all development data" if export.refit else ""
    beside = f"; segmentation network -> {export.segment}" if export.segment else ""
    return f"{row.label} (row {row.row_id}){how} -> {export.exported}{beside}"


def write_report(run_dir):
    """Writes the run's summary.md, summary.csv, plots (and predictions.csv when
    cross-validated) from its files; -> the summary.md path."""
    plan = Plan.load(run_dir)
    results = _results(plan)
    rows = row_results(plan, results)
    if plan.cross_validated:
        _write_cv_report(plan, results, rows)
    else:
        _write_single_split_report(plan, results, rows)
    return os.path.join(plan.run_dir, SUMMARY_MD)


def _run_info(plan, results, rows):
    return {"date": plan.date, "machine": plan.machine,
            "total_seconds": total_seconds(plan, results),
            "mobile_model": mobile_text(plan, results, rows)}


def _data_description(results):
    sources = _payload(results, job_id("data"))
    return sources.description if sources else ""


def _write_single_split_report(plan, results, rows):
    common = _run_info(plan, results, rows)
    run_info = {"run_name": os.path.basename(plan.run_dir),
                "data": _data_description(results), "protocol": plan.study.protocol,
                "manifest": read_json(os.path.join(plan.run_dir, SHARDS_DIR, "manifest.json")),
                "quick": plan.study.quick, **common}
    single_split_report.write_report(plan.run_dir, rows, run_info)


def _payload(results, one):
    """The typed payload of a job that ended ok, else None."""
    result = results.get(one)
    return result.payload if result is not None and result.ok else None


def _design(plan, results, pooled_payload):
    """The study design section's facts, built once from the plan and the result files."""
    study, check = plan.study, _payload(results, job_id("external_check"))
    external_assignment = None
    if study.external and _payload(results, job_id("external_shards")):
        external_assignment = data.external_counts(
            os.path.join(plan.run_dir, EXTERNAL_DIR), EXTERNAL_SPLIT,
            check.excluded_keys() if check else ())
    assignment = folds.load_folds(os.path.join(plan.run_dir, SHARDS_DIR, folds.FOLDS_NAME))
    return cv_report.StudyDesign(
        data=_data_description(results), assignment=assignment,
        augment_copies=study.augment_copies, operating_point=study.operating_point,
        eval_every_n_epochs=EVAL_EVERY_N_EPOCHS,
        early_stopping_patience=EARLY_STOPPING_PATIENCE,
        external=_external_text(study, results), ungrouped_sources=_ungrouped_sources(plan),
        external_assignment=external_assignment,
        clinical=_clinical(plan, results, assignment, pooled_payload))


def _ungrouped_sources(plan):
    """The development sources whose reader could not give patient ids (manifest notes)."""
    manifest = read_json(os.path.join(plan.run_dir, SHARDS_DIR, "manifest.json"))
    return sorted(f"{kind} {info.get('path', '')}".strip()
                  for kind, info in (manifest.get("sources") or {}).items()
                  if any(NO_PATIENT_IDS in note for note in info.get("notes") or ()))


def _external_text(study, results):
    """The external sets, and a failure of their jobs in the same line."""
    name = _external_name(study)
    failed = [f"{one}: {results[one].note if results.get(one) else 'did not finish'}"
              for one in EXTERNAL_JOBS if one in results
              and (results[one] is None or not results[one].ok)]
    return name if not failed else f"{name}; EXTERNAL VALIDATION FAILED ({'; '.join(failed)})"


def _external_name(study):
    return ", ".join(f"{k} {p}" for k, p in study.external_sources.items()) or None


def _clinical(plan, results, assignment, pooled_payload):
    """The clinical sections' facts, from the refit, check and pooled results."""
    study = plan.study
    refits = {job.row_id: _payload(results, job.id) for job in plan.jobs if job.kind == "refit"}
    by_model = {} if pooled_payload is None else {
        name: figures for name, figures in (("refit", pooled_payload.external_refit),
                                            ("folds", pooled_payload.external_folds))
        if figures}
    sources = {patient.split(":", 1)[0] for patient in assignment["patient_ids"]}
    tirads = "ddti" in sources or "ddti" in study.external_sources
    return clinical_report.ClinicalFacts(
        recalibrate=study.recalibrate, final_model=study.final_model,
        refit_maps={row_id: refit.recalibration for row_id, refit in refits.items()
                    if refit and refit.recalibration},
        external_by_model=by_model,
        external_check=_payload(results, job_id("external_check")),
        external_name=_external_name(study), tirads_labels=tirads,
        shift_problem=_shift_problem(results))


def _shift_problem(results):
    """The shift job's status and note when it was planned and did not end ok, else None."""
    one = job_id("shift")
    if one not in results or _payload(results, one) is not None:
        return None
    result = results[one]
    if result is None:
        return "the shift job did not finish"
    return f"the shift job {result.status}: {result.note}"


def _write_cv_report(plan, results, rows):
    pooled_payload = _payload(results, job_id("pooled"))
    # Only rows whose every fit is committed keep their pooled figures: a row reported
    # incomplete must not show figures over images it no longer has records for.
    complete = {row.row_id for row in rows if row.status == OK}
    summaries = {row_id: figures for row_id, figures in
                 (pooled_payload.summaries if pooled_payload else {}).items()
                 if row_id in complete}
    external = pooled_payload.external if pooled_payload else None
    if external:
        external = {row_id: figures for row_id, figures in external.items()
                    if row_id in complete}
    by_job = {job.id: read_records(plan.run_dir, job.id) for job in plan.jobs
              if job.kind in ("fit", "refit", "ensemble") and _payload(results, job.id)}
    records = [record for job_records in by_job.values() for record in job_records]
    common = _run_info(plan, results, rows)
    shards = _payload(results, job_id("shards"))
    run_info = {"run_name": os.path.basename(plan.run_dir),
                "protocol": "patient (cross-validated)", "quick": plan.study.quick,
                "date": common["date"], "machine": common["machine"],
                "fold assignment": os.path.join(plan.run_dir, SHARDS_DIR, folds.FOLDS_NAME),
                "build seconds": shards.build_seconds if shards else None,
                "total_seconds": common["total_seconds"],
                "mobile_model": common["mobile_model"],
                "stages": stage_times(plan, results)}
    atomic_write_json(os.path.join(plan.run_dir, "folds_by_row.json"),
                      {str(row.row_id): row.fold_summary() for row in rows})
    cv_report.write_cv_report(plan.run_dir, rows, records, summaries, external, run_info,
                              _design(plan, results, pooled_payload),
                              _optional_sections(plan, results, rows, summaries, records,
                                                 by_job, external))


def _optional_sections(plan, results, rows, summaries, records, by_job, external=None):
    """The localisation, robustness and comparison sections (empty when those rows and checks
    did not run); ``by_job``: the records of every finished fit, refit and ensemble job
    (``records`` all of them); ``external``: the final model's external figures."""
    fits = [job.id for job in plan.jobs if job.kind == "fit" and job.id in by_job]
    lines = localisation_report.report_lines(rows, summaries, records,
                                      [results[fit].payload for fit in fits],
                                      plan.study.num_bootstrap, plan.study.seed,
                                      [by_job[fit] for fit in fits])
    moved = {job.row_id: _payload(results, job.id) for job in plan.jobs
             if job.kind == "robustness" and _payload(results, job.id)}
    lines += robustness.report_lines(rows, moved, plan.study.crop_variants)
    shards = _payload(results, job_id("shards"))
    lines += progressive_report.report_lines(rows, summaries, records, plan.study.init_from,
                                             shards.previous_run_checked if shards else None)
    return lines + comparison_report.report_lines(plan, results, rows, summaries, external,
                                                  _payload(results, job_id("comparison")))
