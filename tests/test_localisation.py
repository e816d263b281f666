"""Rows 12 and 13 (localise, then classify): in the plan only when asked, in --quick, reported
beside row 11; the nodule view and its fallback."""

import json
import os

import numpy as np

from study_runs import read_rows
from thyroid.study import plan as study_plan
from thyroid.study.config import StudyConfig
from thyroid.training import localise


def test_the_default_study_plans_no_localisation():
    jobs = study_plan.plan_jobs(StudyConfig(quick=True))
    assert not [job for job in jobs if job.kind in ("outlines", "segment")]
    assert {job.row_id for job in jobs if job.row_id} == set(range(1, 12))
    asked = study_plan.plan_jobs(StudyConfig(quick=True, rows=(10, 12)))
    ids = [job.id for job in asked]
    assert ids.index("outlines") < ids.index("features-12") < ids.index("fit-12-r0-f0")
    assert "outlines" in asked[ids.index("fit-12-r0-f0")].inputs
    assert "segment" in asked[ids.index("export")].inputs
    external = StudyConfig(quick=True, rows=(11, 13), external=(("ddti", "/x"),))
    assert {job.id for job in study_plan.plan_jobs(external) if job.kind == "refit"} == {"refit-11"}


def test_localisation_rows_refuse_a_single_split_in_one_line(tmp_path, capsys):
    from thyroid.study.__main__ import main
    status = main(["study", "--rows=11,12", "--cv_folds=0", f"--output_dir={tmp_path}"])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(error) == 1
    assert error[0].startswith("study: error: --rows=11,12: rows 12 (localisation) need")


def test_nothing_found_keeps_the_scan_field_and_leaves_the_measurements_undefined():
    rgb = np.random.RandomState(0).randint(0, 255, (60, 80, 3)).astype(np.uint8)
    crop, measurements, found = localise.nodule_view(rgb, np.zeros((60, 80), bool), [], 0.25)
    assert crop is rgb and not found and np.isnan(measurements).all()
    mask = np.zeros((60, 80), bool)
    mask[20:40, 30:50] = True
    polygon = [(30, 20), (49, 20), (49, 39), (30, 39)]
    crop, measurements, found = localise.nodule_view(rgb, mask, [polygon], 0.25)
    assert found and crop.shape[:2] == (42, 42)  # 20 px + (15 % of 20 + 8 px) each side
    assert not np.isnan(measurements).any()


def test_quick_study_runs_row_12_beside_row_11_and_its_upper_bound(localised_run):
    _, run_dir = localised_run
    rows = read_rows(run_dir)
    assert sorted(rows) == [10, 11, 12, 13]
    assert all(row["status"] == "ok" for row in rows.values())
    md = (run_dir / "summary.md").read_text(encoding="utf-8")
    start = md.index("## Localisation (rows 12 and 13)")
    section = md[start:md.index("\n## ", start + 1)]
    assert "| segmentation network |" in section and "| prior mask |" in section
    assert "| 11 | EfficientNet-Lite0 multi-layer" in section and "| reference |" in section
    for line in section.splitlines():
        if line.startswith("| 12 |") or line.startswith("| 13 |"):
            assert float(line.rstrip(" |").rsplit("|", 1)[1]) <= 1.0  # DeLong's p vs row 11
    assert "upper bound, not deployable" in md
    assert "| 12 | " in section[section.index("Each member alone"):]
    # The export ships row 12's network, trained on every outlined image, beside row 10's.
    mobile = run_dir / "mobile"
    assert (mobile / "model.tflite").is_file() and (mobile / "segment.tflite").is_file()
    assert "segmentation network -\\> " in md  # the Run table escapes Markdown's ">"
    saved = json.loads((run_dir / "train" / "segment" / "segmentation.json").read_text())
    assert saved["trained_on"]["fold"] == "all development images"
    pooled = json.loads((run_dir / "jobs" / "pooled" / "result.json").read_text())
    assert not pooled["payload"]["summaries"]["13"].get("best_row")  # never the reference


def test_each_fold_segments_with_its_own_training_units_only(localised_run):
    _, run_dir = localised_run
    from thyroid.datasets import folds, outlines
    found = outlines.OutlineSet.load(str(run_dir / "outlines"))
    fold_data = folds.load_folds(str(run_dir / "shards" / folds.FOLDS_NAME))
    for fold in range(3):
        result = json.loads((run_dir / "jobs" / f"fit-12-r0-f{fold}" / "result.json").read_text())
        facts = result["payload"]["localisation"]
        assert set(facts["members"]) == {"scan", "roi", "measurements"}
        tested = {record["image"] for record in facts["segmentation"]}
        members = folds.fold_members(fold_data, 0, fold)
        train_dir = run_dir / "train" / "12_efficientnet_lite0_localise_logreg" / f"repeat0_fold{fold}"
        saved = json.loads((train_dir / "segment" / "segmentation.json").read_text())
        roles = folds.outline_parts(found.records, fold_data, 0, fold)
        assert saved["trained_on"]["images"] == len(roles["train"])
        trained_keys = {found.records[i].key for i in roles["train"]}
        assert not trained_keys & (members["test"] | members["validation"])
        assert tested == {found.records[i].key for i in roles["test"]}
        found_counts = facts["nodule_found"]
        assert all(0 <= hit <= total for hit, total in found_counts.values())
    assert os.path.isdir(run_dir / "outlines")
