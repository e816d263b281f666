"""The default study (``./run_all.sh`` with no data flags) end to end: wall time by stage.

    python -m bench.default_study [--isa=AVX2,native] [-- extra study flags]

Runs ``python -m thyroid.study`` on the synthetic default into a temp dir once per ISA setting
(``AVX2`` caps oneDNN with ONEDNN_MAX_CPU_ISA=AVX2, the stand-in for an AVX2-only CPU on a
machine that has AVX-512; ``native`` leaves it alone), and reports the study's own "Time by
stage" table, the wall time of the process, its peak RSS, the mean load average during the
run and each row's pooled AUC. Target: total <= 6 minutes on a 2-core AVX2 machine.
"""

import argparse
import csv
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_SECONDS = 360


def stage_table(summary_md):
    """[(stage, time text)] of the summary's "Time by stage" table."""
    table = summary_md.split("## Time by stage", 1)[1].split("\n## ", 1)[0]
    return [tuple(cell.strip() for cell in line.split("|")[1:3]) for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| Stage")]


def sample_load(samples, stop):
    while not stop.wait(5.0):
        samples.append(os.getloadavg()[0])


def run_once(isa, work_dir, extra_flags):
    """One study run; -> dict of wall seconds, peak RSS, load, stages and AUCs."""
    env = dict(os.environ)
    if isa != "native":
        env["ONEDNN_MAX_CPU_ISA"] = isa
    command = [sys.executable, "-m", "thyroid.study", f"--output_dir={work_dir}",
               f"--run_name={isa}", *extra_flags]
    samples, stop = [os.getloadavg()[0]], threading.Event()
    sampler = threading.Thread(target=sample_load, args=(samples, stop), daemon=True)
    sampler.start()
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    stop.set()
    if done.returncode != 0:
        raise RuntimeError(f"study ({isa}) failed:\n{done.stderr[-3000:]}")
    run_dir = os.path.join(work_dir, isa)
    with open(os.path.join(run_dir, "summary.md")) as f:
        stages = stage_table(f.read())
    with open(os.path.join(run_dir, "summary.csv"), newline="") as f:
        aucs = {row["row_id"]: row["auc"] for row in csv.DictReader(f) if row["status"] == "ok"}
    return {"isa": isa, "wall_seconds": seconds, "stages": stages, "aucs": aucs,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20,
            "mean_load": sum(samples) / len(samples)}


def markdown(runs, extra_flags):
    names = [name for name, _ in runs[0]["stages"]]
    rows = [[name] + [dict(run["stages"]).get(name, "") for run in runs] for name in names]
    rows.append(["wall time of the process (s)"] + [f"{run['wall_seconds']:.0f}" for run in runs])
    rows.append(["<= 6 min"] + ["yes" if run["wall_seconds"] <= TARGET_SECONDS else "NO"
                                for run in runs])
    rows.append(["peak RSS, largest so far (GiB)"] + [f"{run['peak_rss_gib']:.2f}" for run in runs])
    rows.append(["mean 1-min load during the run"] + [f"{run['mean_load']:.1f}" for run in runs])
    for row_id in sorted(runs[0]["aucs"], key=int):
        rows.append([f"row {row_id} pooled AUC"] + [run["aucs"].get(row_id, "") for run in runs])
    headers = ["stage"] + [f"ONEDNN_MAX_CPU_ISA={run['isa']}" if run["isa"] != "native"
                           else "no ISA cap" for run in runs]
    return (f"`python -m thyroid.study {' '.join(extra_flags)}` (the default study, as "
            "`./run_all.sh`), one run per column, one after the other. The AVX2 column caps "
            "oneDNN on this CPU: a stand-in for an AVX2-only machine at the same clocks, not a "
            "real one.\n\n" + common.format_table(headers, rows))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isa", default="AVX2,native", help="comma-separated: AVX2, native, ...")
    parser.add_argument("--no_write", action="store_true", help="print only")
    parser.add_argument("extra", nargs="*", help="flags for thyroid.study, after --")
    args = parser.parse_args(argv)
    work_dir = tempfile.mkdtemp(prefix="bench-default-study-")
    try:
        runs = []
        for isa in args.isa.split(","):
            runs.append(run_once(isa, work_dir, args.extra))
            print(runs[-1], flush=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    text = markdown(runs, args.extra)
    print(text)
    if not args.no_write:
        common.write_results("default_study", {"runs": runs}, text)


if __name__ == "__main__":
    main()
