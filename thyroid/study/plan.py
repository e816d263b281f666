"""The study planned once as a list of jobs, saved in ``<run>/plan.json``, then executed.

A job (``study.jobspec.Job``) names its kind (``study.kinds``), the stage its time is reported
under, the jobs whose results it needs and, for the row jobs, the row, repeat and fold. Jobs
are listed so that every job comes after its inputs, and the jobs of one stage are contiguous;
any executor, or jobs run by hand (``study.one_job``), may run them in another order that
respects the inputs. Where each job writes is listed in ``study.kinds``; every job's result is
``<run>/jobs/<job id>/result.json`` (``study.results``).
"""

import dataclasses
import datetime
import os
import platform
import time

from thyroid.io_utils import atomic_write_json, read_json
from thyroid.study import data_record, kinds, payloads
from thyroid.study.config import StudyConfig
from thyroid.study.jobspec import Job, job_id
from thyroid.study.kinds import plan_jobs
from thyroid.study.rows import get_row

__all__ = ["Job", "Plan", "make_plan", "plan_jobs"]

PLAN_FILE = "plan.json"
# 2: jobs saved by their typed fields (kind, row, repeat, fold, variant), ids rebuilt from them.
PLAN_FORMAT = 2
# The jobs every external figure comes from (one of each in a run with external sets).
EXTERNAL_JOBS = (job_id("external_shards"), job_id("external_check"))


class PlanError(ValueError):
    """plan.json cannot be used: one line naming the file and why."""


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

    @property
    def cross_validated(self):
        """The run's protocol (``StudyConfig.cross_validated``): folds, or one split."""
        return self.study.cross_validated

    def job(self, job_id):
        for job in self.jobs:
            if job.id == job_id:
                return job
        raise KeyError(f"no job {job_id} in the plan of {self.run_dir}")

    def save(self):
        atomic_write_json(os.path.join(self.run_dir, PLAN_FILE), {
            "format": PLAN_FORMAT, "study": self.study.to_json(), "started": self.started,
            "date": self.date, "machine": self.machine,
            "jobs": [job.to_json() for job in self.jobs],
            "sources": None if self.sources is None else data_record.to_json(self.sources)})

    @classmethod
    def load(cls, run_dir):
        """The saved plan; a PlanError naming plan.json when it is missing, unreadable, of
        another format or malformed."""
        path = os.path.join(run_dir, PLAN_FILE)
        try:
            saved = read_json(path)
        except (OSError, ValueError) as error:
            raise PlanError(f"{path}: cannot be read ({error})") from None
        if not isinstance(saved, dict) or saved.get("format") != PLAN_FORMAT:
            found = saved.get("format") if isinstance(saved, dict) else None
            raise PlanError(f"{path}: a plan of format {found}, this version reads format "
                            f"{PLAN_FORMAT}; run the study again")
        try:
            jobs = tuple(_job(job) for job in saved["jobs"])
            sources = saved.get("sources")
            return cls(os.path.abspath(run_dir), StudyConfig.from_json(saved["study"]), jobs,
                       float(saved["started"]), str(saved["date"]), str(saved["machine"]),
                       None if sources is None else data_record.from_json(sources))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise PlanError(f"{path}: not a study plan ({type(error).__name__}: {error})") \
                from None


def _job(saved):
    """One job of plan.json, its fields checked (its id is rebuilt from them)."""
    if isinstance(saved, dict):
        saved = {key: value for key, value in saved.items() if key != "id"}
    job = payloads.from_json(Job, saved, "job")
    kinds.get(job.kind)  # a kind this version knows
    return job


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


def resume_command(run_dir):
    """The command that continues the run in ``run_dir``."""
    return (f"python -m thyroid.study <the same flags> --resume "
            f"--output_dir={os.path.dirname(run_dir)} --run_name={os.path.basename(run_dir)}")


def make_plan(study, run_dir):
    """Plans the study into ``run_dir`` (absolute) and saves plan.json."""
    plan = Plan(run_dir, study, plan_jobs(study), time.time(),
                datetime.datetime.now().isoformat(timespec="seconds"), machine_description(),
                data_record.record_sources(study))
    plan.save()
    return plan


def row_of(job):
    return get_row(job.row_id)
