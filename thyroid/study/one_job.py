"""One planned job run by hand, outside any executor (``python -m thyroid.study.job``): the
state of every job of a run, the waves a batch scheduler can run one after another, and
running one job under its own lock.

A job's state: ``done`` (ended ok, with the fingerprint it would have now and its outputs
still there), ``stale`` (ended ok, but its fingerprint no longer matches or an output is gone),
``failed`` (ended failed or skipped), ``ready`` (not run, every input done or failed) or
``waiting`` (an input is not). A job run by hand commits its result exactly as an executor
would (``jobs.run_job``), so the study, ``--resume`` and the report read it the same.
"""


from thyroid.study import kinds, locks
from thyroid.study.fingerprint import job_fingerprint
from thyroid.study.results import job_dir, read_result

DONE, READY, WAITING, FAILED, STALE = "done", "ready", "waiting", "failed", "stale"
FINISHED = (DONE, FAILED)  # what a job may run after (the summary kinds use failed inputs too)


class JobRefused(locks.RunFolderError):
    """The job cannot be run now: one line naming --job and why."""


def _state(plan, job, states):
    result = read_result(plan.run_dir, job.id)
    if result is not None:
        if not result.ok:
            return FAILED
        fresh = (result.fingerprint == job_fingerprint(plan, job)
                 and kinds.outputs_present(plan, job, result))
        return DONE if fresh else STALE
    return READY if all(states[i] in FINISHED for i in job.inputs) else WAITING


def job_states(plan):
    """{job id: state} of every job, in plan order (inputs first)."""
    states = {}
    for job in plan.jobs:
        states[job.id] = _state(plan, job, states)
    return states


def waves(plan):
    """{job id: wave}: 0 for a job without inputs, else one more than its latest input's; the
    jobs of a wave need only jobs of earlier waves."""
    wave = {}
    for job in plan.jobs:
        wave[job.id] = 1 + max((wave[i] for i in job.inputs), default=-1)
    return wave


def _check_runnable(plan, job, force):
    states = job_states(plan)
    if states[job.id] == DONE and not force:
        raise JobRefused("job", job.id, "already done (its result is committed and current); "
                                        "add --force to run it again")
    unfinished = [f"{i} ({states[i]})" for i in job.inputs if states[i] not in FINISHED]
    if unfinished:
        raise JobRefused("job", job.id, f"its inputs are not committed: {', '.join(unfinished)}")


def run_by_hand(plan, job, force=False, resources=None):
    """Runs ``job`` here under the run's shared lock and its own, once its inputs are
    committed; -> its JobResult (committed, whatever its status)."""
    with locks.study_lock(plan.run_dir, shared=True, flag="run", value=plan.run_dir):
        with locks.job_lock(job_dir(plan.run_dir, job.id), job.id):
            _check_runnable(plan, job, force)
            from thyroid.study import jobs  # TensorFlow loads here, once the job may run
            from thyroid.study.resources import configure_tensorflow
            if resources is not None:
                configure_tensorflow(resources)
            return jobs.run_job(plan, job)
