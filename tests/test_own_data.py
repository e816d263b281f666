"""The study on a site's own labelled images: class folders or a CSV list, as development data."""

import csv
import os
import shutil
import subprocess

import pytest

from study_runs import REPO, read_predictions, read_rows, study_command
from thyroid.datasets import ddti
from thyroid.datasets import synthetic as synth
from thyroid.study import tables


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    """(root, number of labelled images): the synthetic DDTI images re-filed as
    ``folders/<benign|malignant>/`` and as ``list/images.csv`` with a patient_id column."""
    root = tmp_path_factory.mktemp("own_data")
    synth.generate(str(root / "gen"), num_cases=30, num_local_cases=0, seed=3, width=160,
                   height=128)
    source, rows = root / "gen" / "ddti", []
    for name in sorted(n for n in os.listdir(source) if n.endswith(".xml")):
        fields, marks = ddti.parse_case(str(source / name))
        label = ddti.tirads_label(fields["tirads"])
        if label is None:
            continue
        for index, _ in marks:
            image, klass = f"{name[:-4]}_{index}.jpg", ("benign", "malignant")[label]
            (root / "folders" / klass).mkdir(parents=True, exist_ok=True)
            shutil.copy(source / image, root / "folders" / klass / image)
            rows.append({"path": f"../folders/{klass}/{image}", "label": label,
                         "patient_id": f"p{name[:-4]}"})
    (root / "list").mkdir()
    with open(root / "list" / "images.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["path", "label", "patient_id"])
        writer.writeheader()
        writer.writerows(rows)
    return root, len(rows)


def _study(root, run_name, *flags):
    command = study_command(root / "out", "--rows=1", "--noexport", *flags, run_name=run_name,
                            checkpoint_dir=root / "checkpoints")
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_the_study_cross_validates_class_folders(own_data):
    root, images = own_data
    done = _study(root, "folders", f"--image_dir={root / 'folders'}")
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = root / "out" / "folders"
    assert read_rows(run_dir)[1]["status"] == "ok"
    predictions = read_predictions(run_dir)
    assert len(predictions) == images  # every labelled image scored once, out of fold
    assert {p["fold"] for p in predictions} == {"0", "1", "2"}
    summary = (run_dir / "summary.md").read_text(encoding="utf-8")
    assert "Patient grouping was not possible" in summary
    assert tables.md(f"folders {root / 'folders'}") in summary


def test_the_study_cross_validates_a_csv_with_patient_ids(own_data):
    root, images = own_data
    done = _study(root, "csv", f"--csv={root / 'list' / 'images.csv'}")
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = root / "out" / "csv"
    predictions = read_predictions(run_dir)
    assert len(predictions) == images
    folds_of = {}
    for p in predictions:  # a patient's images share one test fold
        folds_of.setdefault(p["patient_id"], set()).add(p["fold"])
    assert len(folds_of) < images and all(len(f) == 1 for f in folds_of.values())
    assert "Patient grouping was not possible" not in (run_dir / "summary.md").read_text()


def test_a_development_source_without_a_usable_labelled_image_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    done = _study(tmp_path, "run", f"--image_dir={tmp_path / 'empty'}")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"study: error: --image_dir {tmp_path / 'empty'}: no usable labelled")
    assert not (tmp_path / "out").exists()
