"""Runs the plan's jobs as Ray tasks, across the cores, GPUs and machines of a Ray cluster.

Each job is one task; the jobs it needs are passed to it as Ray object references, so Ray
starts it once they have finished (shards before features before fits before refits). A task
runs ``jobs.run_job`` in a Ray worker: the job reads its inputs' result files and commits its
own, exactly as under the local executor, so a run folder looks the same whichever executor
wrote it (on a multi-node cluster it must be on a filesystem every node mounts; checked at
start).

A task whose worker dies is retried (``max_retries``); when it is lost for good, the jobs that
need it cannot start (Ray passes the loss on to them) and are recorded failed with the reason.
The jobs that summarise (pooled statistics, export, report) take one ``settled`` reference
instead of their inputs': a small task that waits until every input has finished or failed,
so one lost fit costs its row, not the report.

Without ``address`` (or ``RAY_ADDRESS``) Ray starts on this machine for the study and stops
at its end: listening on loopback only, no dashboard, no usage statistics, a small object
store (results are small JSON; data goes through the run folder). Joining and starting are in
``ray_connect``.
"""

import dataclasses
import importlib.metadata
import os
import time

from absl import logging

import thyroid
from thyroid.flag_errors import FlagValueError
from thyroid.study import kinds
from thyroid.study.executor import StageClock, StudyProgress, committed
from thyroid.study.ray_connect import cluster_address, import_ray, join
from thyroid.study.results import FAILED, JobResult, write_result

OBJECT_STORE_BYTES = 100 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class RayOptions:
    address: str | None = None
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    max_retries: int = 2


def versions():
    """The versions a node must share with the driver."""
    found = {"thyroid": thyroid.__version__}
    for package in ("tensorflow", "ray"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def _probe(run_dir):
    """Runs on one node: its versions and whether it sees the run folder."""
    import socket
    return {"host": socket.gethostname(), "versions": versions(),
            "sees_run_dir": os.path.isfile(os.path.join(run_dir, "plan.json"))}


def _run_task(run_dir, job_id, resources, *inputs):
    """One job in a Ray worker; -> its JobResult as result.json holds it."""
    del inputs  # finished before this task started; their results are in the run folder
    from thyroid.study import jobs
    from thyroid.study.plan import Plan
    from thyroid.study.resources import configure_tensorflow
    import ray
    from thyroid.study.results import this_worker
    configure_tensorflow(resources)
    plan = Plan.load(run_dir)
    worker = dict(this_worker(), node=ray.get_runtime_context().get_node_id())
    return jobs.run_job(plan, plan.job(job_id), worker).to_json()


def lost_result(job, error):
    """The failed result of a job whose task (or an input's) was lost for good."""
    return JobResult(job.id, job.kind, FAILED, 0.0, time.time(), "",
                     f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                     f" (its Ray task was lost; rerun with --resume)")


def _settle(run_dir, job_ids, refs):
    """Waits until every ref has finished or failed; records the failed ones; -> job ids."""
    import ray
    from thyroid.study.plan import Plan
    plan = Plan.load(run_dir)
    ray.wait(list(refs), num_returns=len(refs))
    for job_id, ref in zip(job_ids, refs):
        try:
            ray.get(ref)
        except Exception as error:  # a lost worker, or a lost input of this job
            write_result(run_dir, lost_result(plan.job(job_id), error))
    return list(job_ids)


class RayExecutor:
    """Submits every job as a Ray task and follows them to the end."""

    name = "ray"

    def __init__(self, options):
        self.options = options

    def start(self):
        """Joins or starts Ray and checks its resources, before any run folder is made."""
        address = cluster_address(self.options.address)
        self.ray = import_ray(address, start_here=address is None)
        self.started_here = self._connect(self.ray, address)
        try:
            check_resources(self.ray, self.options)
        except BaseException:
            self.stop()
            raise

    def stop(self):
        if getattr(self, "started_here", False):
            self.ray.shutdown()
            self.started_here = False

    def run(self, plan, resume=False):
        """-> {job id: JobResult}."""
        ray = self.ray
        _check_nodes(ray, plan, [node for node in ray.nodes() if node.get("Alive")])
        submitted = self._submit(ray, plan, resume)
        try:
            return self._follow(ray, plan, submitted)
        except KeyboardInterrupt:
            for ref, _ in submitted.values():
                if ref is not None:
                    ray.cancel(ref, force=True)
            raise

    def _connect(self, ray, address):
        """Joins the cluster at ``address``, or starts Ray here; -> started here."""
        if address is not None:
            join(ray, address)
            return False
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                 object_store_memory=OBJECT_STORE_BYTES, _node_ip_address="127.0.0.1",
                 logging_level="warning")
        return True

    def _submit(self, ray, plan, resume):
        """{job id: (ref or None, committed JobResult or None)} in plan order."""
        from thyroid.study.resources import JobResources
        options = self.options
        run_task = ray.remote(_run_task)
        tasks = {gpus: run_task.options(num_cpus=options.cpus_per_job, num_gpus=gpus,
                                        max_retries=options.max_retries)
                 for gpus in {0.0, options.gpus_per_job}}
        settle = ray.remote(_settle).options(num_cpus=0)
        submitted, run_again = {}, set()
        for job in plan.jobs:
            reused = committed(plan, job, run_again) if resume else None
            if reused is not None:
                submitted[job.id] = (None, reused)
                continue
            run_again.add(job.id)
            refs = [submitted[i][0] for i in job.inputs if submitted[i][0] is not None]
            kind = kinds.get(job.kind)
            if kind.summary and refs:  # uses what its inputs left, failed or not
                ids = [i for i in job.inputs if submitted[i][0] is not None]
                refs = [settle.remote(plan.run_dir, ids, refs)]
            # only the kinds that run a network hold a GPU a fit could use
            gpus = options.gpus_per_job if kind.gpu else 0.0
            resources = JobResources(options.cpus_per_job, gpus)
            submitted[job.id] = (tasks[gpus].remote(plan.run_dir, job.id, resources, *refs), None)
        return submitted

    def _follow(self, ray, plan, submitted):
        """Waits for every task, logging stages and progress; -> {job id: JobResult}."""
        progress, clock, results = StudyProgress(len(plan.jobs)), StageClock(plan), {}
        pending = {}
        for job in plan.jobs:
            ref, reused = submitted[job.id]
            if reused is not None:
                results[job.id] = reused
                clock.finished(job, reused)
                progress.finished(reused, reused=True)
            else:
                pending[ref] = job
        while pending:
            progress.running = len(pending)
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            try:
                result = JobResult.from_json(ray.get(done[0]))
            except Exception as error:  # lost after its retries, or an input was
                result = lost_result(job, error)
                write_result(plan.run_dir, result)
                logging.error("job %s: %s", job.id, result.note)
            results[job.id] = result
            progress.running = len(pending)
            clock.finished(job, result)
            progress.finished(result)
        return results


def check_resources(ray, options):
    """Stops at start, in one line, when the cluster cannot run the study as asked."""
    total = ray.cluster_resources()
    if options.gpus_per_job > 0 and total.get("GPU", 0) <= 0:
        raise FlagValueError("gpus_per_job", options.gpus_per_job,
                             "no node of the Ray cluster offers a GPU")
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    biggest = max((node["Resources"].get("CPU", 0) for node in nodes), default=0)
    if options.cpus_per_job > biggest:
        raise FlagValueError("cpus_per_job", options.cpus_per_job,
                             f"no node of the Ray cluster has that many CPUs (at most {biggest:g})")


def _check_nodes(ray, plan, nodes):
    """Every node sees the run folder (one line naming the first that does not); nodes whose
    versions differ from the driver's are reported in one line."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    probe = ray.remote(_probe)
    found = ray.get([probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
        node["NodeID"], soft=False)).remote(plan.run_dir) for node in nodes])
    mine = versions()
    differing = [f"{item['host']} ({', '.join(f'{k} {v}' for k, v in item['versions'].items())})"
                 for item in found if item["versions"] != mine]
    if differing:
        logging.warning("Ray nodes with other versions than this one (%s): %s",
                        ", ".join(f"{k} {v}" for k, v in mine.items()), "; ".join(differing))
    blind = [item["host"] for item in found if not item["sees_run_dir"]]
    if blind:
        raise FlagValueError("output_dir", os.path.dirname(plan.run_dir), (
            f"node {blind[0]} cannot see the run folder {plan.run_dir}; on a cluster the "
            "output folder must be on a filesystem every node mounts"))
