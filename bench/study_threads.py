"""How far a study's numbers move when its jobs run with another number of threads.

    python -m bench.study_threads [--threads=1,2] [-- extra study flags, default --quick]

The same seed gives the same predictions under any executor when every job gets the same
number of threads; with another thread count TensorFlow sums in another order, and trained rows
drift. This runs the study once per thread count (``--cpus_per_job``) and reports, per row, the
largest change of an out-of-fold probability and the change of the pooled AUC.
"""

import argparse
import collections
import csv
import os
import shutil
import subprocess
import sys
import tempfile

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_once(threads, work_dir, extra):
    command = [sys.executable, "-m", "thyroid.study", f"--output_dir={work_dir}",
               f"--run_name=threads{threads}", f"--checkpoint_dir={work_dir}/checkpoints",
               "--nodownload_checkpoints", "--noexport", f"--cpus_per_job={threads}", *extra]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    run_dir = os.path.join(work_dir, f"threads{threads}")
    with open(os.path.join(run_dir, "predictions.csv"), newline="") as f:
        probs = {(r["row_id"], r["repeat"], r["fold"], r["image"]): float(r["prob"])
                 for r in csv.DictReader(f)}
    with open(os.path.join(run_dir, "summary.csv"), newline="") as f:
        aucs = {r["row_id"]: float(r["auc"]) for r in csv.DictReader(f) if r["auc"]}
    return probs, aucs


def markdown(counts, runs, extra):
    (first, (probs_a, aucs_a)), (second, (probs_b, aucs_b)) = zip(counts, runs)
    moved = collections.defaultdict(float)
    for key, prob in probs_a.items():
        moved[key[0]] = max(moved[key[0]], abs(prob - probs_b.get(key, float("nan"))))
    rows = [[f"row {row}", f"{moved[row]:.2g}", f"{aucs_a[row]:.4f}", f"{aucs_b[row]:.4f}",
             f"{aucs_b[row] - aucs_a[row]:+.4f}"] for row in sorted(aucs_a, key=int)]
    table = common.format_table(
        ["row", "largest absolute change of a probability", f"AUC, {first} thread(s)",
         f"AUC, {second} thread(s)", "change"], rows)
    return (f"`python -m thyroid.study {' '.join(extra)} --noexport --cpus_per_job=N` for "
            f"N = {first} and {second}, the same seed.\n\n{table}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--no_write", action="store_true", help="print only")
    parser.add_argument("extra", nargs="*", help="flags for thyroid.study, after --")
    args = parser.parse_args(argv)
    extra = args.extra or ["--quick"]
    counts = [int(n) for n in args.threads.split(",")][:2]
    work_dir = tempfile.mkdtemp(prefix="bench-threads-")
    try:
        runs = [run_once(n, work_dir, extra) for n in counts]
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    text = markdown(counts, runs, extra)
    print(text)
    if not args.no_write:
        common.write_results("study_threads", {"threads": counts}, text)


if __name__ == "__main__":
    main()
