"""The cross-validated study against the single-split study on the same data and machine.

    python -m bench.study_cv_vs_single [--ddti_dir=../shared/data/ddti] [--cv_folds=5] [-- FLAGS]

Runs ``python -m thyroid.study`` twice as subprocesses, with ``--cv_folds=0`` (one
train/validation/test split) and with ``--cv_folds=K``, the same rows and flags otherwise,
and reports the wall time of each and their ratio. Target: K=5 takes at most 4 times the
single split. The load average is recorded because other users' processes slow both runs.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common

TARGET_RATIO = 4.0


def run_study(args, work_dir, num_folds):
    name = f"folds{num_folds}"
    command = [sys.executable, "-m", "thyroid.study", f"--ddti_dir={os.path.abspath(args.ddti_dir)}",
               f"--output_dir={work_dir}", f"--run_name={name}", f"--cv_folds={num_folds}",
               f"--checkpoint_dir={args.checkpoint_dir}"] + args.extra
    print("running:", " ".join(command), flush=True)
    load_before = common.load_average()
    started = time.monotonic()
    with open(os.path.join(work_dir, f"{name}.out"), "w") as out:
        returncode = subprocess.call(command, cwd=common.REPO_DIR, stdout=out,
                                     stderr=subprocess.STDOUT)
    return {"folds": num_folds, "command": command, "returncode": returncode,
            "wall_seconds": time.monotonic() - started,
            "load_average_1min": [load_before, common.load_average()]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ddti_dir", default=os.path.join(common.REPO_DIR, "..", "shared",
                                                           "data", "ddti"))
    parser.add_argument("--cv_folds", type=int, default=5)
    parser.add_argument("--checkpoint_dir", default=os.path.join(common.REPO_DIR, "checkpoints"))
    parser.add_argument("--work_dir", default=None, help="default: a fresh temp dir")
    parser.add_argument("extra", nargs="*", help="more flags for thyroid.study (after --)")
    args = parser.parse_args()
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench-cv-")
    os.makedirs(work_dir, exist_ok=True)
    single = run_study(args, work_dir, 0)
    cross = run_study(args, work_dir, args.cv_folds)
    ratio = cross["wall_seconds"] / single["wall_seconds"]
    rows = [(f"single split (--cv_folds=0)", single["wall_seconds"], single["returncode"],
             str(single["load_average_1min"])),
            (f"{args.cv_folds}-fold (--cv_folds={args.cv_folds})", cross["wall_seconds"],
             cross["returncode"], str(cross["load_average_1min"]))]
    markdown = "\n".join([
        common.format_table(["study", "wall s", "exit", "1-min load before/after"], rows), "",
        common.format_table(["measure", "value", "target", "met"],
                            [("cross-validated / single-split wall time", ratio, TARGET_RATIO,
                              ratio <= TARGET_RATIO)])])
    print(markdown)
    common.write_results("study_cv_vs_single", {"work_dir": work_dir, "machine": common.machine(),
                                                "single": single, "cross_validated": cross,
                                                "ratio": ratio}, markdown)


if __name__ == "__main__":
    main()
