"""Progressive transfer (``--init_from``): a quick study on other images (another seed of the
synthetic data) runs row 14, row 10 started from the shared quick run's exported model, beside
row 10 on the same folds with DeLong's test between them; a study on the shared run's own
images is refused in one line naming the count; flags that cannot go together are refused
before any work."""

import pathlib
import re
import subprocess

import pytest

from study_runs import REPO, read_predictions, read_rows, run_study, study_command


def _fast(*flags):
    """Rows 10 and 14 only, two folds, no augmented copies, no export (so no refits): the
    least that compares them (the copies change no original image, so no hash either)."""
    return ("--rows=10", "--cv_folds=2", "--augment_copies=0", "--noexport",
            "--cpus_per_job=1") + flags


def test_init_from_runs_row_14_beside_row_10_and_refuses_an_overlapping_run(quick_study,
                                                                            tmp_path):
    _, previous = quick_study
    checkpoints = previous.parent / "checkpoints"
    _, run_dir = run_study(tmp_path / "other", *_fast("--seed=1", f"--init_from={previous}"),
                           checkpoint_dir=checkpoints)
    rows = read_rows(run_dir)
    assert rows[10]["status"] == "ok" and rows[14]["status"] == "ok"
    assert "previous run" in rows[14]["checkpoint"] and str(previous) in rows[14]["checkpoint"]
    assert "ImageNet" in rows[10]["checkpoint"]
    # The same folds: every image in the same fold for both rows.
    folds = {}
    for record in read_predictions(run_dir):
        folds.setdefault(record["row_id"], {})[record["image"]] = record["fold"]
    assert folds["14"] == folds["10"] and len(folds["10"]) > 50
    summary = (run_dir / "summary.md").read_text()
    section = summary.split("## Progressive transfer")[1].split("\n## ")[0]
    print(section)
    assert re.search(r"\| 10 \| [^|]+ \| [\d.]+ \[[\d.]+, [\d.]+\] \| [^|]+ \| reference \|",
                     section)
    assert re.search(r"\| 14 \| [^|]+ \| [\d.]+ \[[\d.]+, [\d.]+\] \| [^|]+ \| \d\.\d{3} \|",
                     section)
    checked = re.search(r"None of this study's (\d+) images", section)
    assert checked and int(checked.group(1)) == len(folds["10"])
    # The shared run's own images (the same seed): refused before any row trains.
    command = study_command(tmp_path / "same", *_fast(f"--init_from={previous}"),
                            checkpoint_dir=checkpoints)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    errors = [line for line in done.stderr.splitlines() if line.startswith("study: error:")]
    assert done.returncode == 1 and len(errors) == 1, done.stderr[-2000:]
    count = re.search(r"--init_from=\S+: (\d+) of this study's (\d+) images are byte-identical "
                      r"to images that run trained on", errors[0])
    assert count and int(count.group(1)) == int(count.group(2)) > 0, errors[0]
    assert not (tmp_path / "same" / "run" / "train").exists()


@pytest.mark.parametrize("flags, words", [
    (("--rows=14",), "--rows=14: row 14 starts from a previous run's model"),
    (("--cv_folds=0", "--init_from={previous}"), "needs the cross-validated patient protocol"),
    (("--init_from={previous}",), "not a study run with a committed export"),
])
def test_init_from_is_refused_before_any_work(tmp_path, capsys, flags, words):
    from thyroid.study import __main__ as study
    previous = tmp_path / "previous"
    previous.mkdir()
    argv = [flag.format(previous=previous) for flag in flags]
    status = study.main(["study", "--quick", f"--output_dir={tmp_path / 'out'}", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and words in err[0], err
    assert not (tmp_path / "out").exists()


def _copy_of_what_row_14_reads(previous, destination):
    """A copy of the previous run's export result, the checkpoint it converted and its shards'
    manifest: all ``previous_run`` needs (the shared run itself must stay as it is)."""
    import shutil
    from thyroid.study.previous_run import previous_run
    found = previous_run(str(previous))
    wanted = [previous / "jobs" / "export" / "result.json",
              pathlib.Path(found.shards_dir) / "manifest.json",
              pathlib.Path(found.train_dir) / "checkpoint",
              *pathlib.Path(found.train_dir).glob(pathlib.Path(found.checkpoint).name + ".*")]
    for path in wanted:
        target = destination / path.relative_to(previous)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return previous_run(str(destination))


def test_a_changed_previous_checkpoint_is_a_change_of_the_studys_data(quick_study, tmp_path):
    """--resume refuses a run whose previous run's checkpoint or images changed since it was
    planned, as it does for the data folders; the shards job's fingerprint covers them."""
    from thyroid.study import data_record, kinds, source_names
    from thyroid.study.config import StudyConfig
    _, previous = quick_study
    copy = _copy_of_what_row_14_reads(previous, tmp_path / "previous")
    study = StudyConfig(init_from=copy.run_dir)
    recorded = data_record.record_sources(study)
    names = sorted(entry.path for entry in recorded["--init_from"])
    assert any(name.endswith(".index") for name in names) and \
        any(".data-" in name for name in names) and "shards/manifest.json" in names, names
    assert not source_names.is_external("--init_from")
    assert kinds.get("shards").sources("--init_from")
    assert data_record.compare(recorded, data_record.record_sources(study, recorded)) == []
    weights = next(pathlib.Path(copy.checkpoint).parent.glob(
        pathlib.Path(copy.checkpoint).name + ".data-*"))
    changed = bytearray(weights.read_bytes())
    changed[-1] ^= 1
    weights.write_bytes(bytes(changed))
    assert data_record.compare(recorded, data_record.record_sources(study, recorded)) == [
        data_record.DataChange("--init_from", added=0, removed=0, modified=1)]
    (tmp_path / "previous" / "jobs" / "export" / "result.json").unlink()
    changes = data_record.compare(recorded, data_record.record_sources(study, recorded))
    assert changes == [data_record.DataChange("--init_from", added=0, removed=len(names),
                                              modified=0)]
