"""The study on a site's own labelled images: class folders or a CSV list, as development data;
then --resume on that run after its data changed (refused, the run untouched) or were only
touched (resumed, every job reused); and an external set that fails after the up-front check.
One finished run per data kind serves every test here."""

import csv
import hashlib
import os
import shutil
import subprocess
import time

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


@pytest.fixture(scope="module")
def folders_run(own_data):
    """The finished run on ``--image_dir`` (its data folder, its run folder)."""
    root, _ = own_data
    done = _study(root, "folders", f"--image_dir={root / 'folders'}")
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "folders", root / "out" / "folders"


def test_the_study_cross_validates_class_folders(own_data, folders_run):
    root, images = own_data
    _, run_dir = folders_run
    assert read_rows(run_dir)[1]["status"] == "ok"
    predictions = read_predictions(run_dir)
    assert len(predictions) == images  # every labelled image scored once, out of fold
    assert {p["fold"] for p in predictions} == {"0", "1", "2"}
    summary = (run_dir / "summary.md").read_text(encoding="utf-8")
    assert "Patient grouping was not possible" in summary
    assert tables.md(f"folders {root / 'folders'}") in summary


def test_a_csv_with_patient_ids_and_an_external_set_that_fails_after_the_check(own_data):
    """The CSV run also carries an external set that passes the up-front check (labelled
    files) but cannot be built (undecodable): the report and the exit status say so."""
    root, images = own_data
    for name in ("benign", "malignant"):
        (root / "bad_external" / name).mkdir(parents=True)
        (root / "bad_external" / name / "scan.jpg").write_bytes(b"not an image")
    done = _study(root, "csv", f"--csv={root / 'list' / 'images.csv'}",
                  f"--external_image_dir={root / 'bad_external'}")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "external validation failed" in done.stderr.strip().splitlines()[-1]
    run_dir = root / "out" / "csv"
    summary = (run_dir / "summary.md").read_text(encoding="utf-8")
    assert "EXTERNAL VALIDATION FAILED" in summary and "no usable labelled image" in summary
    predictions = [p for p in read_predictions(run_dir) if p["fold"] in ("0", "1", "2")]
    assert len(predictions) == images
    folds_of = {}
    for p in predictions:  # a patient's images share one test fold
        folds_of.setdefault(p["patient_id"], set()).add(p["fold"])
    assert len(folds_of) < images and all(len(f) == 1 for f in folds_of.values())
    assert "Patient grouping was not possible" not in summary


def test_a_development_source_without_a_usable_labelled_image_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    done = _study(tmp_path, "run", f"--image_dir={tmp_path / 'empty'}")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"study: error: --image_dir {tmp_path / 'empty'}: no usable labelled")
    assert not (tmp_path / "out").exists()


def _folder_digest(folder):
    """{relative path: sha256} of every file below ``folder``."""
    digests = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                digests[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return digests


def test_resume_after_a_touch_reuses_every_job(own_data, folders_run):
    root, _ = own_data
    data, run_dir = folders_run
    path = data / "benign" / sorted(os.listdir(data / "benign"))[0]
    later = time.time() + 100
    os.utime(path, (later, later))
    done = _study(root, "folders", f"--image_dir={data}", "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = len(os.listdir(run_dir / "jobs"))
    assert f"{jobs}/{jobs} done, 0 running, 0 failed ({jobs} reused)" in done.stderr


def test_resume_after_the_data_changed_is_refused_and_the_run_left_untouched(own_data,
                                                                             folders_run):
    root, _ = own_data
    data, run_dir = folders_run
    changed = root / "changed"
    shutil.copytree(data, changed)
    benign = sorted(os.listdir(changed / "benign"))
    with open(changed / "benign" / benign[0], "ab") as f:
        f.write(b"\0")
    os.remove(changed / "benign" / benign[1])
    shutil.copy(changed / "benign" / benign[2], changed / "malignant" / "added.jpg")
    # The same command on edited data: swap the folders so the recorded path holds the edits.
    os.rename(data, root / "original")
    os.rename(changed, data)
    try:
        before = _folder_digest(run_dir)
        done = _study(root, "folders", f"--image_dir={data}", "--resume")
        after = _folder_digest(run_dir)
    finally:
        os.rename(data, changed)
        os.rename(root / "original", data)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "the data changed since" in last and "start a new run" in last
    assert "--image_dir: 1 file(s) added, 1 removed, 1 modified" in last
    assert after == before


def test_a_plan_without_a_data_record_cannot_be_resumed(folders_run):
    import dataclasses
    from thyroid.study import driver
    _, run_dir = folders_run
    plan = dataclasses.replace(driver.Plan.load(str(run_dir)), sources=None)
    with pytest.raises(driver.RunFolderError, match="kept no record of its data"):
        driver._check_data_unchanged(str(run_dir), plan)


def test_a_committed_job_whose_outputs_are_gone_runs_again_on_resume(own_data, folders_run):
    """N4: the shards folder removed from a finished run; --resume rebuilds it (the job is
    not done without its outputs) and the run ends as before."""
    root, _ = own_data
    data, run_dir = folders_run
    before = read_predictions(run_dir)
    shutil.rmtree(run_dir / "shards")
    done = _study(root, "folders", f"--image_dir={data}", "--resume")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert (run_dir / "shards" / "manifest.json").is_file()
    assert read_predictions(run_dir) == before


def test_a_row_whose_fit_lost_its_records_is_reported_incomplete(own_data, folders_run):
    """N17: one fit's records.json deleted, then --report_only: the row is not ok, and its
    figures are not reported over images it no longer has."""
    import sys
    _, run_dir = folders_run
    fit = sorted(p for p in (run_dir / "jobs").iterdir() if p.name.startswith("fit-"))[0]
    os.remove(fit / "records.json")
    done = subprocess.run([sys.executable, "-m", "thyroid.study", f"--report_only={run_dir}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    row = read_rows(run_dir)[1]
    assert row["status"] != "ok" and "did not finish" in row["note"]
    assert row["auc"] == ""
