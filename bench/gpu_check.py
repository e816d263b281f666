"""Is the study right on this machine's GPU? A check for a user's GPU machine.

    python -m bench.gpu_check [--work_dir=DIR] [--keep]

Says which GPU TensorFlow sees. Without one it says so and exits 0 (nothing to check), unless
``nvidia-smi`` lists a GPU that TensorFlow cannot use (then it says how to install TensorFlow's
CUDA libraries and exits 1). With one it runs the quick study twice, offline (rows whose
ImageNet weights are not on disk are skipped in both):

1. on the GPU: ``--executor=ray --gpus_per_job=0.5`` (needs ``pip install '.[gpu,ray]'``);
2. on the CPU: the local executor with ``CUDA_VISIBLE_DEVICES=-1``;

and checks that every job that trains a network (``fit`` of rows trained with TensorFlow)
ran with a GPU given by Ray and seen by TensorFlow (each job's result records both), compares
row 10's fine-tuning images per second (training steps x batch / the fold job's seconds,
median over folds) on GPU and CPU, and checks that every row's pooled AUC on the GPU is within
``AUC_TOLERANCE`` of the CPU run's. Exit status 0 when every check passes. About 5 minutes on
one GPU (two quick studies).
"""

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common

AUC_TOLERANCE = 0.01
FINETUNE_ROW = 10
# Rows whose fit jobs train a TensorFlow network (the others fit scikit-learn on features).
TRAINED_MODES = ("scratch", "finetune", "bottleneck_fc")


def tensorflow_gpus():
    """[{name, details}] of the GPUs TensorFlow sees."""
    from thyroid.compat import tf
    found = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(device)
        except (RuntimeError, ValueError):
            details = {}
        found.append({"name": device.name, "details": {k: str(v) for k, v in details.items()}})
    return found


def nvidia_smi_gpus():
    """Lines of ``nvidia-smi -L`` (one per GPU the driver sees), [] without the tool."""
    if shutil.which("nvidia-smi") is None:
        return []
    done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return [line for line in done.stdout.splitlines() if line.startswith("GPU ")]


def run_study(work, name, flags, env):
    """The quick study in ``work/name``; -> its run folder (raises with its stderr on failure)."""
    command = [sys.executable, "-m", "thyroid.study", "--quick", f"--output_dir={work}",
               f"--run_name={name}", f"--checkpoint_dir={os.path.join(work, 'checkpoints')}",
               "--nodownload_checkpoints", *flags]
    done = subprocess.run(command, cwd=common.REPO_DIR, capture_output=True, text=True,
                          env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return os.path.join(work, name)


def job_results(run_dir, kind):
    """{job id: result.json} of the run's jobs of ``kind``."""
    with open(os.path.join(run_dir, "plan.json")) as f:
        jobs = json.load(f)["jobs"]
    found = {}
    for job in jobs:
        path = os.path.join(run_dir, "jobs", job["id"], "result.json")
        if job["kind"] == kind and os.path.exists(path):
            with open(path) as f:
                found[job["id"]] = dict(json.load(f), row_id=job["row_id"])
    return found


def jobs_off_the_gpu(run_dir):
    """The ok fit jobs of rows trained with TensorFlow that did not run on a GPU, with why."""
    from thyroid.study.rows import get_row
    problems = []
    for job_id, result in sorted(job_results(run_dir, "fit").items()):
        if result["status"] != "ok" or get_row(result["row_id"]).mode not in TRAINED_MODES:
            continue
        worker = result.get("worker") or {}
        if not worker.get("gpus"):
            problems.append(f"{job_id}: Ray gave it no GPU (CUDA_VISIBLE_DEVICES unset)")
        elif not worker.get("tensorflow_gpus"):
            problems.append(f"{job_id}: TensorFlow saw no GPU in its process")
    return problems


def finetune_images_per_second(run_dir, row_id=FINETUNE_ROW):
    """Median over row ``row_id``'s folds of training steps x batch size / fold seconds."""
    from thyroid.study.rows import get_row
    rates = []
    for result in job_results(run_dir, "fit").values():
        if result["row_id"] != row_id or result["status"] != "ok":
            continue
        payload = result["payload"]
        fold_dir = os.path.join(run_dir, "train", get_row(row_id).folder_name(),
                                f"repeat{payload['repeat']}_fold{payload['fold']}")
        with open(os.path.join(fold_dir, "run_config.json")) as f:
            batch = json.load(f)["config"]["batch_size"]
        rates.append(trained_steps(fold_dir) * batch / payload["seconds"])
    return statistics.median(rates) if rates else None


def trained_steps(train_dir):
    """The step of the run's latest checkpoint (its ``checkpoint`` file names it)."""
    with open(os.path.join(train_dir, "checkpoint")) as f:
        first = f.readline()
    return int(first.rsplit("-", 1)[1].strip().strip('"'))


def auc_differences(gpu_dir, cpu_dir):
    """{row id: (GPU AUC, CPU AUC)} of the rows that ran in both."""
    def rows(run_dir):
        with open(os.path.join(run_dir, "summary.csv"), newline="") as f:
            return {int(r["row_id"]): r for r in csv.DictReader(f)}
    gpu, cpu = rows(gpu_dir), rows(cpu_dir)
    return {row_id: (float(gpu[row_id]["auc"]), float(cpu[row_id]["auc"]))
            for row_id in sorted(set(gpu) & set(cpu))
            if gpu[row_id]["status"] == cpu[row_id]["status"] == "ok"}


def compare(gpu_dir, cpu_dir):
    """(lines of the report, every check passed)."""
    off_gpu = jobs_off_the_gpu(gpu_dir)
    fits = [r for r in job_results(gpu_dir, "fit").values() if r["status"] == "ok"]
    gpu_rate = finetune_images_per_second(gpu_dir)
    cpu_rate = finetune_images_per_second(cpu_dir)
    aucs = auc_differences(gpu_dir, cpu_dir)
    far = {row_id: pair for row_id, pair in aucs.items() if abs(pair[0] - pair[1]) > AUC_TOLERANCE}
    lines = [f"fit jobs on the GPU: {len(fits) - len(off_gpu)} of {len(fits)} checked"
             + "".join(f"\n  not on the GPU: {problem}" for problem in off_gpu)]
    if gpu_rate and cpu_rate:
        lines.append(f"row {FINETUNE_ROW} fine-tuning: {gpu_rate:.1f} images/s on the GPU, "
                     f"{cpu_rate:.1f} on the CPU ({gpu_rate / cpu_rate:.2f}x)")
    else:
        lines.append(f"row {FINETUNE_ROW} fine-tuning: no finished folds to time")
    lines += [f"row {row_id}: AUC {g:.4f} on the GPU, {c:.4f} on the CPU (|diff| "
              f"{abs(g - c):.4f}{' > ' + str(AUC_TOLERANCE) if row_id in far else ''})"
              for row_id, (g, c) in aucs.items()]
    passed = not off_gpu and bool(fits) and bool(aucs) and not far and bool(gpu_rate)
    return lines, passed


def check_with_gpu(work):
    gpu_dir = run_study(work, "gpu", ["--executor=ray", "--gpus_per_job=0.5"],
                        dict(os.environ))
    cpu_dir = run_study(work, "cpu", [], dict(os.environ, CUDA_VISIBLE_DEVICES="-1"))
    lines, passed = compare(gpu_dir, cpu_dir)
    print("\n".join(lines))
    print("GPU check passed" if passed else "GPU check FAILED")
    return 0 if passed else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work_dir", help="where the two studies run (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep a temp work dir")
    args = parser.parse_args(argv)
    common.quiet_tf()
    gpus = tensorflow_gpus()
    if not gpus:
        listed = nvidia_smi_gpus()
        if listed:
            print(f"TensorFlow sees no GPU, but nvidia-smi lists {len(listed)} "
                  f"({'; '.join(listed)}): install TensorFlow's CUDA libraries with "
                  "pip install '.[gpu,ray]'")
            return 1
        print("TensorFlow sees no GPU on this machine: nothing to check (the study runs on "
              "the CPU).")
        return 0
    for gpu in gpus:
        print(f"TensorFlow sees {gpu['name']}: " + ", ".join(
            f"{k} {v}" for k, v in sorted(gpu["details"].items())))
    work = args.work_dir or tempfile.mkdtemp(prefix="gpu-check-")
    try:
        return check_with_gpu(work)
    finally:
        if not args.work_dir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
