"""The numpy connected regions (``thyroid.preprocessing.labelling``) give exactly scipy's
``ndimage.label``, ``find_objects`` and ``binary_fill_holes``, so the outline code's results
do not change now that serving has no scipy."""

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from thyroid.preprocessing import labelling, outline

STRUCTURES = {8: np.ones((3, 3), bool), 4: ndimage.generate_binary_structure(2, 1)}


def _masks():
    """Random masks of several densities, blobs with holes and thin diagonal links, edges."""
    rng = np.random.RandomState(0)
    found = [np.zeros((7, 9), bool), np.ones((5, 4), bool), np.eye(6, dtype=bool),
             np.eye(6, dtype=bool)[::-1], np.zeros((1, 1), bool), np.ones((1, 8), bool)]
    for density in (0.05, 0.3, 0.5, 0.7, 0.95):
        for shape in ((13, 17), (40, 31), (64, 64)):
            found.append(rng.rand(*shape) < density)
    for seed in range(8):
        rng = np.random.RandomState(100 + seed)
        image = Image.new("L", (120, 90), 0)
        draw = ImageDraw.Draw(image)
        for _ in range(rng.randint(1, 5)):
            x, y = rng.randint(0, 110), rng.randint(0, 80)
            draw.ellipse([x, y, x + rng.randint(5, 40), y + rng.randint(5, 30)], fill=1)
            draw.ellipse([x + 4, y + 3, x + 8, y + 7], fill=0)  # a hole
        blobs = np.asarray(image, bool) ^ (rng.rand(90, 120) < 0.02)
        found.append(blobs)
    return found


MASKS = _masks()


@pytest.mark.parametrize("connectivity", [8, 4])
def test_label_and_windows_equal_scipy(connectivity):
    for mask in MASKS:
        expected, count = ndimage.label(mask, structure=STRUCTURES[connectivity])
        labelled, found = labelling.label(mask, connectivity)
        assert found == count
        np.testing.assert_array_equal(labelled, expected)
        assert labelling.find_objects(labelled, found) == ndimage.find_objects(expected)


def test_fill_holes_equals_scipy():
    for mask in MASKS:
        np.testing.assert_array_equal(labelling.fill_holes(mask),
                                      ndimage.binary_fill_holes(mask))


def _scipy_regions(mask, min_pixels=outline.MIN_REGION_PIXELS):
    """``outline.regions`` as it was written with scipy."""
    labelled, _ = ndimage.label(np.asarray(mask, bool), structure=np.ones((3, 3), bool))
    found = []
    for index, window in enumerate(ndimage.find_objects(labelled), start=1):
        if window is None:
            continue
        rows, cols = np.nonzero(labelled[window] == index)
        if rows.size < min_pixels:
            continue
        top, left = window[0].start, window[1].start
        found.append(outline.Region(int(rows.size), (left, top, window[1].stop, window[0].stop),
                                    (float(cols.mean() + left), float(rows.mean() + top)),
                                    index))
    found.sort(key=lambda region: -region.pixels)
    return found, labelled


def test_outline_results_unchanged():
    for mask in MASKS:
        found, labelled = outline.regions(mask)
        expected, expected_labels = _scipy_regions(mask)
        assert found == expected
        np.testing.assert_array_equal(labelled, expected_labels)
        for region in outline.kept_regions(found):
            region_mask = labelled == region.label
            filled = ndimage.binary_fill_holes(region_mask)
            np.testing.assert_array_equal(labelling.fill_holes(region_mask), filled)
