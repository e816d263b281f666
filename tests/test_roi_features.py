"""Hand-crafted ROI features on drawn shapes, and the DDTI cross-validation harness's pieces."""

import json
import shutil

import numpy as np
import pytest

from bench.experiments import ddti_cv
from bench.experiments import roi_features as rf


def ellipse(cx, cy, rx, ry, points=64):
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]


def star(cx, cy, outer, inner, spikes=8):
    angles = np.linspace(0, 2 * np.pi, 2 * spikes, endpoint=False)
    radii = [outer if i % 2 == 0 else inner for i in range(2 * spikes)]
    return [(cx + r * np.cos(a), cy + r * np.sin(a)) for r, a in zip(radii, angles)]


def scene(polygon, inside=60, outside=160, noise=0.0, seed=0):
    """Grey 200x200 frame with the polygon filled at ``inside`` over ``outside``."""
    mask = rf.polygon_mask((200, 200), polygon)
    gray = np.where(mask, inside, outside).astype(np.float64)
    gray += np.random.default_rng(seed).normal(0, noise, gray.shape)
    return np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def value(values, name):
    return values[rf.FEATURE_NAMES.index(name)]


def test_shape_of_tall_ellipse_and_star():
    tall = rf.roi_features(scene(ellipse(100, 100, 20, 40)), [ellipse(100, 100, 20, 40)])
    assert value(tall, "height_over_width") == pytest.approx(2.0, rel=0.05)
    assert value(tall, "taller_than_wide") == 1.0
    assert value(tall, "solidity") > 0.98
    assert value(tall, "log_area") == pytest.approx(np.log(np.pi * 20 * 40), rel=0.01)
    spiky = rf.roi_features(scene(star(100, 100, 50, 20)), [star(100, 100, 50, 20)])
    assert value(spiky, "solidity") < 0.75
    assert value(spiky, "circularity") < value(tall, "circularity")
    assert value(spiky, "radial_cv") > value(tall, "radial_cv")


def test_echo_level_and_margin_follow_the_drawing():
    polygon = ellipse(100, 100, 30, 25)
    dark = rf.roi_features(scene(polygon, inside=50, outside=150), [polygon])
    bright = rf.roi_features(scene(polygon, inside=200, outside=100), [polygon])
    assert value(dark, "inside_minus_ring") == pytest.approx(-100, abs=2)
    assert value(dark, "edge_contrast") < 0 < value(bright, "edge_contrast")
    assert value(dark, "dark_fraction") > 0.9
    # A sharp drawn edge: the border's gradient dwarfs the flat interior's.
    assert value(dark, "border_gradient") > 100


def test_texture_separates_a_smooth_ramp_from_speckle_and_counts_bright_foci():
    polygon = ellipse(100, 100, 30, 30)
    ramp = np.repeat(np.tile(np.linspace(0, 255, 200), (200, 1))[:, :, None], 3, axis=2)
    smooth = rf.roi_features(ramp.astype(np.uint8), [polygon])
    speckle = rf.roi_features(scene(polygon, noise=25.0), [polygon])
    assert value(smooth, "glcm_correlation") > 0.9 > 0.3 > value(speckle, "glcm_correlation")
    assert value(smooth, "glcm_contrast") < value(speckle, "glcm_contrast")
    flat = rf.roi_features(scene(polygon, noise=1.0), [polygon])
    rgb = scene(polygon, inside=60, outside=60, noise=3.0)
    rgb[95:98, 95:98] = 255
    rgb[105:108, 110:113] = 255
    foci = rf.roi_features(rgb, [polygon])
    assert value(foci, "bright_spots") > 0
    assert value(flat, "bright_spots") == pytest.approx(0.0, abs=0.7)


def test_largest_polygon_is_described_and_missing_polygons_give_nan():
    small, large = ellipse(40, 40, 8, 8), ellipse(120, 120, 30, 15)
    both = rf.roi_features(scene(large), [small, large])
    alone = rf.roi_features(scene(large), [large])
    np.testing.assert_allclose(both[:len(rf.SHAPE_NAMES)], alone[:len(rf.SHAPE_NAMES)])
    assert both.shape == (len(rf.FEATURE_NAMES),) and both.dtype == np.float32
    assert np.isnan(rf.roi_features(scene(large), [])).all()
    assert np.isnan(rf.roi_features(scene(large), [[(1, 1), (2, 2)]])).all()


def test_youden_threshold_uses_the_given_scores():
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert ddti_cv.youden_threshold(labels, np.array([.1, .2, .3, .6, .7, .8])) == 0.6
    # Overlapping scores: the best cut keeps all positives and drops two negatives.
    assert ddti_cv.youden_threshold(labels, np.array([.1, .2, .65, .6, .7, .8])) == 0.6


def test_run_repeat_learns_a_separable_problem_and_main_skips_without_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 2)
    y = (groups % 4 == 0).astype(np.int64)
    x = rng.normal(size=(80, 3)) + y[:, None]
    members = [({"set": ["features"]}, "logreg")]
    scores, preds, params = ddti_cv.run_repeat([x], y, groups, members, folds=4, repeat=0)
    assert ddti_cv.metrics.auc_score(y, scores) > 0.8
    assert set(np.unique(preds)) <= {0, 1} and len(params) == 4
    assert ddti_cv.main(["--ddti_dir", str(tmp_path / "absent")]) == 0
    assert "skipped" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        ddti_cv.main(["--methods", "no_such_method"])


def test_dataset_groups_duplicate_images_and_skips_unreadable_ones(tmp_path):
    from bench.experiments.ddti_features import Dataset
    from PIL import Image
    square = json.dumps([{"points": [{"x": 5, "y": 5}, {"x": 30, "y": 5}, {"x": 30, "y": 30},
                                     {"x": 5, "y": 30}]}])
    for number, tirads in ((1, "2"), (2, "4a"), (3, "4b"), (4, "5")):
        (tmp_path / f"{number}.xml").write_text(
            f"<case><number>{number}</number><tirads>{tirads}</tirads>"
            f"<mark><image>1</image><svg>{square}</svg></mark></case>")
    rng = np.random.default_rng(0)
    for number in (1, 2):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(
            tmp_path / f"{number}_1.jpg")
    shutil.copy(tmp_path / "2_1.jpg", tmp_path / "3_1.jpg")  # one image filed under two cases
    (tmp_path / "4_1.jpg").write_bytes(b"not a jpeg")
    dataset = Dataset(str(tmp_path))
    assert dataset.skipped == 1
    assert list(dataset.labels) == [0, 1, 1]
    assert dataset.groups[1] == dataset.groups[2] != dataset.groups[0]
