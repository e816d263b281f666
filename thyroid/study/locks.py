"""Who may work in a run folder at once (``flock`` locks, released when the process ends).

- A study (``python -m thyroid.study``) holds ``<run>/study.lock`` exclusively for its whole
  run: a second study, a job run by hand and ``--report_only`` are refused while it runs.
- A job run by hand (``python -m thyroid.study.job``) holds ``study.lock`` shared, so that many
  jobs of one run may run at once (an array of a batch scheduler) while no study does, and
  ``<run>/jobs/<job id>/job.lock`` exclusively: one job is never run twice at once.
- ``--report_only`` holds ``study.lock`` shared and is refused while any job holds its lock.

The locks are advisory and as good as the filesystem's ``flock``: on a cluster, the run
folder's filesystem must support it across machines for them to hold there.
"""

import contextlib
import fcntl
import os

from thyroid.output_guard import OutputError

STUDY_LOCK = "study.lock"
JOB_LOCK = "job.lock"


class RunFolderError(OutputError):
    """The run folder cannot be used as asked (taken, busy, or of other settings)."""


def _try_lock(path, shared):
    """An open file holding the lock, or None when another process holds a conflicting one."""
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


@contextlib.contextmanager
def study_lock(run_dir, shared=False, flag="run_name", value=None):
    """Holds the run folder's lock (exclusive for a study, shared for a job or a report);
    a ``RunFolderError`` on ``flag`` when a conflicting holder runs."""
    handle = _try_lock(os.path.join(run_dir, STUDY_LOCK), shared)
    if handle is None:
        who = "a running study" if shared else "a running study or job"
        raise RunFolderError(flag, value or os.path.basename(run_dir),
                             f"{run_dir} is in use by {who}")
    with handle:
        yield


@contextlib.contextmanager
def job_lock(job_dir, job_id):
    """Holds one job's lock; a ``RunFolderError`` on ``--job`` when it is running already."""
    os.makedirs(job_dir, exist_ok=True)
    handle = _try_lock(os.path.join(job_dir, JOB_LOCK), shared=False)
    if handle is None:
        raise RunFolderError("job", job_id, "this job is running already")
    with handle:
        yield


def running(job_dirs):
    """The ones of ``{job id: its folder}`` whose job lock is held now."""
    busy = []
    for job_id, folder in job_dirs.items():
        path = os.path.join(folder, JOB_LOCK)
        if not os.path.exists(path):
            continue
        handle = _try_lock(path, shared=True)
        if handle is None:
            busy.append(job_id)
        else:
            handle.close()
    return busy
