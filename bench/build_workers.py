"""Shard building with one worker process against two (or more), on the same data.

    python -m bench.build_workers [--workers=1,2] [--repeats=3] [--cases=120]

The default study's synthetic set (``--cases`` DDTI-style cases and as many local-style
patients, 2 augmented copies) is generated once; then ``python -m thyroid.build_tfrecords``
builds it with each ``--num_workers`` in turn (1, 2, 1, 2, ...: interleaved, so drift of the
machine's speed falls on both alike), each run a whole process timed from outside. The table
gives the median wall time per worker count and its speed-up over the first count; the runs'
shards must be byte-identical (checked). Target: 2 workers at least 1.5x faster than 1.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_SPEEDUP = 1.5


def generate(work_dir, cases):
    data_dir = os.path.join(work_dir, "synthetic")
    subprocess.run([sys.executable, "-m", "thyroid.synth", f"--output_dir={data_dir}",
                    f"--num_cases={cases}", f"--num_local_cases={cases}"],
                   cwd=REPO, check=True, capture_output=True)
    return data_dir


def build_once(data_dir, output_dir, workers):
    """Seconds of one whole build process."""
    command = [sys.executable, "-m", "thyroid.build_tfrecords", f"--output_dir={output_dir}",
               f"--ddti_dir={data_dir}/ddti", f"--local_dir={data_dir}/local",
               "--protocol=patient", "--augment_copies=2", "--overwrite",
               f"--num_workers={workers}"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"build with {workers} worker(s) failed:\n{done.stderr[-2000:]}")
    return seconds


def shard_digest(output_dir):
    """The shard files' fingerprints, split by split (not the manifest: it records the time
    and worker count)."""
    from thyroid.datasets import shards
    return tuple(shards.split_fingerprint(output_dir, split) for split in shards.SPLITS)


def measure(args, work_dir):
    data_dir = generate(work_dir, args.cases)
    runs = {count: [] for count in args.workers}
    digests = {}
    for _ in range(args.repeats):
        for count in args.workers:
            output_dir = os.path.join(work_dir, f"shards-{count}")
            runs[count].append(build_once(data_dir, output_dir, count))
            digests[count] = shard_digest(output_dir)
    return {"cases": args.cases, "seconds": {c: common.summarize(r) for c, r in runs.items()},
            "identical": len(set(digests.values())) == 1, "load_average": common.load_average()}


def markdown(result, args):
    base = result["seconds"][args.workers[0]]["median"]
    rows = [[count, stats["median"], stats["min"], stats["max"], base / stats["median"]]
            for count, stats in result["seconds"].items()]
    table = common.format_table(["workers", "median s", "min s", "max s",
                                 f"speed-up over {args.workers[0]}"], rows)
    return (f"`python -m thyroid.build_tfrecords --augment_copies=2 --num_workers=N` on the "
            f"synthetic default ({result['cases']} DDTI-style cases and as many local-style "
            f"patients), each run a whole process, {args.repeats} interleaved repeats; "
            f"target: 2 workers >= {TARGET_SPEEDUP}x one.\n\n{table}\n\n"
            f"Shards byte-identical across worker counts: "
            f"{'yes' if result['identical'] else 'NO'}.\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2",
                        type=lambda text: [int(v) for v in text.split(",")])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", type=int, default=120)
    parser.add_argument("--no_write", action="store_true")
    args = parser.parse_args(argv)
    work_dir = tempfile.mkdtemp(prefix="build_workers-")
    try:
        result = measure(args, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    text = markdown(result, args)
    print(text)
    if not args.no_write:
        common.write_results("build_workers", result, text)
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
