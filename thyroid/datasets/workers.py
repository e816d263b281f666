"""The build's worker processes: an ordered map over a pool of spawned processes, with a
bounded number of tasks in flight.

Workers are spawned, never forked: the parent may already hold TensorFlow (the study builds
its shards in the process that trains), and a fork would copy its threads' locks in whatever
state they were. A spawned worker imports only what its function needs (``datasets.records``
loads no TensorFlow), so it starts in a fraction of a second.

Workers end with the process that started them, even one killed with SIGKILL.

Results come back in the order of the tasks, whatever the number of workers, so the caller's
output does not depend on it. At most ``window`` tasks are submitted ahead of the one the
caller waits for: results (encoded records) never pile up in the parent.
"""

import collections
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

MAX_WORKERS = 256
TASKS_IN_FLIGHT_PER_WORKER = 4
# How often a worker checks that the process that started it is still there.
PARENT_POLL_SECONDS = 0.5


class WorkerError(RuntimeError):
    """A worker process died (killed, out of memory) before finishing its task."""


def available_cores():
    """The cores this process may run on: its CPU affinity (a container's, taskset's or
    cgroup cpuset's limit), which ``os.cpu_count`` ignores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # platforms without sched_getaffinity
        return os.cpu_count() or 1


def _end_with_parent(parent_pid):
    """Runs first in every worker: a daemon thread ends the worker once the process that
    started it is gone. A worker waits for tasks on a queue whose pipe it holds both ends of,
    so it never sees its parent die; killed with SIGKILL, the parent cleans nothing up, and
    its workers would wait forever."""
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)  # no clean-up to do: the parent that wanted the results is gone

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


class Workers:
    """``with Workers(n) as workers: for result in workers.map(fn, tasks): ...``.

    One worker runs the tasks in this process (no pool to start); more use a spawned pool.
    ``fn`` must be a module-level function and tasks picklable.
    """

    def __init__(self, num_workers):
        self.num_workers = max(1, int(num_workers))
        self.window = TASKS_IN_FLIGHT_PER_WORKER * self.num_workers
        self._pool = None

    def __enter__(self):
        if self.num_workers > 1:
            self._pool = ProcessPoolExecutor(self.num_workers,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_end_with_parent,
                                             initargs=(os.getpid(),))
        return self

    def __exit__(self, exc_type, exc, traceback):
        if self._pool is not None:
            # On an error (or Ctrl-C) drop the queued tasks and do not wait for running ones.
            self._pool.shutdown(wait=exc_type is None, cancel_futures=True)
            self._pool = None
        return False

    def map(self, fn, tasks):
        """Yields ``fn(task)`` for every task, in order; a worker's exception is raised here."""
        if self._pool is None:
            yield from map(fn, tasks)
            return
        pending = collections.deque()
        try:
            for task in tasks:
                pending.append(self._pool.submit(fn, task))
                if len(pending) >= self.window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool as error:
            raise WorkerError(f"a worker process died ({error})") from error
        finally:
            for future in pending:
                future.cancel()
