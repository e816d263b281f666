"""The study's jobs on a real Ray: a local Ray started by the study, and a two-node cluster on
loopback shared by this module (1 CPU and 1 logical GPU per node). Also the local executor
killed with SIGKILL and resumed. Every study is a real ``python -m thyroid.study`` process."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from study_runs import (QUICK_REFERENCE_FLAGS, REPO, read_rows, run_study, same_predictions,
                        same_summaries, study_command)

# The test cluster listens on loopback; keep Ray from rewriting its address (read at import).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray", reason="the executor tests need Ray (pip install -e .[test])")

# Short, so that the rows of a study end in seconds; the same flags on both sides of a check.
SMALL = ("--rows=1,8,11", "--noexport")
# A lost node is noticed in about a second instead of the default 30 s.
FAST_HEALTH_CHECKS = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 300,
                      "health_check_failure_threshold": 3, "health_check_timeout_ms": 300}


def committed_jobs(run_dir):
    """{job id: (mtime_ns, bytes)} of every job whose result.json says ok."""
    found = {}
    jobs_dir = run_dir / "jobs"
    for path in sorted(jobs_dir.glob("*/result.json")) if jobs_dir.exists() else []:
        try:
            data = path.read_bytes()
            if json.loads(data)["status"] == "ok":
                found[path.parent.name] = (path.stat().st_mtime_ns, data)
        except (OSError, ValueError):
            continue
    return found


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One checkpoint folder for every study of the module (reports name its path)."""
    return tmp_path_factory.mktemp("checkpoints")


def start_study(output_dir, *flags, checkpoint_dir=None):
    """A study in the background; its output goes to <output_dir>.log (a pipe nobody reads
    would fill and stall it)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    log = open(f"{output_dir}.log", "w")
    process = subprocess.Popen(study_command(output_dir, *flags, checkpoint_dir=checkpoint_dir),
                               cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    process.log_path = log.name
    return process


def log_tail(process):
    with open(process.log_path) as f:
        return f.read()[-3000:]


def wait_for(predicate, process, timeout=600):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, log_tail(process)
        assert time.monotonic() < deadline, "timed out: " + log_tail(process)
        time.sleep(0.2)


def fits_done(run_dir, count):
    return lambda: sum(job.startswith("fit-") for job in committed_jobs(run_dir)) >= count


def test_ray_executor_on_a_local_ray_gives_the_local_predictions(quick_study, tmp_path):
    """The default --quick study under --executor=ray (Ray started here, 1 CPU per job, the
    shared local run's thread count) matches the local one."""
    _, local_dir = quick_study
    done, ray_dir = run_study(tmp_path, "--executor=ray", *QUICK_REFERENCE_FLAGS,
                              checkpoint_dir=local_dir.parent / "checkpoints")
    assert same_predictions(local_dir, ray_dir)
    assert same_summaries(local_dir, ray_dir)
    assert "ray executor" in done.stderr


def test_the_local_executor_killed_and_resumed_redoes_no_committed_job(tmp_path, checkpoints):
    _, reference = run_study(tmp_path / "uninterrupted", *SMALL, "--cpus_per_job=1",
                             checkpoint_dir=checkpoints)
    output = tmp_path / "killed"
    process = start_study(output, *SMALL, "--cpus_per_job=1", checkpoint_dir=checkpoints)
    run_dir = output / "run"
    wait_for(fits_done(run_dir, 4), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = committed_jobs(run_dir)
    assert "report" not in before and len(before) >= 4
    again = subprocess.run(study_command(output, *SMALL, "--cpus_per_job=1",
                                         checkpoint_dir=checkpoints),
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "add --resume" in again.stderr
    _, resumed = run_study(output, *SMALL, "--cpus_per_job=1", "--resume",
                           checkpoint_dir=checkpoints)
    after = committed_jobs(resumed)
    for job_id, (mtime, data) in before.items():
        assert after[job_id] == (mtime, data), job_id  # committed jobs were not run again
    assert same_predictions(reference, resumed)
    assert same_summaries(reference, resumed)


def test_sigterm_stops_the_study_saying_how_to_resume(tmp_path):
    process = start_study(tmp_path, *SMALL)
    wait_for(fits_done(tmp_path / "run", 1), process)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    assert process.returncode == 130
    assert "--resume" in log_tail(process).strip().splitlines()[-1]


def test_a_gpu_asked_of_a_ray_without_one_stops_at_start(tmp_path):
    done = subprocess.run(study_command(tmp_path, "--executor=ray", "--gpus_per_job=1"),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "--gpus_per_job=1.0: no node of the Ray cluster offers a GPU" in \
        done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes on this machine, 1 CPU and 1 logical GPU each, quick to notice a lost
    node; stopped at the end of the module."""
    from ray.cluster_utils import Cluster
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    made = Cluster(initialize_head=True, connect=False, head_node_args={
        "num_cpus": 1, "num_gpus": 1, "include_dashboard": False,
        "node_ip_address": "127.0.0.1", "_system_config": FAST_HEALTH_CHECKS})
    made.add_node(num_cpus=1, num_gpus=1, node_ip_address="127.0.0.1")
    made.wait_for_nodes()
    yield made
    made.shutdown()


def cluster_flags(cluster, *extra):
    return (*SMALL, "--executor=ray", f"--ray_address={cluster.address}", "--cpus_per_job=1",
            *extra)


def reference_and_cluster_study(cluster, tmp_path, checkpoints, fits):
    """(uninterrupted local run folder, the cluster study's output folder, its process once
    ``fits`` of its fits are committed). One thread per job on both sides."""
    _, reference = run_study(tmp_path / "local", *SMALL, "--cpus_per_job=1",
                             checkpoint_dir=checkpoints)
    output = tmp_path / "cluster"
    process = start_study(output, *cluster_flags(cluster), checkpoint_dir=checkpoints)
    wait_for(fits_done(output / "run", fits), process)
    return reference, output, process


def test_a_two_node_cluster_survives_losing_a_node(cluster, tmp_path, checkpoints):
    reference, output, process = reference_and_cluster_study(cluster, tmp_path, checkpoints, 2)
    worker = [node for node in cluster.list_all_nodes() if node is not cluster.head_node][0]
    cluster.remove_node(worker, allow_graceful=False)
    process.wait(timeout=900)
    cluster.add_node(num_cpus=1, num_gpus=1, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    assert process.returncode == 0, log_tail(process)
    assert same_predictions(reference, output / "run")
    assert same_summaries(reference, output / "run")


def test_a_driver_killed_on_a_cluster_resumes_there(cluster, tmp_path, checkpoints):
    reference, output, process = reference_and_cluster_study(cluster, tmp_path, checkpoints, 3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = committed_jobs(output / "run")
    _, resumed = run_study(output, *cluster_flags(cluster, "--resume"), checkpoint_dir=checkpoints)
    after = committed_jobs(resumed)
    assert all(after[job_id] == kept for job_id, kept in before.items())
    assert same_predictions(reference, resumed)


def test_half_a_gpu_per_job_puts_two_jobs_on_one_gpu(cluster, tmp_path):
    # Half a CPU each too: a node's one CPU must not be what keeps its jobs apart.
    _, run_dir = run_study(tmp_path, *cluster_flags(cluster, "--gpus_per_job=0.5",
                                                    "--cpus_per_job=0.5"))
    assert read_rows(run_dir)[8]["status"] == "ok"
    spans = []
    for path in (run_dir / "jobs").glob("fit-*/result.json"):
        result = json.loads(path.read_text())
        worker = result["worker"]
        assert worker["gpus"] not in (None, ""), result["job"]  # Ray gave it a GPU
        spans.append((worker["node"], worker["gpus"], result["finished"] - result["seconds"],
                      result["finished"]))
    shared = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:]
              if a[:2] == b[:2] and a[2] < b[3] and b[2] < a[3]]
    assert shared, "no two jobs ran at the same time on one GPU"


def test_the_driver_never_configures_tensorflow():
    """The study's command imports no TensorFlow before its jobs run (Ray tasks import it)."""
    code = ("import sys; from thyroid.study import __main__ as m, driver; "
            "from thyroid.study import ray_executor; "
            "print('tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr[-2000:]
