"""The data record a resumed run is checked against, and the rule that a committed ok result is
never replaced by a failure (the study-level resume tests are in test_own_data.py)."""

import os

from thyroid.study import data_record
from thyroid.study.payloads import FoldFit
from thyroid.study.results import FAILED, OK, JobResult, read_result, write_result


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
