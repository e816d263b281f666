"""--resume after the data changed: refused in one line, the run folder untouched; a touched but
unchanged file resumes normally; a committed ok result is never replaced by a failure."""

import hashlib
import os
import subprocess
import time

import pytest

from study_runs import REPO, study_command
from thyroid.datasets import synthetic as synth
from thyroid.study import data_record, driver
from thyroid.study.payloads import FoldFit
from thyroid.study.results import FAILED, OK, JobResult, read_result, write_result

FLAGS = ("--rows=1", "--noexport")


def _folder_digest(folder):
    """{relative path: sha256} of every file below ``folder``."""
    digests = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                digests[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return digests


def _study(tmp_path, data, *extra):
    command = study_command(tmp_path / "out", f"--ddti_dir={data}", *FLAGS, *extra,
                            checkpoint_dir=tmp_path / "checkpoints")
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """(tmp folder, ddti folder, run folder) of a finished one-row study on a DDTI folder."""
    tmp = tmp_path_factory.mktemp("resume_data")
    synth.generate(str(tmp / "data"), num_cases=24, num_local_cases=0, seed=0, width=160,
                   height=128)
    data = tmp / "data" / "ddti"
    done = _study(tmp, data)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, data, tmp / "out" / "run"


def _images(data):
    return sorted(name for name in os.listdir(data) if name.endswith(".jpg"))


def test_a_touched_but_unchanged_file_resumes_with_every_job_reused(finished_run):
    tmp, data, run_dir = finished_run
    path = data / _images(data)[0]
    later = time.time() + 100
    os.utime(path, (later, later))
    done = _study(tmp, data, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = len(os.listdir(run_dir / "jobs"))
    assert f"{jobs}/{jobs} done, 0 running, 0 failed ({jobs} reused)" in done.stderr


def test_changed_data_is_refused_in_one_line_and_the_run_is_left_untouched(finished_run):
    tmp, data, run_dir = finished_run
    changed = tmp / "changed"
    subprocess.run(["cp", "-a", str(data), str(changed)], check=True)
    images = _images(changed)
    with open(changed / images[0], "ab") as f:
        f.write(b"\0")
    os.remove(changed / images[1])
    with open(changed / images[2], "rb") as src, open(changed / "added.jpg", "wb") as dst:
        dst.write(src.read())
    # The same command on the edited data: the run was planned on ``data``, so point its
    # recorded folder at the edited copy by swapping the folders' names.
    os.rename(data, tmp / "original")
    os.rename(changed, data)
    try:
        before = _folder_digest(run_dir)
        done = _study(tmp, data, "--resume")
        after = _folder_digest(run_dir)
    finally:
        os.rename(data, changed)
        os.rename(tmp / "original", data)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()
    assert len([line for line in last if "error:" in line]) == 1
    assert "the data changed since" in last[-1]
    assert "--ddti_dir: 1 file(s) added, 1 removed, 1 modified" in last[-1]
    assert "start a new run" in last[-1]
    assert "Traceback" not in done.stderr
    assert after == before


def test_a_plan_without_a_data_record_is_refused(finished_run):
    _, _, run_dir = finished_run
    plan = driver.Plan.load(str(run_dir))
    with pytest.raises(driver.RunFolderError, match="kept no record of its data"):
        driver._check_data_unchanged(str(run_dir), driver.Plan(
            plan.run_dir, plan.study, plan.jobs, plan.started, plan.date, plan.machine, None))


def test_the_record_compares_by_content(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"one")
    (folder / "b.jpg").write_bytes(b"two")
    recorded = {"src": data_record.record_source(str(folder))}
    os.utime(folder / "a.jpg", (1, 1))
    assert data_record.compare(recorded, {"src": data_record.record_source(
        str(folder), recorded["src"])}) == []
    (folder / "b.jpg").write_bytes(b"TWO")
    (folder / "c.jpg").write_bytes(b"three")
    os.remove(folder / "a.jpg")
    changes = data_record.compare(recorded, {"src": data_record.record_source(
        str(folder), recorded["src"])})
    assert changes == [data_record.DataChange("src", added=1, removed=1, modified=1)]


def test_a_failure_never_replaces_a_committed_ok_result(tmp_path):
    run_dir = str(tmp_path)
    ok = JobResult("fit-1-r0-f0", "fit", OK, 1.0, 1.0, "abc", "",
                   FoldFit(repeat=0, fold=0, threshold=0.5, best_epochs=None, seconds=1.0))
    write_result(run_dir, ok, records=[{"image": "x", "prob": 0.1}])
    failed = JobResult("fit-1-r0-f0", "fit", FAILED, 2.0, 2.0, "def", "ValueError: boom")
    write_result(run_dir, failed)
    assert read_result(run_dir, ok.job) == ok
    kept = os.path.join(run_dir, "jobs", ok.job)
    assert os.path.isfile(os.path.join(kept, "records.json"))
    assert "boom" in open(os.path.join(kept, "failed.json"), encoding="utf-8").read()
