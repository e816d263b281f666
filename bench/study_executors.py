"""The default study under the local executor and under Ray, side by side in one run.

    python -m bench.study_executors [--repeats=1] [-- extra study flags]

Runs ``python -m thyroid.study`` (the synthetic default, as ``./run_all.sh``) with
``--executor=local`` (TensorFlow's own thread count) and with ``--executor=ray
--cpus_per_job=1`` (Ray started for the study: as many workers as cores, one thread each),
alternating, and reports each one's wall time, the ratio ray / local (target <= 1.1 here), whether
the two gave the same predictions, and, from the local run's jobs, the plan's critical path and
the speed-up it allows on N workers.
"""

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_RATIO = 1.1
WORKER_COUNTS = (1, 2, 4, 8, 16, 32)
EXECUTORS = {"local": ("--executor=local",), "ray": ("--executor=ray", "--cpus_per_job=1")}


def run_once(name, work_dir, checkpoint_dir, extra):
    """One study; -> (wall seconds, run folder)."""
    run_name = f"{name}-{len(os.listdir(work_dir))}"
    command = [sys.executable, "-m", "thyroid.study", f"--output_dir={work_dir}",
               f"--run_name={run_name}", f"--checkpoint_dir={checkpoint_dir}", "--noexport",
               *EXECUTORS[name], *extra]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"study ({name}) failed:\n{done.stderr[-3000:]}")
    return seconds, os.path.join(work_dir, run_name)


def predictions(run_dir):
    with open(os.path.join(run_dir, "predictions.csv"), newline="") as f:
        return [(r["row_id"], r["repeat"], r["fold"], r["image"], float(r["prob"]))
                for r in csv.DictReader(f)]


def max_difference(run_a, run_b):
    a, b = predictions(run_a), predictions(run_b)
    if [x[:4] for x in a] != [x[:4] for x in b]:
        return None
    return max((abs(x[4] - y[4]) for x, y in zip(a, b)), default=0.0)


def critical_path_of(run_dir):
    from thyroid.study.critical_path import critical_path
    from thyroid.study.plan import Plan
    from thyroid.study.results import read_result
    plan = Plan.load(run_dir)
    seconds = {job.id: read_result(run_dir, job.id).seconds for job in plan.jobs
               if read_result(run_dir, job.id) is not None}
    return critical_path(plan, seconds)


def markdown(walls, difference, path, extra):
    local, ray = statistics.median(walls["local"]), statistics.median(walls["ray"])
    rows = [["local (TensorFlow's own threads)", f"{local:.0f}", ""],
            ["ray (a worker per core, 1 thread each)", f"{ray:.0f}",
             f"{ray / local:.2f} ({'<=' if ray / local <= TARGET_RATIO else '>'} {TARGET_RATIO})"]]
    table = common.format_table(["executor", "wall time (s, median)", "ray / local"], rows)
    bounds = common.format_table(
        ["workers", "shortest wall time the plan allows (s)", "speed-up over 1 worker"],
        [[n, f"{path.wall_bound(n):.0f}", f"{path.speedup(n):.2f}"] for n in WORKER_COUNTS])
    same = ("identical" if difference == 0 else "not comparable (other images)"
            if difference is None else f"max |difference| {difference:.2g}")
    return (f"`python -m thyroid.study --noexport {' '.join(extra)}` under each executor, "
            f"{len(walls['local'])} run(s) each, alternating.\n\n{table}\n\n"
            f"Predictions of the two: {same}. The local run's jobs use TensorFlow's own thread "
            "count (2 here) and the Ray jobs 1 thread each, so the trained rows may differ (the "
            "small CNN from scratch most: `study_threads`); at the same thread count the two "
            "executors give identical predictions (`tests/test_executors.py`).\n\n"
            f"Critical path (the local run's own job times): {path.seconds:.0f} s of "
            f"{path.total_seconds:.0f} s of jobs; {' -> '.join(path.jobs)}. A projection from "
            "the jobs' times, ignoring start-up and contention for memory bandwidth:\n\n"
            f"{bounds}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no_write", action="store_true", help="print only")
    parser.add_argument("extra", nargs="*", help="flags for thyroid.study, after --")
    args = parser.parse_args(argv)
    work_dir = tempfile.mkdtemp(prefix="bench-executors-")
    checkpoint_dir = os.path.join(work_dir, "checkpoints")
    os.makedirs(os.path.join(work_dir, "runs"))
    # The checkpoint is converted once, before any timed run.
    subprocess.run([sys.executable, "-m", "thyroid.checkpoints", "convert",
                    f"--checkpoint_dir={checkpoint_dir}"], cwd=REPO, check=True,
                   capture_output=True)
    walls, runs = {"local": [], "ray": []}, {}
    try:
        for _ in range(args.repeats):
            for name in EXECUTORS:
                seconds, runs[name] = run_once(name, os.path.join(work_dir, "runs"),
                                               checkpoint_dir, args.extra)
                walls[name].append(seconds)
                print(name, f"{seconds:.1f}s", flush=True)
        text = markdown(walls, max_difference(runs["local"], runs["ray"]),
                        critical_path_of(runs["local"]), args.extra)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(text)
    if not args.no_write:
        common.write_results("study_executors", {"walls": walls}, text)


if __name__ == "__main__":
    main()
