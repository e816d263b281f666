"""Run files edited by hand or written by another version: no traceback. A result.json that
cannot be read as its job's result counts as not done (the report says so; --resume would run
the job again); a plan.json that cannot be read is refused in one line naming it."""

import json
import logging

import pytest
from absl import flags

from study_runs import copy_run
from thyroid.study import __main__ as study_main
from thyroid.study.results import read_result

EDITS = {
    "an extra key": lambda saved: dict(saved, comment="edited"),
    "no seconds": lambda saved: {k: v for k, v in saved.items() if k != "seconds"},
    "a list": lambda saved: [],
    "a string payload": lambda saved: dict(saved, payload="fine"),
    "a payload with an unknown figure": lambda saved: dict(saved, payload=dict(
        saved["payload"], summaries={"8": dict(saved["payload"]["summaries"]["8"],
                                               auc_renamed=0.9)})),
}


@pytest.fixture
def run_copy(quick_study, tmp_path):
    _, run_dir = quick_study
    return copy_run(run_dir, tmp_path / "run", train=("08_efficientnet_lite0_bottleneck_svm",))


def _edit(path, change):
    saved = json.loads(path.read_text())
    path.write_text(json.dumps(change(saved)))


def _one_error_line(captured):
    lines = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err and len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_result_counts_as_not_done_and_the_report_says_so(run_copy, edit, caplog,
                                                                    capsys):
    path = run_copy / "jobs" / "pooled" / "result.json"
    _edit(path, EDITS[edit])
    with caplog.at_level(logging.WARNING):
        assert read_result(str(run_copy), "pooled") is None
    assert str(path) in caplog.text and "counts as not done" in caplog.text
    assert study_main.main(["study", f"--report_only={run_copy}"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    rows = (run_copy / "summary.csv").read_text().splitlines()
    row_8 = next(line for line in rows if line.startswith("8,"))
    assert ",ok,," in row_8  # the row ran, but without the pooled job it has no figures


def test_a_result_of_another_job_is_not_taken(run_copy):
    saved = (run_copy / "jobs" / "fit-8-r0-f0" / "result.json").read_text()
    (run_copy / "jobs" / "fit-8-r0-f1" / "result.json").write_text(saved)
    assert read_result(str(run_copy), "fit-8-r0-f1") is None
    assert read_result(str(run_copy), "fit-8-r0-f0").payload.fold == 0


@pytest.mark.parametrize("edit, reason", [
    (lambda plan: {k: v for k, v in plan.items() if k != "jobs"}, "not a study plan"),
    (lambda plan: dict(plan, format=1), "a plan of format 1, this version reads format 2"),
    (lambda plan: dict(plan, jobs=[{"kind": "fit", "stage": "s", "row_id": "x"}, 3]),
     "not a study plan"),
])
def test_a_plan_that_cannot_be_read_is_refused_in_one_line(run_copy, capsys, edit, reason):
    _edit(run_copy / "plan.json", edit)
    assert study_main.main(["study", f"--report_only={run_copy}"]) == 1
    line = _one_error_line(capsys.readouterr())
    assert str(run_copy / "plan.json") in line and reason in line
    to_stderr = flags.FLAGS["alsologtostderr"].value  # the study turns it on for its progress
    try:
        assert study_main.main(["study", "--quick", f"--output_dir={run_copy.parent}",
                                "--run_name=run", "--resume", "--nodownload_checkpoints"]) == 2
    finally:
        flags.FLAGS["alsologtostderr"].value = to_stderr
    line = _one_error_line(capsys.readouterr())
    assert "--resume" in line and str(run_copy / "plan.json") in line
