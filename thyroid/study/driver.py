"""A study from its settings to its summary: claim the run folder, plan (or load the plan of
the run being resumed), execute, return the summary's path.

Run folders are claimed atomically (``os.mkdir``) and held with a lock for the whole study
(``study.locks``), so two studies never share one, nor a study and jobs run by hand: a second
study with the same explicit ``--run_name`` is refused at once, default timestamp names that
collide get a suffix, and re-running an existing run without ``--resume`` is refused with the
command that continues it. ``plan_only`` claims the folder and writes the plan alone, for the
jobs to be run by hand (``python -m thyroid.study.job``).
"""

import dataclasses
import os

from absl import logging

from thyroid.study import data_record, locks
from thyroid.study.locks import RunFolderError
from thyroid.study.executor import LocalExecutor
from thyroid.study.fingerprint import PLACE_SETTINGS
from thyroid.study.jobspec import job_id
from thyroid.study.plan import EXTERNAL_JOBS, PLAN_FILE, Plan, make_plan, resume_command
from thyroid.study.results import read_result

MAX_NAME_SUFFIX = 1000
__all__ = ["RunFolderError", "plan_only", "report_only", "run_study"]


def _settings(study):
    return {k: v for k, v in study.to_json().items() if k not in PLACE_SETTINGS}


def _finished(run_dir):
    result = read_result(run_dir, job_id("report"))
    return result is not None and result.ok


def _claim_new(study):
    """Creates a new run folder; -> its absolute path."""
    if study.run_name:
        run_dir = os.path.abspath(os.path.join(study.output_dir, study.run_name))
        try:
            os.makedirs(os.path.dirname(run_dir), exist_ok=True)
            os.mkdir(run_dir)
        except FileExistsError:
            raise RunFolderError("run_name", study.run_name, (
                f"{run_dir} already exists; add --resume to continue that run, or choose "
                "another --run_name")) from None
        return run_dir
    base = os.path.abspath(os.path.join(study.output_dir, study.default_run_name()))
    os.makedirs(os.path.dirname(base), exist_ok=True)
    for suffix in range(1, MAX_NAME_SUFFIX):
        run_dir = base if suffix == 1 else f"{base}-{suffix}"
        try:
            os.mkdir(run_dir)
            return run_dir
        except FileExistsError:
            continue
    raise RunFolderError("output_dir", study.output_dir, f"no free run name beside {base}")


def _matching_plan(run_dir, study):
    """The saved plan of ``run_dir`` when its settings are the study's, else raises."""
    try:
        plan = Plan.load(run_dir)
    except (OSError, ValueError) as error:
        raise RunFolderError("resume", "true", f"{run_dir} holds no study plan ({error})") \
            from None
    if _settings(plan.study) != _settings(study):
        differ = sorted(k for k, v in _settings(study).items()
                        if _settings(plan.study).get(k) != v)
        raise RunFolderError("resume", "true", (
            f"{run_dir} was run with other settings ({', '.join(differ)}); resume it with its "
            "own flags or start a new run"))
    return plan


def _newest_unfinished(study):
    """The newest run under --output_dir with the same settings and no report yet."""
    root = os.path.abspath(study.output_dir)
    names = os.listdir(root) if os.path.isdir(root) else []
    candidates = []
    for name in names:
        run_dir = os.path.join(root, name)
        if not os.path.isfile(os.path.join(run_dir, PLAN_FILE)) or _finished(run_dir):
            continue
        try:
            plan = Plan.load(run_dir)
        except (OSError, ValueError):
            continue
        if _settings(plan.study) == _settings(study):
            candidates.append((plan.started, run_dir))
    if not candidates:
        raise RunFolderError("resume", "true", (
            f"no unfinished run with these settings under {root}; drop --resume to start one"))
    return max(candidates)[1]


def _check_data_unchanged(run_dir, plan):
    """Refuses to resume a run whose data changed since it was planned (read only: nothing in
    the run folder is touched)."""
    if plan.sources is None:
        raise RunFolderError("resume", "true", (
            f"{run_dir} was planned by an earlier version that kept no record of its data, so "
            "its data cannot be checked; start a new run (drop --resume)"))
    changes = data_record.compare(plan.sources,
                                  data_record.record_sources(plan.study, plan.sources))
    if changes:
        raise RunFolderError("resume", "true", (
            f"the data changed since {run_dir} was planned "
            f"({'; '.join(change.phrase() for change in changes)}); its committed results "
            "were kept as they are: start a new run (drop --resume or choose another "
            "--run_name)"))


def _open_plan(study, resume):
    """-> (run_dir, plan or None): the plan of a resumed run, None for a new run."""
    if not resume:
        return _claim_new(study), None
    if study.run_name:
        run_dir = os.path.abspath(os.path.join(study.output_dir, study.run_name))
    else:
        run_dir = _newest_unfinished(study)
    plan = _matching_plan(run_dir, study)
    _check_data_unchanged(run_dir, plan)
    return run_dir, plan


class StudyError(ValueError):
    """The study cannot go on (its data could not be prepared): one line, exit 1."""


# Jobs without which no row can run: when one fails, the study says why instead of reporting
# every row failed.
ESSENTIAL_JOBS = (job_id("data"), job_id("shards"))


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: the committed jobs are kept; the message says how to continue."""




def run_study(study, executor=None, resume=False):
    """Runs (or resumes) the study; returns the summary's path."""
    executor = executor or LocalExecutor()
    executor.start()
    try:
        results, run_dir = _run_claimed(study, executor, resume)
    finally:
        executor.stop()
    for essential in ESSENTIAL_JOBS:
        if results.get(essential) is not None and not results[essential].ok:
            raise StudyError(f"{essential}: {results[essential].note}")
    report = results.get(job_id("report"))
    if report is None or not report.ok:
        raise RuntimeError(f"the study's report was not written: {report.note if report else ''}")
    failed = [f"{external}: {results[external].note}" for external in EXTERNAL_JOBS
              if results.get(external) is not None and not results[external].ok]
    if failed:
        raise StudyError(f"external validation failed ({'; '.join(failed)}); the report, which "
                         f"says so, is {report.payload.summary}")
    logging.info("study finished; summary in %s", report.payload.summary)
    return report.payload.summary


def _run_claimed(study, executor, resume):
    run_dir, plan = _open_plan(study, resume)
    with locks.study_lock(run_dir):
        logging.get_absl_handler().use_absl_log_file("study", run_dir)
        if plan is None:
            plan = make_plan(dataclasses.replace(study, run_name=os.path.basename(run_dir)),
                             run_dir)
        logging.info("study run in %s (%d jobs, %s executor)", run_dir, len(plan.jobs),
                     executor.name)
        try:
            return executor.run(plan, resume=resume), run_dir
        except KeyboardInterrupt:
            raise StudyInterrupted(f"interrupted; the jobs already committed are kept: continue "
                                   f"with `{resume_command(run_dir)}`") from None


def plan_only(study):
    """Claims a new run folder and writes its plan (plan.json: the settings and every job),
    nothing else; -> the run folder."""
    run_dir, _ = _open_plan(study, resume=False)
    with locks.study_lock(run_dir):
        make_plan(dataclasses.replace(study, run_name=os.path.basename(run_dir)), run_dir)
    return run_dir


def report_only(run_dir):
    """Writes the report of a run from its files again; -> the summary's path. Refused while a
    study runs there or a job run by hand is running."""
    from thyroid.study.assemble import write_report
    from thyroid.study.results import job_dir
    if not os.path.isfile(os.path.join(run_dir, PLAN_FILE)):
        raise RunFolderError("report_only", run_dir, "not a study run folder (no plan.json)")
    run_dir = os.path.abspath(run_dir)
    with locks.study_lock(run_dir, shared=True, flag="report_only", value=run_dir):
        plan = Plan.load(run_dir)
        busy = locks.running({job.id: job_dir(run_dir, job.id) for job in plan.jobs})
        if busy:
            raise RunFolderError("report_only", run_dir, (
                f"job {busy[0]} is running{f' (and {len(busy) - 1} more)' if busy[1:] else ''}; "
                "report once it has ended"))
        return write_report(run_dir)
