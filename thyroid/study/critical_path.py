"""How much a plan can gain from more workers: its critical path (the longest chain of jobs,
each waiting for its inputs) and the speed-up bound that follows on N workers, from the jobs'
own measured times."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class CriticalPath:
    jobs: tuple          # job ids along the longest chain, first to last
    seconds: float       # its length: no number of workers can finish sooner
    total_seconds: float  # every job's time together: one worker's wall time

    def wall_bound(self, workers):
        """The shortest wall time N workers could reach (ignoring start-up and transfers)."""
        return max(self.seconds, self.total_seconds / max(workers, 1))

    def speedup(self, workers):
        bound = self.wall_bound(workers)
        return self.total_seconds / bound if bound > 0 else 1.0


def critical_path(plan, seconds_of):
    """``seconds_of``: {job id: seconds}. Jobs are in plan order (inputs first)."""
    finish, before = {}, {}
    for job in plan.jobs:
        ready, previous = 0.0, None
        for job_id in job.inputs:
            if finish.get(job_id, 0.0) > ready:
                ready, previous = finish[job_id], job_id
        finish[job.id] = ready + seconds_of.get(job.id, 0.0)
        before[job.id] = previous
    if not finish:
        return CriticalPath((), 0.0, 0.0)
    last = max(finish, key=finish.get)
    chain = []
    while last is not None:
        chain.append(last)
        last = before[last]
    return CriticalPath(tuple(reversed(chain)), max(finish.values()),
                        sum(seconds_of.get(job.id, 0.0) for job in plan.jobs))
