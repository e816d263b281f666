"""Robustness to the frame (--crop_variants): the variant crops, the scoring of every fold's
test images under them, and the report's section."""

import json
import os

import numpy as np
import pytest

from study_runs import run_study
from thyroid.datasets import build, images
from thyroid.study import plan as study_plan
from thyroid.study import robustness
from thyroid.study.config import StudyConfig


def test_variant_crops_keep_the_band_or_take_a_fixed_box():
    rgb = np.zeros((200, 300, 3), np.uint8)
    rgb[10:150, 40:260] = 120  # the field
    rgb[175:185, 100:200] = 255  # a text band below it
    top, bottom, left, right = images.find_scan_box(rgb)
    assert images.crop(rgb, "scan").shape[0] == bottom - top < 200 - top
    assert images.crop(rgb, "scan_with_band").shape[:2] == (200 - top, right - left)
    t, b, l, r = images.fallback_scan_box(200, 300)
    assert images.crop(rgb, "fixed_box").shape[:2] == (b - t, r - l)
    assert "scan_with_band" not in images.CROP_MODES  # never a training or export crop


def test_variants_are_planned_only_when_asked():
    assert not [j for j in study_plan.plan_jobs(StudyConfig(quick=True)) if j.kind == "variant"]
    jobs = study_plan.plan_jobs(StudyConfig(quick=True, rows=(1, 11, 12),
                                            crop_variants=("band", "fixed")))
    ids = [job.id for job in jobs]
    assert {"variant-band", "variant-fixed", "robustness-1", "robustness-11"} <= set(ids)
    assert "robustness-12" not in ids
    scored = jobs[ids.index("robustness-11")]
    assert "fit-11-r0-f2" in scored.inputs and "variant-band" in scored.inputs


def test_a_bad_variant_is_refused_in_one_line(tmp_path, capsys):
    from thyroid.study.__main__ import main
    assert main(["study", "--crop_variants=band,tilted", f"--output_dir={tmp_path}"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["study: error: --crop_variants=band,tilted: choose among band, frame, fixed"]


@pytest.fixture(scope="module")
def varied_run(tmp_path_factory):
    return run_study(tmp_path_factory.mktemp("robust"), "--rows=1,11",
                     "--crop_variants=band,fixed", "--noexport")


def test_every_row_reports_how_far_its_probability_moves(varied_run):
    _, run_dir = varied_run
    md = (run_dir / "summary.md").read_text(encoding="utf-8")
    start = md.index("## Robustness to the frame")
    section = md[start:md.index("\n## ", start + 1)]
    assert "band: median / share > 0.05" in section and "fixed: median" in section
    for row_id in (1, 11):
        payload = json.loads((run_dir / "jobs" / f"robustness-{row_id}" / "result.json")
                             .read_text())["payload"]
        for variant in ("band", "fixed"):
            figures = payload["variants"][variant]
            assert figures["images"] > 20  # every test image of every fold
            assert 0 <= figures["median"] <= 1 and 0 <= figures["share_over_limit"] <= 1
        assert f"| {row_id} | " in section


def test_the_same_crop_moves_nothing(varied_run, tmp_path):
    """Scored on the scan field itself, every fold's model gives back its own predictions: the
    images and keys line up."""
    _, run_dir = varied_run
    sources = json.loads((run_dir / "jobs" / "data" / "result.json").read_text())["payload"]
    same = str(tmp_path / "same")
    build.build(build.BuildConfig(output_dir=same, sources=build.named_sources(
        ddti_dir=sources["ddti_dir"], local_dir=sources["local_dir"]), evaluation_only=True,
        seed=0, overwrite=True))
    from thyroid.study.results import read_records
    fits = [(str(run_dir / "train" / "11_efficientnet_lite0_bottleneck_logreg" / f"repeat0_fold{k}"),
             read_records(str(run_dir), f"fit-11-r0-f{k}")) for k in range(3)]
    moved = robustness.movements(fits, same)
    assert len(moved) == sum(len(records) for _, records in fits)
    assert max(moved) < 1e-4
    assert robustness.summarize([]) == robustness.Movement(None, None, 0)
    assert os.path.isdir(run_dir / "variants" / "band")
