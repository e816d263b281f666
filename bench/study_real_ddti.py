"""The whole study (``./run_all.sh`` = ``python -m thyroid.study``) on real DDTI.

    python -m bench.study_real_ddti [--ddti_dir=../shared/data/ddti] [--variants=default,random_init]

Runs the study as a subprocess twice: as is (rows without an official checkpoint are
skipped) and with ``--allow_random_init`` (all ten rows; the honest full workload).
Measures wall time, per-row times (train_seconds from summary.csv; train + evaluation
from the log's timestamps) and the peak resident memory of the process tree (sum of
the RSS of the study and its children, polled every 0.2 s) and of the largest single
process (getrusage ru_maxrss). Targets: total < 30 min, peak memory < 4 GiB.
"""

import argparse
import csv
import datetime
import glob
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common

TARGET_SECONDS = 30 * 60
TARGET_BYTES = 4 * 2 ** 30
PAGE = os.sysconf("SC_PAGE_SIZE")


def _children_map():
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def tree_rss(pid):
    """Bytes resident in ``pid`` and all its descendants."""
    children, total, todo = _children_map(), 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            pass
        todo.extend(children.get(p, []))
    return total


def run_study(args, variant, work_dir):
    run_name = f"bench-{variant}"
    cmd = [sys.executable, "-m", "thyroid.study", f"--ddti_dir={os.path.abspath(args.ddti_dir)}",
           f"--output_dir={work_dir}", f"--run_name={run_name}",
           f"--checkpoint_dir={args.checkpoint_dir or os.path.join(work_dir, 'checkpoints')}"]
    if variant == "random_init":
        cmd.append("--allow_random_init")
    cmd += args.extra
    print("running:", " ".join(cmd), flush=True)
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    loads = [common.load_average()]
    peak, samples = 0, []
    with open(os.path.join(work_dir, f"{variant}.out"), "w") as out:
        proc = subprocess.Popen(cmd, cwd=common.REPO_DIR, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            rss = tree_rss(proc.pid)
            peak = max(peak, rss)
            samples.append((round(time.monotonic() - started, 1), rss))
            if len(samples) % 150 == 0:
                loads.append(common.load_average())
            time.sleep(0.2)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    run_dir = os.path.join(work_dir, run_name)
    rows = read_summary(os.path.join(run_dir, "summary.csv"))
    row_walls = row_wall_times(run_dir)
    for row in rows:
        row["wall_seconds"] = row_walls.get(int(row["row_id"]))
    return {"variant": variant, "command": cmd, "returncode": proc.returncode, "wall_seconds": wall,
            "peak_tree_rss_bytes": peak, "cpu_seconds": cpu, "load_average_1min": loads, "rows": rows, "phases": phase_times(run_dir),
            "rss_timeline": samples[::25]}


def read_summary(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [{k: row.get(k) for k in ("row_id", "model", "mode", "status", "train_seconds", "auc")}
                for row in csv.DictReader(f)]


_LINE = re.compile(r"^[IWEF](\d{4}) (\d\d:\d\d:\d\d\.\d+) .*?\] (.*)$")


def _log_lines(run_dir):
    logs = sorted(glob.glob(os.path.join(glob.escape(run_dir), "study*INFO*")))
    logs = [p for p in logs if not os.path.islink(p)] or logs
    if not logs:
        return []
    year = datetime.date.today().year
    out = []
    with open(logs[-1], errors="replace") as f:
        for line in f:
            m = _LINE.match(line)
            if m:
                when = datetime.datetime.strptime(f"{year}{m.group(1)} {m.group(2)}", "%Y%m%d %H:%M:%S.%f")
                out.append((when, m.group(3)))
    return out


def row_wall_times(run_dir):
    """row id -> seconds from its '=== row N' log line to the next row (or export/report)."""
    lines = _log_lines(run_dir)
    marks = [(when, int(re.match(r"=== row (\d+)", msg).group(1))) for when, msg in lines
             if msg.startswith("=== row ")]
    if not marks:
        return {}
    end = lines[-1][0]
    return {row: ((marks[i + 1][0] if i + 1 < len(marks) else end) - when).total_seconds()
            for i, (when, row) in enumerate(marks)}


def phase_times(run_dir):
    """Seconds before the first row (data, shards, checkpoints) and after the last (export, report)."""
    lines = _log_lines(run_dir)
    rows = [when for when, msg in lines if msg.startswith("=== row ")]
    if not lines or not rows:
        return {}
    return {"setup_seconds": (rows[0] - lines[0][0]).total_seconds()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ddti_dir", default=os.path.join(common.REPO_DIR, "..", "shared", "data", "ddti"))
    parser.add_argument("--variants", default="default,random_init")
    parser.add_argument("--work_dir", default=None, help="default: a fresh temp dir")
    parser.add_argument("--checkpoint_dir", default=None,
                        help="default: <work_dir>/checkpoints (so the study converts EfficientNet itself)")
    parser.add_argument("extra", nargs="*", help="more flags for thyroid.study (after --)")
    args = parser.parse_args()
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench-study-")
    os.makedirs(work_dir, exist_ok=True)
    previous = {}
    old_json = os.path.join(common.RESULTS_DIR, "study_real_ddti.json")
    if os.path.exists(old_json):  # keep the other variant's numbers when running only one
        import json
        with open(old_json) as f:
            previous = {r["variant"]: r for r in json.load(f).get("results", [])}
    results = []
    for variant in args.variants.split(","):
        result = run_study(args, variant, work_dir)
        results.append(result)
        print(f"{variant}: rc {result['returncode']}, {result['wall_seconds']:.0f} s, "
              f"peak tree RSS {result['peak_tree_rss_bytes'] / 2 ** 30:.2f} GiB", flush=True)
    done = {r["variant"] for r in results}
    results = [r for v, r in previous.items() if v not in done] + results
    max_single = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    md = []
    for result in results:
        rows = [(r["row_id"], r["model"], r["mode"], r["status"],
                 float(r["train_seconds"]) if r["train_seconds"] else None,
                 r["wall_seconds"], r["auc"]) for r in result["rows"]]
        md.append(f"### `{result['variant']}`: {' '.join(result['command'][1:])}\n")
        md.append(common.format_table(
            ["row", "model", "mode", "status", "train s (summary.csv)", "train+eval s (log)", "test AUC"], rows))
        ok_time = result["wall_seconds"] < TARGET_SECONDS
        ok_mem = result["peak_tree_rss_bytes"] < TARGET_BYTES
        md.append("")
        md.append(common.format_table(
            ["measure", "value", "target", "met"],
            [("total wall time (s)", result["wall_seconds"], TARGET_SECONDS, ok_time),
             ("setup before row 1 (s): data, shards, checkpoints",
              result["phases"].get("setup_seconds"), None, None),
             ("CPU time of the process tree (s); / 2 cores = wall time if alone and both cores busy",
              result.get("cpu_seconds"), None, None),
             ("mean 1-min load average during the run (other users' processes included)",
              sum(result.get("load_average_1min", [0])) / max(1, len(result.get("load_average_1min", [0]))), None, None),
             ("peak RSS of process tree (GiB)", result["peak_tree_rss_bytes"] / 2 ** 30, 4.0, ok_mem),
             ("exit status", result["returncode"], 0, result["returncode"] == 0)]))
        md.append("")
    md.append(f"Largest single process in this invocation (ru_maxrss of children): "
              f"{max_single / 2 ** 30:.2f} GiB.")
    markdown = "\n".join(md)
    print(markdown)
    common.write_results("study_real_ddti", {"work_dir": work_dir, "results": results,
                                             "max_single_process_rss_bytes": max_single}, markdown)


if __name__ == "__main__":
    main()
