"""Running ``python -m thyroid.study --quick`` as a user would, and reading what it wrote."""

import csv
import io
import os
import re
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
    """The run's predictions.csv (or the predictions file ``run_dir`` names)."""
    path = run_dir if str(run_dir).endswith(".csv") else run_dir / "predictions.csv"
    with open(path, newline="") as f:
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


def same_summary_row(a, b, ignore=(), relative=1e-5):
    """Two summary.csv rows alike: the same columns, text equal, numbers within one unit of
    the sixth significant digit they are written with (runs whose probabilities agree to
    1e-6, not bit for bit, may round a figure's last digit apart)."""
    if set(a) - set(ignore) != set(b) - set(ignore):
        return False
    for name in set(a) - set(ignore):
        if a[name] == b[name]:
            continue
        try:
            x, y = float(a[name]), float(b[name])
        except ValueError:
            return False
        if abs(x - y) > relative * max(abs(x), abs(y)):
            return False
    return True


def same_summaries(run_a, run_b):
    """summary.csv of two runs alike row by row (``same_summary_row``), timing aside."""
    a, b = comparable_summary(run_a), comparable_summary(run_b)
    return set(a) == set(b) and all(same_summary_row(a[row], b[row]) for row in a)


def same_predictions(run_a, run_b, tolerance=1e-6):
    """Same rows, repeats, folds, images, patients and labels; probabilities, risks and
    thresholds within ``tolerance``."""
    a, b = read_predictions(run_a), read_predictions(run_b)
    key = ("row_id", "repeat", "fold", "image", "patient_id", "label", "spread")
    if [tuple(p[k] for k in key) for p in a] != [tuple(p[k] for k in key) for p in b]:
        return False
    return all(abs(float(p[name]) - float(q[name])) <= tolerance
               for p, q in zip(a, b) for name in ("prob", "risk", "threshold"))


# The shared quick study's flags beyond --quick: one thread per job, so its predictions are
# the same on any core count (the reference in tests/fixtures was made with them).
QUICK_REFERENCE_FLAGS = ("--cpus_per_job=1",)
FIXTURES = os.path.join(REPO, "tests", "fixtures")
REFERENCE_PREDICTIONS = os.path.join(FIXTURES, "quick_predictions.csv")
REFERENCE_SUMMARY_MD = os.path.join(FIXTURES, "quick_summary.md")
REFERENCE_SUMMARY_CSV = os.path.join(FIXTURES, "quick_summary.csv")
# A duration as the report prints one (report.py's _duration).
DURATION = re.compile(r"\b\d+(?:\.\d+)? s\b|\b\d+m \d\ds\b|\b\d+h \d\dm \d\ds\b")
SHARE = re.compile(r"\| \d+ % \|")
# Rows of the "Run" table that say when and where the run ran, or how long it took.
WHEN_AND_WHERE = ("date", "machine", "build seconds", "total time")


def _placeless(text, run_dir):
    """``text`` with the run's folders named as placeholders (as written, and as the report's
    Markdown escapes them)."""
    from thyroid.study.tables import md
    for path, name in ((run_dir.parent / "checkpoints", "<checkpoints>"), (run_dir, "<run>"),
                       (run_dir.parent, "<output>")):
        text = text.replace(md(str(path)), name).replace(str(path), name)
    return text


def timeless_summary_md(run_dir):
    """summary.md with its times, dates and machine masked and its folders as placeholders:
    what two runs of the same code and settings must share."""
    lines, in_stages = [], False
    for line in _placeless((run_dir / "summary.md").read_text(), run_dir).splitlines():
        if line.startswith("## "):
            in_stages = line == "## Time by stage"
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) > 2 and cells[1] in WHEN_AND_WHERE:
            line = f"| {cells[1]} | <masked> |"
        line = DURATION.sub("<time>", line)
        lines.append(SHARE.sub("| <share> |", line) if in_stages else line)
    return "\n".join(lines) + "\n"


def timeless_summary_csv(run_dir):
    """summary.csv without its time columns, its folders as placeholders."""
    with open(run_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    buffer = io.StringIO()
    if rows:
        names = [name for name in rows[0] if name not in TIME_COLUMNS]
        writer = csv.DictWriter(buffer, names, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return _placeless(buffer.getvalue(), run_dir)


def write_quick_reference(run_dir):
    """Writes the fixtures from a finished quick study run with QUICK_REFERENCE_FLAGS
    (``python tests/study_runs.py <run folder>``); regenerate them only on purpose."""
    import shutil
    os.makedirs(FIXTURES, exist_ok=True)
    shutil.copyfile(run_dir / "predictions.csv", REFERENCE_PREDICTIONS)
    with open(REFERENCE_SUMMARY_MD, "w") as f:
        f.write(timeless_summary_md(run_dir))
    with open(REFERENCE_SUMMARY_CSV, "w") as f:
        f.write(timeless_summary_csv(run_dir))


if __name__ == "__main__":
    import pathlib
    write_quick_reference(pathlib.Path(sys.argv[1]).resolve())


def copy_run(run_dir, destination, shards=False, train=()):
    """A copy of a finished run folder to change without touching the shared one: its plan,
    jobs and the shards' manifest and fold file (what the report reads), or every shard
    (``shards``: what a job rerun by hand reads), and the train folders named in ``train``
    (``08_efficientnet_lite0_bottleneck_svm``: a row's fits' outputs). The data and
    checkpoints stay shared."""
    import shutil
    destination.mkdir(parents=True)
    for name in train:
        shutil.copytree(run_dir / "train" / name, destination / "train" / name)
    shutil.copy2(run_dir / "plan.json", destination / "plan.json")
    shutil.copytree(run_dir / "jobs", destination / "jobs")
    if shards:
        shutil.copytree(run_dir / "shards", destination / "shards")
    else:
        (destination / "shards").mkdir()
        for name in ("manifest.json", "folds.json"):
            shutil.copy2(run_dir / "shards" / name, destination / "shards" / name)
    return destination


def snapshot(folder):
    """{relative path: bytes} of every file below ``folder``."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found
