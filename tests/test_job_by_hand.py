"""One job run by hand (``python -m thyroid.study.job``): it restores a deleted job's result
as the executor wrote it, respects the run's and the jobs' locks, and a plan run job by job in
``--list`` order reports what the executor reported."""

import json
import shutil
import subprocess
import sys

from study_runs import (QUICK_REFERENCE_FLAGS, REPO, copy_run, same_predictions, study_command,
                        timeless_summary_csv, timeless_summary_md)
from thyroid.study import __main__ as study_main
from thyroid.study import job as job_command
from thyroid.study import locks
from thyroid.study.results import job_dir

# What differs between two runs of one job: when it ran, for how long, and where.
TIMES = ("seconds", "cpu_seconds", "finished", "worker")


def _timeless(path):
    saved = json.loads(path.read_text())
    if isinstance(saved.get("payload"), dict):
        saved["payload"].pop("seconds", None)  # a fit's own time
    return {k: v for k, v in saved.items() if k not in TIMES}


def _one_line(captured):
    lines = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err and len(lines) == 1, captured.err
    return lines[0]


def test_a_deleted_job_rerun_by_hand_is_restored(quick_study, tmp_path, capsys):
    _, shared = quick_study
    run_dir = copy_run(shared, tmp_path / "run", shards=True)
    gone = run_dir / "jobs" / "fit-8-r0-f0"
    shutil.rmtree(gone)
    assert job_command.main(["job", f"--run={run_dir}", "--list"]) == 0
    listed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert all(len(fields) == 4 and fields[0].isdigit() for fields in listed)
    state = {fields[1]: fields[3] for fields in listed}
    assert state["fit-8-r0-f0"] == "ready" and state["pooled"] == "stale"
    assert state["fit-8-r0-f1"] == "stale"  # its train folder was not copied
    assert job_command.main(["job", f"--run={run_dir}", "--job=fit-8-r0-f0",
                             "--cpus_per_job=1"]) == 0
    assert capsys.readouterr().out.strip() == "fit-8-r0-f0: ok"
    original = shared / "jobs" / "fit-8-r0-f0"
    assert _timeless(gone / "result.json") == _timeless(original / "result.json")
    assert (gone / "records.json").read_bytes() == (original / "records.json").read_bytes()
    assert job_command.main(["job", f"--run={run_dir}", "--job=fit-8-r0-f0"]) == 2
    assert "already done" in _one_line(capsys.readouterr())
    assert job_command.main(["job", f"--run={run_dir}", "--job=report"]) == 2
    assert "its inputs are not committed: " in _one_line(capsys.readouterr())


def test_jobs_respect_the_locks_of_the_run_and_of_each_other(quick_study, tmp_path, capsys):
    _, shared = quick_study
    run_dir = copy_run(shared, tmp_path / "run")
    with locks.job_lock(job_dir(str(run_dir), "pooled"), "pooled"):  # pooled runs by hand
        assert job_command.main(["job", f"--run={run_dir}", "--job=pooled", "--force"]) == 2
        assert "--job=pooled: this job is running already" in _one_line(capsys.readouterr())
        assert study_main.main(["study", f"--report_only={run_dir}"]) == 2
        assert "job pooled is running" in _one_line(capsys.readouterr())
    with locks.study_lock(str(run_dir)):  # a study runs there
        assert job_command.main(["job", f"--run={run_dir}", "--job=pooled", "--force"]) == 2
        assert "in use by a running study" in _one_line(capsys.readouterr())
        assert study_main.main(["study", f"--report_only={run_dir}"]) == 2
        assert "in use by a running study" in _one_line(capsys.readouterr())


BY_HAND = """
import sys
from thyroid.study import job
run, ids = sys.argv[1], sys.argv[2:]
for one in ids:
    status = job.main(["job", f"--run={run}", f"--job={one}", "--cpus_per_job=1"])
    if status:
        sys.exit(f"{one}: exit {status}")
"""


def test_a_plan_run_by_hand_in_list_order_reports_what_the_executor_did(quick_study,
                                                                        tmp_path):
    _, executed = quick_study
    planned = subprocess.run(study_command(tmp_path, *QUICK_REFERENCE_FLAGS, "--plan_only"),
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    run_dir = tmp_path / "run"
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert planned.stdout.strip() == f"plan: {run_dir / 'plan.json'}"
    assert sorted(p.name for p in run_dir.iterdir()) == ["plan.json", "study.lock"]
    listed = subprocess.run([sys.executable, "-m", "thyroid.study.job", f"--run={run_dir}",
                             "--list"], cwd=REPO, capture_output=True, text=True, timeout=300)
    ids = [line.split("\t")[1] for line in listed.stdout.splitlines()]
    assert len(ids) > 40 and ids[0] == "data" and ids[-1] == "report"
    done = subprocess.run([sys.executable, "-c", BY_HAND, str(run_dir), *ids], cwd=REPO,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert same_predictions(executed / "predictions.csv", run_dir / "predictions.csv", 1e-6)
    assert timeless_summary_md(run_dir) == timeless_summary_md(executed)
    assert timeless_summary_csv(run_dir) == timeless_summary_csv(executed)


def test_report_only_refuses_the_flags_it_cannot_honour(tmp_path, capsys):
    """N10: --rows, --resume or --executor beside --report_only are refused, not ignored."""
    from thyroid.study import __main__ as study_main
    for flag in ("--rows=1", "--resume", "--executor=ray"):
        assert study_main.main(["study", f"--report_only={tmp_path}", flag]) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith(f"study: error: {flag.split('=')[0]}") and "--report_only" in line
