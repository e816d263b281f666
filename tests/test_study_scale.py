"""The study at 3x the default synthetic size against 1x: every stage that sees every image
grows no faster than the images (``bench/study_scale.py``). Slow and timing-based: skipped
unless asked for with ``-m scale``; run it on an otherwise idle machine."""

import pytest

from bench import study_scale

pytestmark = pytest.mark.scale

ROWS = "1,8,10,11"
# The target is 1.1 (10x the data in at most 11x the time); a quarter more leaves room for
# the noise of two single runs minutes apart.
NOISE = 1.25


def test_each_stage_that_sees_every_image_grows_at_most_linearly(tmp_path):
    runs = [study_scale.run_scale(scale, ROWS, str(tmp_path), str(tmp_path / f"ckpt{scale}"))
            for scale in (1, 3)]
    base, large = runs
    growth = large["images"] / base["images"]
    assert 2.5 < growth < 3.5
    assert set(large["aucs"]) == set(ROWS.split(","))
    checked = []
    for stage, seconds in study_scale.stage_seconds(base).items():
        if stage.startswith(study_scale.PER_IMAGE_STAGES):
            per_image = study_scale.stage_seconds(large)[stage] / seconds / growth
            checked.append((stage, round(per_image, 2)))
            assert per_image <= study_scale.LINEAR_LIMIT * NOISE, (stage, per_image, growth)
    assert len(checked) >= 6, checked  # synthetic data, shards and the four rows
    assert large["peak_rss_gib"] < 3 * max(base["peak_rss_gib"], 1.0)
