"""Peak memory of the study's data stages, and of the study, as the dataset grows.

    python -m bench.memory_scale [--scales=1,10] [--replicated_scales=30] [--study_scales=1,10]
                                 [--study=quick]

Scale 1 is the default study's synthetic set: 120 DDTI-style cases and as many local-style
patients, every image in one cross-validation split with 2 augmented copies (~885 records).
For each scale, each stage runs in its own process and its peak RSS (``ru_maxrss`` of that
process and its children) is recorded:

  shards:   synthetic data generated, shards built (``datasets.build``) and folds written,
            as the study's data jobs do;
  features: what the default study's rows compute from the shards before training, at their
            sizes: EfficientNet-Lite0 bottleneck at 224 px (rows 8, 9), bottleneck and frozen
            prefix at 128 px (row 10), pooled layers at 224 px (row 11), the resized images at
            64 px (row 1); then every cached file read back in batches of 32, as training does.
  replicated: for ``--replicated_scales``, the features stage alone on shards holding the 1x
            build's records that many times over (copied record by record): the real build
            holds every image in memory, so at 30x it would not fit a 23 GiB machine;
  study:    ``python -m thyroid.study`` (``--quick`` or the default, ``--num_cases`` scaled),
            only for ``--study_scales``.

Targets: study peak at 10x <= 1.3 x the 1x peak; shards and features stages at 30x < 4 GB.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common

BASE_CASES = {"default": 120, "quick": 48}  # thyroid.study.config's synthetic case counts
READ_BATCH = 32


def shards_stage(work_dir, cases):
    """Synthetic sources -> development shards + folds.json, as the study's data jobs."""
    from thyroid.datasets import build, folds, shards, synthetic
    data_dir = os.path.join(work_dir, "synthetic")
    synthetic.generate(data_dir, num_cases=cases, seed=0)
    dataset_dir = os.path.join(work_dir, "shards")
    build.build(build.BuildConfig(
        output_dir=dataset_dir, sources=build.named_sources(
            ddti_dir=os.path.join(data_dir, "ddti"), local_dir=os.path.join(data_dir, "local")),
        protocol="patient", validation_fraction=0.0, test_fraction=0.0, augment_copies=2,
        seed=0, overwrite=True))
    folds.write_folds(dataset_dir, "train", 5, 1, 0)
    shutil.rmtree(data_dir)  # the sources are not needed any more; disk is
    return {"records": len(shards.load_split_metadata(dataset_dir, "train"))}


def replicate_stage(work_dir, source_dir, times):
    """Shards holding every record of ``source_dir`` ``times`` over (keys and patients made
    distinct), streamed record by record: the input of the features stage at a scale whose real
    build would not fit this machine's memory (the build holds its images; see the table)."""
    from thyroid.compat import tf
    from thyroid.datasets import shards
    from thyroid.io_utils import atomic_write_json, read_json
    dataset_dir = os.path.join(work_dir, "shards")
    os.makedirs(dataset_dir)
    manifest = read_json(os.path.join(source_dir, shards.MANIFEST_NAME))
    for split in shards.SPLITS:
        for path in shards.shard_paths(source_dir, split):
            with tf.io.TFRecordWriter(os.path.join(dataset_dir, os.path.basename(path))) as out:
                for copy in range(times):
                    for serialized in tf.data.TFRecordDataset(path):
                        out.write(renamed(serialized.numpy(), copy))
        manifest["splits"][split]["images"] *= times
        manifest["shards"][split] = shards.describe_shards(shards.shard_paths(dataset_dir, split))
    atomic_write_json(os.path.join(dataset_dir, shards.MANIFEST_NAME), manifest)
    return {"records": len(shards.load_split_metadata(dataset_dir, "train"))}


def renamed(serialized, copy):
    from thyroid.compat import tf
    example = tf.train.Example.FromString(serialized)
    for name in ("image/key", "image/patient_id"):
        values = example.features.feature[name].bytes_list.value
        values[0] = values[0] + f"#{copy}".encode()
    return example.SerializeToString()


def features_stage(work_dir, checkpoint_dir):
    """The default study's frozen passes and image cache, then every file read back."""
    from bench.bottleneck_throughput import checkpoint_for
    from thyroid.nets import get_network
    from thyroid.training import features, frozen_network
    dataset_dir, cache_dir = os.path.join(work_dir, "shards"), os.path.join(work_dir, "cache")
    spec = get_network("efficientnet_lite0")
    checkpoint = checkpoint_for(spec.name, checkpoint_dir)
    seconds, files = {}, []
    for name, output, size in (("bottleneck 224", frozen_network.BOTTLENECK, 224),
                               ("prefix 128", frozen_network.FROZEN_PREFIX, 128),
                               ("pooled 224", frozen_network.POOLED_LAYERS, 224)):
        seconds[name], result = common.timed(features.load_or_compute, spec, dataset_dir, "train",
                                             output, checkpoint, size, cache_dir)
        files.append(result.values)
    seconds["images 64"], images = common.timed(features.load_or_resize, dataset_dir, "train", 64,
                                                cache_dir)
    files.append(images)

    def read_back():
        for rows in files:
            for start in range(0, len(rows), READ_BATCH):
                rows[start:start + READ_BATCH]
    seconds["read back"], _ = common.timed(read_back)
    return {"seconds": seconds, "cache_bytes": sum(os.path.getsize(os.path.join(cache_dir, f))
                                                   for f in os.listdir(cache_dir))}


def study_stage(work_dir, cases, kind, checkpoint_dir):
    command = [sys.executable, "-m", "thyroid.study", f"--output_dir={work_dir}", "--run_name=r",
               f"--num_cases={cases}", f"--checkpoint_dir={checkpoint_dir}",
               "--nodownload_checkpoints"] + (["--quick"] if kind == "quick" else [])
    subprocess.run(command, check=True, cwd=common.REPO_DIR, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    import csv
    with open(os.path.join(work_dir, "r", "summary.csv"), newline="") as f:
        return {"aucs": {row["row_id"]: row["auc"] for row in csv.DictReader(f)
                         if row["status"] == "ok"}}


def measured(stage, *args):
    """Runs ``--child=stage`` in a fresh process; -> (peak RSS GiB, wall s, its JSON)."""
    command = [sys.executable, "-m", "bench.memory_scale", f"--child={stage}",
               f"--child_args={json.dumps(args)}"]
    wrapper = ("import json, resource, subprocess, sys; "
               "out = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True); "
               "out.returncode and sys.exit(out.returncode); "
               "print(json.dumps({'peak_kib': resource.getrusage("
               "resource.RUSAGE_CHILDREN).ru_maxrss, 'stdout': out.stdout}))")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper] + command, cwd=common.REPO_DIR,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{stage} failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    result = json.loads(report["stdout"].strip().splitlines()[-1])
    return report["peak_kib"] / 2 ** 20, time.perf_counter() - started, result


def child(stage, args):
    common.quiet_tf()
    work = {"shards": shards_stage, "replicate": replicate_stage, "features": features_stage,
            "study": study_stage}[stage]
    print(json.dumps(work(*args), default=str))


def markdown(rows, study_rows, kind):
    table = common.format_table(
        ["scale", "cases", "records", "shards peak GiB", "shards s", "features peak GiB",
         "features s", "cache MiB"], rows)
    text = [table, ""]
    if study_rows:
        text += [f"`python -m thyroid.study{' --quick' if kind == 'quick' else ''} "
                 "--num_cases=N` (local executor):", "",
                 common.format_table(["scale", "cases", "study peak GiB", "x 1x peak",
                                      "wall s", "pooled AUCs (rows)"], study_rows), ""]
    text.append("Peak RSS of each stage's own process (ru_maxrss of the process and its "
                "children), one process per stage and scale. Features: EfficientNet-Lite0 "
                "bottleneck at 224 and 128 px with the frozen prefix, pooled layers at 224 px, "
                "resized images at 64 px, all into one cache; then every cached file read back "
                "in batches of 32.")
    return "\n".join(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", default="1,10", help="shards built for real, then features")
    parser.add_argument("--replicated_scales", default="30",
                        help="features only, on the 1x build's records repeated (memory only)")
    parser.add_argument("--study_scales", default="1,10")
    parser.add_argument("--shards_only", action="store_true",
                        help="for --scales, measure the shards stage alone")
    parser.add_argument("--study", choices=("quick", "default"), default="quick")
    parser.add_argument("--checkpoint_dir", default=None, help="default: a temp dir")
    parser.add_argument("--no_write", action="store_true")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child_args", default="[]", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, json.loads(args.child_args))
    work_dir = tempfile.mkdtemp(prefix="bench-memory-")
    checkpoint_dir = args.checkpoint_dir or os.path.join(work_dir, "checkpoints")
    results, rows, study_rows = {"stages": {}, "study": {}}, [], []
    try:
        for scale in [int(s) for s in args.scales.split(",") if s]:
            scale_dir = os.path.join(work_dir, f"x{scale}")
            cases = BASE_CASES["default"] * scale
            shards_gib, shards_s, made = measured("shards", scale_dir, cases)
            if args.shards_only:
                results["stages"][scale] = {"cases": cases, "shards_peak_gib": shards_gib,
                                            "shards_seconds": shards_s, **made}
                print(f"{scale}x shards: {made['records']} records, peak {shards_gib:.3f} GiB",
                      flush=True)
                shutil.rmtree(scale_dir, ignore_errors=True)
                continue
            features_gib, features_s, computed = measured("features", scale_dir, checkpoint_dir)
            results["stages"][scale] = {"cases": cases, "shards_peak_gib": shards_gib,
                                        "shards_seconds": shards_s, "features_peak_gib": features_gib,
                                        "features_seconds": features_s, **made, **computed}
            rows.append((f"{scale}x", cases, made["records"], shards_gib, shards_s, features_gib,
                         features_s, computed["cache_bytes"] / 2 ** 20))
            print(rows[-1], computed["seconds"], flush=True)
            shutil.rmtree(scale_dir, ignore_errors=True)
        replicated = [int(s) for s in args.replicated_scales.split(",") if s]
        if replicated:
            base_dir = os.path.join(work_dir, "base")
            measured("shards", base_dir, BASE_CASES["default"])
        for scale in replicated:
            scale_dir = os.path.join(work_dir, f"r{scale}")
            _, _, made = measured("replicate", scale_dir, os.path.join(base_dir, "shards"), scale)
            features_gib, features_s, computed = measured("features", scale_dir, checkpoint_dir)
            results["stages"][f"{scale} (replicated)"] = {
                "records": made["records"], "features_peak_gib": features_gib,
                "features_seconds": features_s, **computed}
            rows.append((f"{scale}x (1x records repeated)", "", made["records"], None, None,
                         features_gib, features_s, computed["cache_bytes"] / 2 ** 20))
            print(rows[-1], computed["seconds"], flush=True)
            shutil.rmtree(scale_dir, ignore_errors=True)
        for scale in [int(s) for s in args.study_scales.split(",") if s]:
            cases = BASE_CASES[args.study] * scale
            gib, seconds, outcome = measured("study", os.path.join(work_dir, f"study{scale}"),
                                             cases, args.study, checkpoint_dir)
            results["study"][scale] = {"cases": cases, "peak_gib": gib, "seconds": seconds,
                                       **outcome}
            base = results["study"].get(1, {}).get("peak_gib")
            study_rows.append((f"{scale}x", cases, gib, gib / base if base else None, seconds,
                               " / ".join(f"{v[:5]} ({k})" for k, v in outcome["aucs"].items())))
            print(study_rows[-1], flush=True)
            shutil.rmtree(os.path.join(work_dir, f"study{scale}"), ignore_errors=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    text = markdown(rows, study_rows, args.study)
    print(text)
    if not args.no_write:
        common.write_results("memory_scale", results, text)


if __name__ == "__main__":
    main()
