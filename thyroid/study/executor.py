"""Executors run a plan's jobs; this one runs them in order, in this process (the default).

What every executor shares lives here too: which jobs a resumed run may skip, the
``stage <name>: <seconds>s`` lines (benchmarks and outside checks read exactly this form) and
the study-level progress line.
"""

import dataclasses
import sys
import time

from absl import logging

from thyroid.study import kinds
from thyroid.study.fingerprint import job_fingerprint
from thyroid.study.results import FAILED, read_result


def committed(plan, job, run_again=()):
    """The job's result when it ended ok with the fingerprint the job has now and none of its
    inputs is in ``run_again`` (the jobs this resume runs, not reuses), else None. An input
    that had not ended ok keeps its fingerprint when it runs again, so without that check the
    pooled figures and the report would keep leaving out a row whose missing checkpoint was
    put in place before resuming."""
    if any(job_id in run_again for job_id in job.inputs):
        return None
    result = read_result(plan.run_dir, job.id)
    if (result is not None and result.ok and result.fingerprint == job_fingerprint(plan, job)
            and kinds.outputs_present(plan, job, result)):
        return result
    return None


@dataclasses.dataclass
class StudyProgress:
    """Done / running / failed / total jobs and the time left, as jobs finish."""
    total: int
    done: int = 0
    failed: int = 0
    running: int = 0
    reused: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)

    def finished(self, result, reused=False):
        self.done += 1
        self.reused += int(reused)
        self.failed += int(result.status == FAILED)
        logging.info("%s", self.line())
        if sys.stdout.isatty():
            print(f"\r{self.bar()} {self.line()}", end="\n" if self.done == self.total else "",
                  flush=True)

    def bar(self, width=30):
        filled = int(width * self.done / max(self.total, 1))
        return "[" + "#" * filled + "." * (width - filled) + "]"

    def line(self):
        elapsed = time.monotonic() - self.started
        ran = self.done - self.reused
        left = (self.total - self.done) * elapsed / ran if ran else float("nan")
        eta = "?" if left != left else f"~{left:.0f}s left"
        return (f"jobs: {self.done}/{self.total} done, {self.running} running, "
                f"{self.failed} failed ({self.reused} reused); {elapsed:.0f}s elapsed, {eta}")


class StageClock:
    """Sums the jobs' own times per stage and logs a stage once its last job has finished."""

    def __init__(self, plan):
        self.remaining = {}
        for job in plan.jobs:
            self.remaining[job.stage] = self.remaining.get(job.stage, 0) + 1
        self.seconds = dict.fromkeys(self.remaining, 0.0)

    def finished(self, job, result):
        self.seconds[job.stage] += result.seconds
        self.remaining[job.stage] -= 1
        if not self.remaining[job.stage]:
            logging.info("stage %s: %.1fs", job.stage, self.seconds[job.stage])


class LocalExecutor:
    """Runs the jobs one after another in this process, in plan order, each with the given
    ``JobResources`` (threads)."""

    name = "local"

    def __init__(self, resources=None):
        self.resources = resources

    def start(self):
        """Nothing to start: the jobs run in this process."""

    def stop(self):
        """Nothing to stop."""

    def run(self, plan, resume=False):
        """-> {job id: JobResult}."""
        from thyroid.study import jobs  # TensorFlow loads with the first job, not before
        from thyroid.study.resources import configure_tensorflow
        if self.resources is not None:
            configure_tensorflow(self.resources)
        progress, clock, results = StudyProgress(len(plan.jobs)), StageClock(plan), {}
        run_again = set()
        for job in plan.jobs:
            reused = committed(plan, job, run_again) if resume else None
            if reused is None:
                run_again.add(job.id)
            progress.running = 0 if reused else 1
            result = reused or jobs.run_job(plan, job)
            progress.running = 0
            results[job.id] = result
            clock.finished(job, result)
            progress.finished(result, reused=reused is not None)
        return results
