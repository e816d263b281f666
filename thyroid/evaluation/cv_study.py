"""The cross-validated study behind ``run_study`` (``StudyConfig.num_folds`` > 0).

Shards are built once with every labelled image; each row is cross-validated
(``evaluation.cross_validation``), pooled (``evaluation.pooled``) and, when an external
set is given, refitted on all development data and scored on it. The exported mobile
model is the refit of the fine-tuned mobile row with the best pooled AUC.
"""

import contextlib
import datetime
import os
import platform
import time
import traceback

from absl import logging

from thyroid.checkpoints.locate import MissingCheckpointError, fetch_command
from thyroid.datasets import folds
from thyroid.evaluation import cross_validation, pooled, report
from thyroid.evaluation.study import (MOBILE_MODELS, prepare_checkpoints, prepare_data,
                                      row_config, selected_rows)
from thyroid.io_utils import atomic_write_json


@contextlib.contextmanager
def timed(stages, name):
    """Appends (name, seconds taken by the block) to ``stages``."""
    started = time.monotonic()
    try:
        yield
    finally:
        stages.append((name, time.monotonic() - started))
        logging.info("stage %s: %.1fs", name, stages[-1][1])


def row_train_root(run_dir, row):
    row_id, model, mode, _ = row
    return os.path.join(run_dir, "train", f"{row_id:02d}_{model}_{mode}")


def cross_validate(study, row, dataset_dir, assignment, run_dir):
    """One row over every fold; -> (report entry, out-of-fold records)."""
    row_id, model, mode, label = row
    entry = {"row_id": row_id, "model": model, "mode": mode, "label": label, "status": "ok",
             "checkpoint": None, "note": "", "train_seconds": None}
    config = row_config(study, model, mode, dataset_dir).replace(
        fold_file=os.path.join(dataset_dir, folds.FOLDS_NAME))
    try:
        results = cross_validation.cross_validate_row(config, row_id, assignment,
                                                      row_train_root(run_dir, row),
                                                      study.operating_point)
    except MissingCheckpointError as error:
        logging.warning("row %d skipped: %s", row_id, error)
        entry.update(status="skipped", note=f"no ImageNet checkpoint; run `{fetch_command(model)}` "
                     "(or ./run_all.sh --allow_random_init)")
        return entry, []
    except Exception as error:  # one failing row must not lose the others
        logging.error("row %d failed:\n%s", row_id, traceback.format_exc())
        entry.update(status="failed", note=f"{type(error).__name__}: {error}")
        return entry, []
    entry.update(checkpoint=results[0].checkpoint, config=config, fold_results=results,
                 train_seconds=sum(r.seconds for r in results),
                 folds=cross_validation.fold_summary(results))
    return entry, [record for result in results for record in result.records]


def refit(entry, run_dir):
    """Refits an evaluated row on all development data (once); -> its train_dir or None."""
    if entry.get("refit_dir"):
        return entry["refit_dir"]
    train_dir = os.path.join(row_train_root(run_dir, (entry["row_id"], entry["model"],
                                                      entry["mode"], None)), "refit")
    started = time.monotonic()
    try:
        cross_validation.refit_row(entry["config"], entry["fold_results"], train_dir)
    except Exception as error:
        logging.error("refit of row %d failed:\n%s", entry["row_id"], traceback.format_exc())
        entry["note"] = f"refit failed: {type(error).__name__}: {error}"
        return None
    entry["refit_dir"] = train_dir
    entry["refit_seconds"] = time.monotonic() - started
    return train_dir


def score_external(entries, run_dir, external_dir):
    """Refits every evaluated row and predicts the external shards; -> records."""
    records = []
    for entry in entries:
        if entry["status"] == "ok" and refit(entry, run_dir):
            records += cross_validation.external_records(entry["row_id"], entry["refit_dir"],
                                                         external_dir)
    return records


def export_candidate(entries, summaries):
    """The fine-tuned mobile row with the best pooled AUC, or None."""
    candidates = [e for e in entries if e["status"] == "ok" and e["mode"] == "finetune"
                  and e["model"] in MOBILE_MODELS and e["row_id"] in summaries]
    if not candidates:
        logging.info("no fine-tuned mobile model to export")
        return None
    return max(candidates, key=lambda e: summaries[e["row_id"]]["auc"] or 0.0)


def export_mobile(best, train_dir, run_dir):
    """Exports ``train_dir``, the refit of the row entry ``best``, to <run_dir>/mobile."""
    from thyroid.deploy.export import export_model  # TFLite conversion is only needed here
    output_dir = os.path.join(run_dir, "mobile")
    try:
        export_model(train_dir, output_dir, quantize="none")
    except Exception:  # the study's table is worth keeping even if export fails
        logging.error("export failed:\n%s", traceback.format_exc())
        return None
    return (f"{best['label']} (row {best['row_id']}), refitted on all development data -> "
            f"{os.path.join(output_dir, 'model.tflite')}")


def run_cv_study(study, run_dir, started):
    """Cross-validated study into ``run_dir``; returns the summary's path."""
    stages = []
    with timed(stages, "data" if study.ddti_dir or study.local_dir else "synthetic data"):
        ddti_dir, local_dir, data_description = prepare_data(study, run_dir)
    dataset_dir = os.path.join(run_dir, "shards")
    with timed(stages, "shards"):
        manifest, assignment = cross_validation.build_development_shards(
            ddti_dir, local_dir, dataset_dir, study.augment_copies, study.seed, study.num_folds,
            study.cv_repeats)
    external_dir = external_assignment = None
    if study.external_sources:
        external_dir = os.path.join(run_dir, "external_shards")
        with timed(stages, "external shards"):
            cross_validation.build_external_shards(study.external_sources, external_dir,
                                                   study.seed)
        external_assignment = external_counts(external_dir)
    study_rows = selected_rows(study)
    with timed(stages, "checkpoints"):
        prepare_checkpoints(study.checkpoint_dir, sorted({row[1] for row in study_rows}),
                            study.download_checkpoints)
    entries, records = [], []
    for row in study_rows:
        logging.info("=== row %d: %s (%d folds x %d repeats) ===", row[0], row[3],
                     assignment["num_folds"], assignment["num_repeats"])
        with timed(stages, f"row {row[0]}: folds"):
            entry, row_records = cross_validate(study, row, dataset_dir, assignment, run_dir)
        entries.append(entry)
        records += row_records
    if external_dir:
        records += score_external(entries, run_dir, external_dir)
    with timed(stages, "report: pooled metrics and bootstrap"):
        num_bootstrap = 200 if study.quick else 1000
        summaries = pooled.summarize_predictions(records, num_bootstrap, study.seed)
        external = pooled.summarize_external(records, num_bootstrap, study.seed) \
            if external_dir else None
    best = export_candidate(entries, summaries) if study.export else None
    refit_dir = refit(best, run_dir) if best else None
    stages += [(f"row {e['row_id']}: refit", e["refit_seconds"]) for e in entries
               if e.get("refit_seconds") is not None]
    mobile = None
    if refit_dir:
        with timed(stages, "export"):
            mobile = export_mobile(best, refit_dir, run_dir)
    atomic_write_json(os.path.join(run_dir, "folds_by_row.json"),
                      {str(e["row_id"]): e.get("folds", []) for e in entries})
    run_info = {
        "run_name": os.path.basename(run_dir), "protocol": "patient (cross-validated)",
        "quick": study.quick, "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}",
        "fold assignment": os.path.join(dataset_dir, folds.FOLDS_NAME),
        "build seconds": manifest.get("build_seconds"),
        "total_seconds": time.monotonic() - started,
        "mobile_model": mobile or "not exported (no fine-tuned mobile model in this run)",
        "stages": stages,
    }
    design = {"data": data_description, "assignment": assignment,
              "augment_copies": study.augment_copies, "operating_point": study.operating_point,
              "eval_every_n_steps": row_config(study, "small_cnn", "scratch", "").eval_every_n_steps,
              "external": ", ".join(f"{k} {p}" for k, p in study.external_sources.items()) or None,
              "external_assignment": external_assignment}
    report.write_cv_report(run_dir, [strip(e) for e in entries], records, summaries, external,
                           run_info, design)
    logging.info("study finished in %.0fs; by stage: %s", time.monotonic() - started,
                 ", ".join(f"{name} {seconds:.1f}s" for name, seconds in stages))
    return os.path.join(run_dir, report.SUMMARY_MD)


def external_counts(external_dir):
    """{patient_ids, labels} of the external shards, for the design section's counts."""
    from thyroid.datasets import shards
    data = shards.load_split(external_dir, cross_validation.SPLIT, decode=False)
    return {"patient_ids": data.patient_ids.tolist(), "labels": data.labels.tolist()}


def strip(entry):
    """The report's view of an entry (no configs or fold objects)."""
    return {k: v for k, v in entry.items() if k not in ("config", "fold_results")}
