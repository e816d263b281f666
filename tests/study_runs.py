"""Running ``python -m thyroid.study --quick`` as a user would, and reading what it wrote."""

import csv
import os
import subprocess
import sys

from thyroid.stats import pooled

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def study_command(output_dir, *flags, run_name="run", checkpoint_dir=None):
    """The command line; studies compared with each other share a ``checkpoint_dir`` (the
    report names the checkpoint's path)."""
    checkpoint_dir = checkpoint_dir or output_dir / "checkpoints"
    return [sys.executable, "-m", "thyroid.study", "--quick", f"--output_dir={output_dir}",
            f"--run_name={run_name}", f"--checkpoint_dir={checkpoint_dir}",
            "--nodownload_checkpoints", *flags]


def run_study(output_dir, *flags, run_name="run", timeout=900, checkpoint_dir=None):
    """(finished process, run folder) of a study that must succeed."""
    command = study_command(output_dir, *flags, run_name=run_name, checkpoint_dir=checkpoint_dir)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, output_dir / run_name


def read_rows(run_dir):
    with open(run_dir / "summary.csv", newline="") as f:
        return {int(row["row_id"]): row for row in csv.DictReader(f)}


def read_predictions(run_dir):
    with open(run_dir / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def read_predictions_csv(path):
    """The records of a predictions.csv (values as strings, as ``pooled`` accepts them)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != pooled.PREDICTION_COLUMNS:
            raise ValueError(f"{path}: columns {reader.fieldnames} are not "
                             f"{','.join(pooled.PREDICTION_COLUMNS)}")
        return list(reader)


TIME_COLUMNS = ("train_seconds",)


def comparable_summary(run_dir):
    """summary.csv without its timing columns."""
    return {row_id: {k: v for k, v in row.items() if k not in TIME_COLUMNS}
            for row_id, row in read_rows(run_dir).items()}


def same_predictions(run_a, run_b, tolerance=1e-6):
    """Same rows, repeats, folds and images, probabilities within ``tolerance``."""
    a, b = read_predictions(run_a), read_predictions(run_b)
    key = ("row_id", "repeat", "fold", "image")
    if [tuple(p[k] for k in key) for p in a] != [tuple(p[k] for k in key) for p in b]:
        return False
    return all(abs(float(p["prob"]) - float(q["prob"])) <= tolerance
               and p["label"] == q["label"] for p, q in zip(a, b))


def snapshot(folder):
    """{relative path: bytes} of every file below ``folder``."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found
