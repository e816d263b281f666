"""bench/gpu_check.py: without a GPU it says so and exits 0; its checks fail on a run that did
not use a GPU (the shared quick study, run on the CPU)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
    from bench.gpu_check import nvidia_smi_gpus, tensorflow_gpus
    if tensorflow_gpus() or nvidia_smi_gpus():
        pytest.skip("this machine has a GPU: run python -m bench.gpu_check itself")
    work = tmp_path / "work"
    done = subprocess.run([sys.executable, "-m", "bench.gpu_check", f"--work_dir={work}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "TensorFlow sees no GPU on this machine: nothing to check" in done.stdout
    assert not work.exists()  # no study was run


def test_the_checks_fail_on_a_cpu_run(quick_study):
    from bench import gpu_check
    _, run_dir = quick_study
    off_gpu = gpu_check.jobs_off_the_gpu(str(run_dir))
    # Rows 1 (small CNN), 9 (bottleneck + FC) and 10 (fine-tuning) train with TensorFlow.
    assert {problem.split("-")[1] for problem in off_gpu} == {"1", "9", "10"}
    assert all("Ray gave it no GPU" in problem for problem in off_gpu)
    assert gpu_check.finetune_images_per_second(str(run_dir)) > 0
    aucs = gpu_check.auc_differences(str(run_dir), str(run_dir))
    assert set(aucs) == {1, 8, 9, 10, 11} and all(g == c for g, c in aucs.values())
    lines, passed = gpu_check.compare(str(run_dir), str(run_dir))
    assert not passed and "not on the GPU: fit-10-r0-f0" in "\n".join(lines)
