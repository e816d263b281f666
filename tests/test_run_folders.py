"""Run folders: claimed atomically, one study at a time, never reused without --resume."""

import dataclasses
import os

import pytest

from thyroid.study import driver, locks
from thyroid.study.config import StudyConfig
from thyroid.study.plan import make_plan


def test_an_explicit_run_name_is_claimed_once(tmp_path):
    study = StudyConfig(output_dir=str(tmp_path), run_name="mine")
    first = driver._claim_new(study)
    with pytest.raises(driver.RunFolderError, match="already exists; add --resume"):
        driver._claim_new(study)
    assert first == str(tmp_path / "mine")


def test_default_names_that_collide_get_a_suffix(tmp_path, monkeypatch):
    study = StudyConfig(output_dir=str(tmp_path))
    monkeypatch.setattr(StudyConfig, "default_run_name", lambda self: "20261203-101010-x")
    claimed = [driver._claim_new(study) for _ in range(3)]
    assert [p.rsplit("/", 1)[1] for p in claimed] == [
        "20261203-101010-x", "20261203-101010-x-2", "20261203-101010-x-3"]


def test_a_run_folder_in_use_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with locks.study_lock(str(run_dir)):
        with pytest.raises(driver.RunFolderError, match="in use by a running study or job"):
            with locks.study_lock(str(run_dir)):
                pass
        with pytest.raises(driver.RunFolderError, match="in use by a running study"):
            with locks.study_lock(str(run_dir), shared=True):  # a job by hand, or a report
                pass
    with locks.study_lock(str(run_dir), shared=True):  # jobs by hand run side by side
        with locks.study_lock(str(run_dir), shared=True):
            with pytest.raises(driver.RunFolderError, match="in use by a running study or job"):
                with locks.study_lock(str(run_dir)):  # but no study beside them
                    pass
    with locks.study_lock(str(run_dir)):  # released when the study ends
        pass


def test_resume_finds_the_newest_unfinished_run_with_the_same_settings(tmp_path):
    study = StudyConfig(output_dir=str(tmp_path), quick=True)
    older = make_plan(dataclasses.replace(study, run_name="a"), driver._claim_new(
        dataclasses.replace(study, run_name="a")))
    newer = make_plan(dataclasses.replace(study, run_name="b"), driver._claim_new(
        dataclasses.replace(study, run_name="b")))
    assert older.started <= newer.started
    assert driver._newest_unfinished(study) == newer.run_dir
    with pytest.raises(driver.RunFolderError, match="no unfinished run with these settings"):
        driver._newest_unfinished(dataclasses.replace(study, seed=1))
    with pytest.raises(driver.RunFolderError, match=r"other settings \(seed\)"):
        driver._matching_plan(newer.run_dir, dataclasses.replace(study, seed=1))


def test_a_resumed_run_reruns_the_summaries_after_a_row_that_did_not_run(tmp_path, monkeypatch):
    """Row 2 was skipped (no checkpoint) and the pooled figures and the report were made
    without it. Resumed once its checkpoint is in place, the local executor runs row 2's jobs
    again and then the summaries too, though their fingerprints are unchanged; row 1's jobs and
    the data are reused."""
    import time
    from thyroid.study import executor, jobs, kinds, payloads
    from thyroid.study.fingerprint import job_fingerprint
    from thyroid.study.results import OK, SKIPPED, JobResult, write_result
    study = StudyConfig(output_dir=str(tmp_path), run_name="run", quick=True, rows=(1, 2),
                        export=False)
    plan = make_plan(study, driver._claim_new(study))

    done = {"data": payloads.Sources(None, None, "synthetic"), "report": payloads.ReportPayload(
        "summary.md"), "shards": payloads.ShardsPayload("shards"), "features":
        payloads.FeaturesPayload(), "checkpoints": payloads.CheckpointsPayload([]), "fit":
        payloads.FoldFit(0, 0, 0.5, None, 0.1), "pooled": payloads.PooledPayload({}, "refit")}

    def commit(job, status):
        result = JobResult(job.id, job.kind, status, 0.1, time.time(),
                           job_fingerprint(plan, job), "no checkpoint" if status != OK else "",
                           done[job.kind] if status == OK else None)
        write_result(plan.run_dir, result)
        for path in kinds.get(job.kind).outputs(plan, job, result.payload) if result.ok else ():
            if os.path.splitext(path)[1]:  # what the job would have written: a file,
                os.makedirs(os.path.dirname(path), exist_ok=True)
                open(path, "a").close()
            else:  # or a folder
                os.makedirs(path, exist_ok=True)
        return result

    for job in plan.jobs:  # the first run: row 2 skipped, the summaries made without it
        commit(job, SKIPPED if job.row_id == 2 else OK)
    ran = []
    monkeypatch.setattr(jobs, "run_job", lambda plan, job: ran.append(job.id) or commit(job, OK))
    results = executor.LocalExecutor().run(plan, resume=True)
    row_2 = [job.id for job in plan.jobs if job.row_id == 2]
    assert row_2 and ran == row_2 + ["pooled", "report"]
    assert all(result.ok for result in results.values())
    ran.clear()  # resumed again with nothing left to do: every job is reused
    executor.LocalExecutor().run(plan, resume=True)
    assert ran == []
