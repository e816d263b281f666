"""The study planned once as a list of jobs, saved in ``<run>/plan.json``, then executed.

A job names its kind, the stage its time is reported under, the jobs whose results it needs
and, for the row jobs, the row, repeat and fold. Jobs are listed so that every job comes after
its inputs, and the jobs of one stage are contiguous; any executor may run them in another
order that respects the inputs. Where each job writes:

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
- ``folds-<row>``: the fold ensemble (repeat 0's fold models) scores the external set
- ``variant-<name>`` (``--crop_variants``): <run>/variants/<name>, the labelled images cut with
  another crop (``study.robustness``); ``robustness-<row>``: the row's folds scored on them,
  in its result
- ``segment`` (row 12 with an export): <run>/train/segment, the segmentation network on every
  outlined image, exported beside the classifier
- ``pooled``: the pooled out-of-fold (and external) statistics, in its result
- ``export``: <run>/mobile; ``report``: summary.* in <run>
Every job's result is ``<run>/jobs/<job id>/result.json`` (``study.results``).
"""

import dataclasses
import datetime
import os
import platform
import time

from thyroid.io_utils import atomic_write_json, read_json
from thyroid.study import data_record
from thyroid.study.config import StudyConfig
from thyroid.study.rows import MOBILE_MODELS, get_row, is_localisation

PLAN_FILE = "plan.json"
# Where the jobs write inside the run folder (see above).
SHARDS_DIR, EXTERNAL_DIR, TRAIN_DIR, MOBILE_DIR = "shards", "external_shards", "train", "mobile"
OUTLINES_DIR, SEGMENT_DIR = "outlines", os.path.join("train", "segment")
PLAN_FORMAT = 1
# The jobs every external figure comes from (one of each in a run with external sets).
EXTERNAL_JOBS = ("external_shards", "external_check")
REPORT_STAGE = "report: pooled metrics and bootstrap"


@dataclasses.dataclass(frozen=True)
class Job:
    id: str
    kind: str
    stage: str
    inputs: tuple = ()
    row_id: int | None = None
    repeat: int | None = None
    fold: int | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
    """The study's settings and its jobs; ``started``, ``date`` and ``machine`` describe the
    run for the report."""
    run_dir: str
    study: StudyConfig
    jobs: tuple
    started: float
    date: str
    machine: str
    # What the run was planned on (``study.data_record``), None in a plan of an earlier
    # version (such a run cannot be resumed: its data cannot be checked).
    sources: dict | None = None

    def job(self, job_id):
        for job in self.jobs:
            if job.id == job_id:
                return job
        raise KeyError(f"no job {job_id} in the plan of {self.run_dir}")

    def save(self):
        atomic_write_json(os.path.join(self.run_dir, PLAN_FILE), {
            "format": PLAN_FORMAT, "study": self.study.to_json(), "started": self.started,
            "date": self.date, "machine": self.machine,
            "jobs": [dataclasses.asdict(job) for job in self.jobs],
            "sources": None if self.sources is None else data_record.to_json(self.sources)})

    @classmethod
    def load(cls, run_dir):
        path = os.path.join(run_dir, PLAN_FILE)
        saved = read_json(path)
        if saved.get("format") != PLAN_FORMAT:
            raise ValueError(f"{path}: a plan of another format; run the study again")
        jobs = tuple(Job(**dict(job, inputs=tuple(job["inputs"]))) for job in saved["jobs"])
        sources = saved.get("sources")
        if sources is not None:
            sources = data_record.from_json(sources)
        return cls(os.path.abspath(run_dir), StudyConfig.from_json(saved["study"]), jobs,
                   saved["started"], saved["date"], saved["machine"], sources)


def machine_description():
    """The CPU (figures hold only for their machine), its cores and the system."""
    return (f"{cpu_model()}, {platform.machine()}, {os.cpu_count()} CPU cores, "
            f"{platform.platform()}")


def cpu_model():
    """The CPU's name as /proc/cpuinfo gives it (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# The stages of one row's jobs: its folds (features and fits), its refit, its fold ensemble.
ROW_STAGE_PARTS = ("folds", "refit", "fold ensemble")


def row_stage(row_id, part):
    """The stage a row's jobs of ``part`` (one of ``ROW_STAGE_PARTS``) are timed under."""
    return f"row {row_id}: {part}"


def resume_command(run_dir):
    """The command that continues the run in ``run_dir``."""
    return (f"python -m thyroid.study <the same flags> --resume "
            f"--output_dir={os.path.dirname(run_dir)} --run_name={os.path.basename(run_dir)}")


def _row_jobs(study, row, base):
    """The fit jobs of one row (and its features job when it trains on frozen features)."""
    stage = row_stage(row.id, "folds")
    jobs = []
    if row.mode != "scratch":  # the job finds out whether the row reads frozen features
        jobs.append(Job(f"features-{row.id}", "features", stage, base, row.id))
        base = base + (jobs[-1].id,)
    if not study.num_folds:
        return jobs + [Job(f"fit-{row.id}", "fit", stage, base, row.id)]
    for repeat in range(study.cv_repeats):
        for fold in range(study.num_folds):
            jobs.append(Job(f"fit-{row.id}-r{repeat}-f{fold}", "fit", stage, base, row.id,
                            repeat, fold))
    return jobs


def _export_candidates(study):
    return [row for row in study.selected_rows() if row.mode == "finetune"
            and row.model in MOBILE_MODELS]


def _refit_rows(study):
    """Rows refitted on all development data: every row for an external set (which both the
    refit and the fold ensemble score), else the rows the export may choose when it exports
    a refit."""
    if not study.num_folds:
        return []
    if study.external:  # the localisation rows have no outline set of an external set
        return _external_rows(study)
    if study.export and study.final_model == "refit":
        return _export_candidates(study)
    return []


def _external_rows(study):
    return [row for row in study.selected_rows() if not is_localisation(row)]


def _external_jobs(study, fits):
    """The external set's check, each row's refit and fold ensemble that score it (or the
    refits the export needs)."""
    check = ("external_check",) if study.external else ()
    jobs = [Job("external_check", "external_check", "external check",
                ("shards", "external_shards"))] if check else []
    for row in _refit_rows(study):
        inputs = fits[row.id] + (("external_shards",) if study.external else ()) + check
        jobs.append(Job(f"refit-{row.id}", "refit", row_stage(row.id, "refit"), inputs,
                        row.id))
    if study.external:
        for row in _external_rows(study):
            first = tuple(job for job in fits[row.id] if "-r0-" in job)
            jobs.append(Job(f"folds-{row.id}", "ensemble", row_stage(row.id, "fold ensemble"),
                            first + ("external_shards",) + check, row.id))
    return jobs


def _robustness_jobs(study, fits):
    """The crop variants' shards, then per row its folds scored on them (not the localisation
    rows: their nodule view is built for the scan field only)."""
    if not study.crop_variants or not study.num_folds:
        return []
    variants = [Job(f"variant-{name}", "variant", "robustness: variant shards", ("data",))
                for name in study.crop_variants]
    scored = [Job(f"robustness-{row.id}", "robustness", "robustness: scoring",
                  fits[row.id] + tuple(job.id for job in variants), row.id)
              for row in study.selected_rows() if not is_localisation(row)]
    return variants + scored


def plan_jobs(study):
    """Every job of the study, each after its inputs."""
    data = Job("data", "data", "data" if study.source != "synthetic" else "synthetic data")
    jobs = [data, Job("shards", "shards", "shards", ("data",))]
    if study.external:
        jobs.append(Job("external_shards", "external_shards", "external shards"))
    jobs.append(Job("checkpoints", "checkpoints", "checkpoints"))
    if study.localises():
        jobs.append(Job("outlines", "outlines", "outlines", ("data", "shards")))
    fits = {}
    for row in study.selected_rows():
        inputs = ("shards", "checkpoints") + (("outlines",) if is_localisation(row) else ())
        row_jobs = _row_jobs(study, row, inputs)
        fits[row.id] = tuple(job.id for job in row_jobs if job.kind == "fit")
        jobs += row_jobs
    external = _external_jobs(study, fits)
    jobs += external
    refits = [job for job in external if job.kind == "refit"]
    jobs += _robustness_jobs(study, fits)
    if study.num_folds:
        jobs.append(Job("pooled", "pooled", REPORT_STAGE,
                        tuple(job for ids in fits.values() for job in ids)
                        + tuple(job.id for job in external)))
    if study.export:
        candidates = [row.id for row in _export_candidates(study)]
        inputs = tuple(job for row_id in candidates for job in fits[row_id])
        if study.num_folds and study.final_model == "refit":
            inputs += tuple(job.id for job in refits if job.row_id in candidates)
        if candidates and study.num_folds and study.segments():
            jobs.append(Job("segment", "segment", "segmentation refit", ("outlines", "checkpoints")))
            inputs += ("segment",)
        jobs.append(Job("export", "export", "export", inputs))
    jobs.append(Job("report", "report", "report", tuple(job.id for job in jobs)))
    return tuple(jobs)


def make_plan(study, run_dir):
    """Plans the study into ``run_dir`` (absolute) and saves plan.json."""
    plan = Plan(run_dir, study, plan_jobs(study), time.time(),
                datetime.datetime.now().isoformat(timespec="seconds"), machine_description(),
                data_record.record_sources(study))
    plan.save()
    return plan


def row_of(job):
    return get_row(job.row_id)
