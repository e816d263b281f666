"""Every JSON file the tools write is strict JSON: an undefined number (NaN, inf) is written as
null, never as the bare ``NaN`` Python's json module writes by default, which browsers, jq and
other languages refuse. Reading stays lenient: files written before still load."""

import math

import numpy as np

import strict_json
from thyroid.io_utils import atomic_write_json, json_text, read_json


def test_non_finite_numbers_are_written_as_null_and_old_files_still_load(tmp_path):
    path = tmp_path / "figures.json"
    atomic_write_json(path, {"auc": math.nan, "bounds": (np.float32("inf"), -math.inf, 0.25),
                             "count": np.int64(3), "ok": True, "note": "NaN"})
    assert strict_json.load_file(path) == {"auc": None, "bounds": [None, None, 0.25],
                                           "count": 3, "ok": True, "note": "NaN"}
    assert json_text([math.nan, 1.5]) == "[null, 1.5]"
    path.write_text('{"auc": NaN, "high": Infinity}')  # as files of earlier versions hold
    saved = read_json(path)
    assert math.isnan(saved["auc"]) and saved["high"] == math.inf


def every_json_file(folder):
    paths = sorted(folder.rglob("*.json"))
    for path in paths:
        strict_json.load_file(path)  # raises on NaN, Infinity or -Infinity
    return paths


def test_every_json_file_of_a_quick_run_is_strict_json(quick_study):
    _, run_dir = quick_study
    paths = every_json_file(run_dir.parent)  # the run and the checkpoints it converted
    names = {path.name for path in paths}
    assert {"plan.json", "result.json", "manifest.json", "run_config.json", "metadata.json",
            "folds_by_row.json"} <= names
    assert len(paths) > 50


def test_a_one_class_external_set_writes_null_for_what_it_cannot_measure(awkward_study):
    _, run_dir, _, _ = awkward_study  # its external set: three benign images
    every_json_file(run_dir)
    figures = strict_json.load_file(run_dir / "jobs" / "pooled" / "result.json")[
        "payload"]["external"]["1"]
    assert figures["images"] == 3 and figures["auc"] is None  # one class: no AUC
    summary = (run_dir / "summary.md").read_text()
    assert "## External validation" in summary and "| 3 (3) |" in summary
