"""Outlines and masks: drawing, nodule views, tracing back, measuring."""

import numpy as np
import pytest

from thyroid.preprocessing import outline


def ellipse(cx, cy, rx, ry, points=48):
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_mask_is_the_union_of_the_polygons_and_each_region_a_view():
    left, right = ellipse(40, 50, 20, 15), ellipse(140, 50, 18, 25)
    overlapping = ellipse(50, 50, 20, 15)
    mask = outline.rasterize([left, right, overlapping, [(1, 1), (2, 2)]], 100, 200)
    assert mask.shape == (100, 200) and mask.dtype == bool
    assert mask.sum() == (outline.rasterize([left, overlapping], 100, 200).sum()
                          + outline.rasterize([right], 100, 200).sum())
    found, _ = outline.regions(mask)
    assert len(found) == 2
    assert found[0].pixels >= found[1].pixels
    centres = sorted(r.centre for r in found)
    assert centres[0][0] == pytest.approx(45, abs=1.5) and centres[1][0] == pytest.approx(140, abs=1)
    x0, y0, x1, y1 = outline.box_of_regions(found)
    assert (x0, x1) == (20, 159) and y0 <= 26 and y1 >= 75


def test_a_speck_does_not_widen_the_box_and_tiny_noise_is_no_region():
    mask = outline.rasterize([ellipse(50, 50, 20, 20)], 100, 200)
    mask[10:17, 180:187] = True      # 49 pixels: a region, but a speck beside the nodule
    mask[90, 5] = True               # one pixel: not a region at all
    found, _ = outline.regions(mask)
    assert len(found) == 2
    assert outline.box_of_regions(found) == found[0].box
    assert outline.box_contains(found[0].box, found[0].centre)
    assert outline.box_of_regions([]) is None


def test_tracing_a_mask_gives_an_outline_that_draws_it_again():
    truth = outline.rasterize([ellipse(60, 40, 30, 18), ellipse(150, 60, 12, 20)], 100, 200)
    truth[0:10, 0:10] = True  # touches the border: its outline must still close
    traced = outline.outlines(truth)
    assert len(traced) == 2  # the corner square is a speck beside the larger views
    redrawn = outline.rasterize(traced, 100, 200)
    kept = truth.copy()
    kept[0:10, 0:10] = False
    assert iou(redrawn, kept) > 0.93
    assert all(len(points) <= outline.MAX_OUTLINE_POINTS for points in traced)
    assert outline.outlines(np.zeros((20, 20), bool)) == []
    corner = outline.trace(truth[:12, :12] & np.pad(np.ones((10, 10), bool), ((0, 2), (0, 2))))
    assert min(x for x, _ in corner) >= -0.6 and min(y for _, y in corner) >= -0.6


def test_measurements_in_pixels_and_millimetres():
    box = [(10, 20), (50, 20), (50, 80), (10, 80)]  # 40 wide, 60 deep
    values = outline.measure(box)
    assert values["area_px"] == 2400 and values["perimeter_px"] == 200
    assert values["width_px"] == 40 and values["height_px"] == 60
    assert values["taller_than_wide"] and "area_mm2" not in values
    mm = outline.measure(box, spacing_mm=(0.05, 0.1))  # rows 0.05 mm, columns 0.1 mm
    assert mm["width_mm"] == pytest.approx(4.0) and mm["height_mm"] == pytest.approx(3.0)
    assert mm["area_mm2"] == pytest.approx(12.0)
    assert mm["perimeter_mm"] == pytest.approx(14.0)
    assert not mm["taller_than_wide"]  # taller in pixels, wider in millimetres
    assert outline.measure([(1, 1), (2, 2)]) is None


def test_moving_between_input_crop_and_image_coordinates():
    polygons = [[(1.0, 2.0), (3.0, 4.0)]]
    assert outline.shift(polygons, 10, 20) == [[(11.0, 22.0), (13.0, 24.0)]]
    assert outline.scale(polygons, 2.0, 0.5) == [[(2.0, 1.0), (6.0, 2.0)]]
    probabilities = np.zeros((4, 4), np.float32)
    probabilities[1:3, 1:3] = 1.0
    resized = outline.resize_probabilities(probabilities, 8, 12)
    assert resized.shape == (8, 12) and resized.max() <= 1.0 and resized[4, 6] > 0.5
    assert outline.largest_outline([[(0, 0), (1, 0), (0, 1)], ellipse(5, 5, 3, 3)])[0][0] > 7
    assert outline.largest_outline([]) is None
