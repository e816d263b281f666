"""The shared quick study against the reference made before the study's restructuring
(tests/fixtures, written by ``python tests/study_runs.py <run folder>`` from a quick study run
with ``QUICK_REFERENCE_FLAGS``): the same predictions within 1e-6, and a report whose tables
differ only in times, dates and the machine. A change that means to move these figures
regenerates the fixtures and says why in its commit."""

import difflib

from study_runs import (REFERENCE_PREDICTIONS, REFERENCE_SUMMARY_CSV, REFERENCE_SUMMARY_MD,
                        read_predictions, same_predictions, timeless_summary_csv,
                        timeless_summary_md)


def _diff(expected, found):
    return "\n".join(difflib.unified_diff(expected.splitlines(), found.splitlines(),
                                          "reference", "this run", lineterm="", n=1))


def test_the_quick_study_gives_the_reference_predictions(quick_study):
    _, run_dir = quick_study
    assert len(read_predictions(run_dir)) == len(read_predictions(REFERENCE_PREDICTIONS)) > 0
    assert same_predictions(run_dir / "predictions.csv", REFERENCE_PREDICTIONS, 1e-6)


def test_the_quick_studys_report_differs_from_the_reference_only_in_times(quick_study):
    _, run_dir = quick_study
    for expected_path, found in ((REFERENCE_SUMMARY_MD, timeless_summary_md(run_dir)),
                                 (REFERENCE_SUMMARY_CSV, timeless_summary_csv(run_dir))):
        with open(expected_path) as f:
            expected = f.read()
        assert found == expected, _diff(expected, found)


def test_the_masks_hide_times_and_places_only(tmp_path):
    """The comparison cannot pass by masking figures: a changed AUC still differs."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    table = ("## Run\n\n| date | 2026-01-01 |\n| total time | 3.0 s |\n\n## Time by stage\n\n"
             "| shards | 1m 02s | 12 % |\n\n## Results\n\n| 9 | ok | 0.85 [0.78, 0.91] | 12 % |\n")
    (run_dir / "summary.md").write_text(table)
    masked = timeless_summary_md(run_dir)
    assert "2026" not in masked and "3.0 s" not in masked and "1m 02s" not in masked
    assert "| shards | <time> | <share> |" in masked
    assert "| 9 | ok | 0.85 [0.78, 0.91] | 12 % |" in masked
