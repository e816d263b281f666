"""The study at several sizes of the synthetic set: time and peak memory per stage, and how
they grow with the data.

    python -m bench.study_scale [--scales=1,3,10] [--rows=1,8,10,11] [--fresh] [--no_write]

For each scale s the study (``python -m thyroid.study --num_cases=<s x 120> --rows=...
--noexport``, the local executor) runs in its own process into a temp dir. Its log's
``stage <name>: <seconds>s`` lines give each stage's time; the RSS of its whole process tree
(the study and the build's workers) is sampled every 0.5 s, and a stage's peak is the largest
sample between its start and its line. The table gives each stage's growth against the
smallest scale, and the same divided by the growth of the labelled images (1.0 = a constant
cost per image). Target: 10x the data costs at most 11x the time in every stage that sees
every image.

Scales of an earlier invocation are kept (``bench/results/study_scale.json``) unless
``--fresh``, so the long 10x run can be added later. A scale not measured is extrapolated,
stage by stage, from the two largest measured ones (labelled as such), and so is a
10,000-image study; the N-core projection takes the plan's critical path (the longest chain
of jobs, each at its measured time) against its total work.
"""

import argparse
import dataclasses
import json
import os
import re
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
from thyroid.study.critical_path import critical_path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CASES = 120  # thyroid.study.config.DEFAULT_SYNTHETIC_CASES
STAGE_LINE = re.compile(r"stage (.+): ([0-9.]+)s$")
LINEAR_LIMIT = 1.1  # 10x the data in at most 11x the time
TARGET_IMAGES = 10_000
# Stages whose work is per image (the rest: fixed costs such as the checkpoint conversion).
PER_IMAGE_STAGES = ("synthetic data", "shards", "row ")


def tree_cpu_seconds(root):
    """CPU seconds of ``root`` (its own and its waited-for children's: the build's workers,
    once their pool has closed) and of its live descendants. Unlike wall time, this hardly
    moves when other users load the machine."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in _descendants(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:13 if pid != root else 15]) / ticks
    return total


def _descendants(root):
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def tree_rss_bytes(root):
    """Resident memory of ``root`` and all its descendants (from /proc)."""
    total = 0
    for pid in _descendants(root):
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            pass
    return total


class StageWatcher:
    """Reads the study's log as it is written: stage times, and the peak tree RSS of the
    stage that is running (the local executor runs the stages one after another)."""

    def __init__(self, process, log_path):
        self.process, self.log_path = process, log_path
        self.stages, self.peak, self.overall_peak = [], 0, 0
        self.cpu = 0.0
        self.lock = threading.Lock()

    def sample(self, stop):
        while not stop.wait(0.5):
            rss = tree_rss_bytes(self.process.pid)
            with self.lock:
                self.peak = max(self.peak, rss)
                self.overall_peak = max(self.overall_peak, rss)

    def read(self):
        with open(self.log_path, "w") as log:
            for line in self.process.stderr:
                log.write(line)
                found = STAGE_LINE.search(line.strip())
                if found:
                    cpu = tree_cpu_seconds(self.process.pid)
                    with self.lock:
                        self.stages.append({"stage": found.group(1),
                                            "seconds": float(found.group(2)),
                                            "cpu_seconds": cpu - self.cpu,
                                            "peak_rss_gib": self.peak / 2 ** 30})
                        self.cpu = cpu
                        self.peak = tree_rss_bytes(self.process.pid)


def labelled_images(run_dir):
    """Labelled images the study used (originals in the shards) and shard records."""
    with open(os.path.join(run_dir, "shards", "manifest.json")) as f:
        splits = json.load(f)["splits"]
    originals = sum(sum(s["original"].values()) for s in splits.values())
    return originals, sum(s["images"] for s in splits.values())


def trained_epochs(run_dir):
    """{row id: (mean epochs trained per fold, median best epoch)} of the rows that train
    steps: epochs = last step x num_epochs / max_number_of_steps (run_config.json is saved
    with the step count resolved from the epochs)."""
    import glob
    import statistics
    found = {}
    for config_path in glob.glob(os.path.join(glob.escape(run_dir), "train", "*", "repeat*_fold*",
                                              "run_config.json")):
        with open(config_path) as f:
            config = json.load(f)["config"]
        state = os.path.join(os.path.dirname(config_path), "checkpoint")
        if config["mode"] in ("bottleneck_svm", "bottleneck_logreg") or not os.path.exists(state):
            continue
        with open(state) as f:
            step = int(re.search(r'model_checkpoint_path: ".*-(\d+)"', f.read()).group(1))
        best_path = os.path.join(os.path.dirname(config_path), "best.json")
        best = json.load(open(best_path))["step"] if os.path.exists(best_path) else step
        row = os.path.basename(os.path.dirname(os.path.dirname(config_path))).split("_")[0]
        per_epoch = config["max_number_of_steps"] / config["num_epochs"]
        found.setdefault(str(int(row)), []).append((step / per_epoch, best / per_epoch))
    return {row: (statistics.mean(t for t, _ in pairs), statistics.median(b for _, b in pairs))
            for row, pairs in found.items()}


def plan_jobs(run_dir):
    """[(job id, stage, inputs, seconds)] of a finished run folder (kept in the results
    file, so a later invocation can project from it)."""
    from thyroid.study.plan import Plan
    from thyroid.study.results import read_result
    jobs = []
    for job in Plan.load(run_dir).jobs:
        result = read_result(run_dir, job.id)
        jobs.append((job.id, job.stage, list(job.inputs), result.seconds if result else 0.0))
    return jobs


@dataclasses.dataclass(frozen=True)
class StoredJob:
    """A job as the results file keeps it: what ``critical_path`` reads of a plan's job."""
    id: str
    stage: str
    inputs: tuple
    seconds: float


@dataclasses.dataclass(frozen=True)
class StoredPlan:
    """The jobs of a measured run in plan order (inputs first), for ``critical_path``."""
    jobs: tuple

    @classmethod
    def of(cls, run):
        return cls(tuple(StoredJob(job_id, stage, tuple(inputs), seconds)
                         for job_id, stage, inputs, seconds in run["jobs"]))


def run_scale(scale, rows, work_dir, checkpoint_dir):
    """One study at ``scale`` x the default synthetic size; -> its measurements."""
    run_name = f"x{scale:g}"
    command = [sys.executable, "-m", "thyroid.study", f"--num_cases={int(scale * DEFAULT_CASES)}",
               f"--rows={rows}", "--noexport", "--nodownload_checkpoints",
               f"--checkpoint_dir={checkpoint_dir}", f"--output_dir={work_dir}",
               f"--run_name={run_name}"]
    cpu_before, started = _children_cpu_seconds(), time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    watcher = StageWatcher(process, os.path.join(work_dir, f"{run_name}.log"))
    stop = threading.Event()
    sampler = threading.Thread(target=watcher.sample, args=(stop,), daemon=True)
    sampler.start()
    watcher.read()
    status = process.wait()
    stop.set()
    if status != 0:
        raise RuntimeError(f"study at {scale}x failed ({status}); log in {work_dir}/{run_name}.log")
    run_dir = os.path.join(work_dir, run_name)
    images, records = labelled_images(run_dir)
    return {"scale": scale, "num_cases": int(scale * DEFAULT_CASES), "images": images,
            "records": records, "wall_seconds": time.perf_counter() - started,
            "stages": watcher.stages, "peak_rss_gib": watcher.overall_peak / 2 ** 30,
            "aucs": _aucs(run_dir), "jobs": plan_jobs(run_dir),
            "epochs": trained_epochs(run_dir),
            "load_average": os.getloadavg()[0],
            "cpu_seconds": _children_cpu_seconds() - cpu_before}


def _children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _aucs(run_dir):
    import csv
    with open(os.path.join(run_dir, "summary.csv"), newline="") as f:
        return {row["row_id"]: row["auc"] for row in csv.DictReader(f) if row["status"] == "ok"}


def stage_seconds(run):
    return {stage["stage"]: stage["seconds"] for stage in run["stages"]}


def extrapolate(runs, images):
    """{stage: seconds} at ``images`` labelled images, a line through each stage's two
    largest measured scales (one measured scale: in proportion to the images)."""
    measured = sorted(runs, key=lambda run: run["images"])[-2:]
    small, large = measured[0], measured[-1]
    out = {}
    for stage, seconds in stage_seconds(large).items():
        before = stage_seconds(small).get(stage)
        if small is large or before is None or large["images"] == small["images"]:
            out[stage] = seconds * images / large["images"]
        else:
            slope = (seconds - before) / (large["images"] - small["images"])
            out[stage] = max(seconds + slope * (images - large["images"]), 0.0)
    return out


def stage_rows(runs, wanted_scales):
    """The table: per stage, seconds at every scale, growth and growth per image."""
    base = min(runs, key=lambda run: run["scale"])
    by_scale = {run["scale"]: run for run in runs}
    columns = []
    for scale in wanted_scales:
        if scale in by_scale:
            run = by_scale[scale]
            columns.append((scale, stage_seconds(run), run["images"], "measured"))
        else:
            images = base["images"] * scale / base["scale"]
            columns.append((scale, extrapolate(runs, images), images, "extrapolated"))
    rows = []
    for stage in stage_seconds(base):
        row = [stage]
        for scale, seconds, images, how in columns:
            row.append(seconds.get(stage))
        for scale, seconds, images, how in columns[1:]:
            ratio = seconds.get(stage, 0) / max(stage_seconds(base)[stage], 1e-9)
            row += [ratio, ratio / (images / base["images"])]
        rows.append(row)
    return columns, rows


def _per_scale(columns, by_scale, value):
    """One cell per column: ``value(run)`` for a measured scale, "" otherwise."""
    return [value(by_scale[scale]) if scale in by_scale else "" for scale, *_ in columns]


def _extra_rows(runs, columns):
    """Images, wall time, peak RSS, load, AUCs and trained epochs under the stage rows."""
    by_scale = {run["scale"]: run for run in runs}
    extra = [["labelled images"] + [f"{images:.0f}" for _, _, images, _ in columns],
             ["wall time of the study (s)"]
             + _per_scale(columns, by_scale, lambda run: f"{run['wall_seconds']:.0f}"),
             ["peak RSS of the process tree (GiB)"]
             + _per_scale(columns, by_scale, lambda run: f"{run['peak_rss_gib']:.2f}"),
             ["1-min load at the end"]
             + _per_scale(columns, by_scale, lambda run: f"{run['load_average']:.1f}")]
    for row_id in sorted({r for run in runs for r in run["aucs"]}, key=int):
        extra.append([f"row {row_id} pooled AUC"]
                     + _per_scale(columns, by_scale, lambda run: run["aucs"].get(row_id, "")))
    for row_id in sorted({r for run in runs for r in run.get("epochs", {})}, key=int):
        def epochs(run):
            return run.get("epochs", {}).get(row_id)
        extra.append([f"row {row_id} epochs trained per fold (best)"] + _per_scale(
            columns, by_scale, lambda run: "{:.1f} ({:.1f})".format(*epochs(run))
            if epochs(run) else ""))
        extra.append([f"row {row_id} ms per image-epoch (whole stage)"] + _per_scale(
            columns, by_scale, lambda run: "{:.2f}".format(
                1000 * stage_seconds(run)[f"row {row_id}: folds"] / run["images"]
                / epochs(run)[0]) if epochs(run) else ""))
    return extra


def _cpu_table(runs):
    measured = sorted(runs, key=lambda r: r["scale"])
    headers = ["stage"] + [f"{run['scale']:g}x CPU s" for run in measured] + [
        f"{run['scale']:g}x/{measured[0]['scale']:g}x per image" for run in measured[1:]]
    rows = []
    for stage in stage_seconds(measured[0]):
        cpus = [next((s.get("cpu_seconds") for s in run["stages"] if s["stage"] == stage), None)
                for run in measured]
        growth = [c / cpus[0] / (run["images"] / measured[0]["images"])
                  if c is not None and cpus[0] else None
                  for c, run in zip(cpus[1:], measured[1:])]
        rows.append([stage] + cpus + growth)
    return common.format_table(headers, rows)


def _peak_table(runs):
    measured = sorted(runs, key=lambda r: r["scale"])
    return common.format_table(
        ["stage"] + [f"{run['scale']:g}x peak RSS (GiB)" for run in measured],
        [[stage] + [next((s["peak_rss_gib"] for s in run["stages"] if s["stage"] == stage), None)
                    for run in measured]
         for stage in stage_seconds(measured[0])])


def markdown(runs, wanted_scales, rows_flag):
    columns, rows = stage_rows(runs, wanted_scales)
    headers = ["stage"] + [f"{scale:g}x s ({how})" for scale, _, _, how in columns]
    for scale, _, _, how in columns[1:]:
        headers += [f"{scale:g}x/{columns[0][0]:g}x time", "per image"]
    extra = _extra_rows(runs, columns)
    table = common.format_table(headers, rows + [row + [""] * (len(headers) - len(row))
                                                 for row in extra])
    return (f"`python -m thyroid.study --num_cases=<scale x {DEFAULT_CASES}> --rows={rows_flag} "
            "--noexport` (local executor, synthetic data), one study per scale. \"per image\": "
            "the time's growth divided by the labelled images' growth (1.0 = the same cost per "
            f"image; the target is at most {LINEAR_LIMIT} for the stages that see every image). "
            "Extrapolated columns: a line through each stage's two largest measured scales.\n\n"
            + table + "\n\nCPU seconds of the study's process tree (its own threads and "
            "the build's workers) in each stage, and their growth per image: what the stage "
            "costs, whatever else ran on the machine:\n\n" + _cpu_table(runs)
            + "\n\nPeak RSS of the process tree while each stage ran (sampled every "
            "0.5 s):\n\n" + _peak_table(runs) + "\n\n" + projection_markdown(runs))


def projection_markdown(runs):
    """A 10,000-image study: on this machine (2 cores, the local executor runs one job at a
    time) and on N cores (the plan's critical path against its work spread over N)."""
    largest = max(runs, key=lambda run: run["images"])
    seconds = extrapolate(runs, TARGET_IMAGES)
    factor = {stage: seconds[stage] / max(value, 1e-9)
              for stage, value in stage_seconds(largest).items()}
    plan = StoredPlan.of(largest)
    path = critical_path(plan, {job.id: job.seconds * factor.get(job.stage, 1.0)
                                for job in plan.jobs})
    measured = ", ".join(str(run["images"]) for run in sorted(runs, key=lambda r: r["images"]))
    lines = [f"A {TARGET_IMAGES:,}-image study (extrapolated, stage by stage, from the "
             f"measured {measured}-image runs): {sum(seconds.values()) / 60:.0f} min on this "
             "machine with the local executor (one job at a time).", "",
             "On N cores (`--executor=ray --cpus_per_job=1`), a projection from the plan: each "
             "job at its extrapolated time, the longest chain of jobs (data -> shards -> a row's "
             "features -> its slowest fold -> ...) cannot be shortened, the rest spreads over "
             "the cores; at best max(path, work / N), at worst path + work / N (jobs measured "
             "with this machine's 2 cores each, so single-core jobs would be slower):", ""]
    table = [[n, path.wall_bound(n) / 60, (path.seconds + path.total_seconds / n) / 60]
             for n in (2, 4, 8, 16, 32)]
    return "\n".join(lines) + "\n\n" + common.format_table(
        ["cores", "best (min)", "worst (min)"], table) + (
        f"\n\nCritical path {path.seconds / 60:.1f} min, total work "
        f"{path.total_seconds / 60:.1f} min.")


def load_previous():
    path = os.path.join(common.RESULTS_DIR, "study_scale.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f).get("runs", [])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,3", help="comma-separated multiples of the default")
    parser.add_argument("--report_scales", default="1,3,10", help="columns of the table")
    parser.add_argument("--rows", default="1,8,10,11")
    parser.add_argument("--fresh", action="store_true", help="forget earlier scales")
    parser.add_argument("--no_write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    runs = [] if args.fresh else load_previous()
    work_dir = tempfile.mkdtemp(prefix="bench-study-scale-")
    try:
        for scale in [float(s) for s in args.scales.split(",")]:
            # A checkpoint folder per scale: each pays the same one-off conversion.
            checkpoint_dir = os.path.join(work_dir, f"checkpoints-{scale:g}")
            runs = [run for run in runs if run["scale"] != scale] + [
                run_scale(scale, args.rows, work_dir, checkpoint_dir)]
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "jobs"}), flush=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    text = markdown(runs, [float(s) for s in args.report_scales.split(",")], args.rows)
    print(text)
    if not args.no_write:
        common.write_results("study_scale", {"runs": runs}, text)
    return runs


if __name__ == "__main__":
    main()
