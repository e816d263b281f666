"""Ultrasound augmentation (each transform does what it claims and keeps shape, dtype and
range; copies are fixed by the seed) and test-time augmentation."""

import numpy as np
import pytest

from thyroid.datasets import records
from thyroid.preprocessing import augment, augmentation_kinds, tta
from thyroid.preprocessing import ultrasound_augment as us

HEIGHT, WIDTH = 97, 131   # odd sizes: nothing may assume even ones


def _scan(seed=0):
    """A black frame around a textured field (bright top, darker below) with a bright square
    and a flat dim patch."""
    rng = np.random.default_rng(seed)
    image = np.zeros((HEIGHT, WIDTH), np.float64)
    depth = np.linspace(200, 90, 80)[:, None]
    image[8:88, 10:121] = depth * rng.uniform(0.6, 1.0, (80, 111))
    image[40:60, 55:75] = 250          # the "nodule"
    image[70:85, 15:35] = 60           # flat dim patch
    image[12:27, 95:115] = 180         # flat bright patch
    return np.repeat(np.rint(image).astype(np.uint8)[:, :, None], 3, axis=2)


def _roughness(image):
    """Mean absolute difference between horizontal neighbours (high-frequency content)."""
    return float(np.mean(np.abs(np.diff(image[..., 0].astype(np.float64), axis=1))))


def _changed(a, b):
    return np.any(a != b, axis=2)


TRANSFORMS = {
    "gain_gamma": lambda image, rng: us.gain_gamma(image, 1.3, 0.8),
    "speckle": lambda image, rng: us.speckle(image, rng, 0.3, taps=2),
    "blur": lambda image, rng: us.blur(image, 1.2),
    "resample": lambda image, rng: us.resample(image, 2.5),
    "depth_zoom": lambda image, rng: us.depth_zoom(image, 1.15, 0.05),
    "calipers": lambda image, rng: us.calipers(image, rng, pairs=2),
    "text_marks": lambda image, rng: us.text_marks(image, rng, count=2),
    "ultrasound_augment": us.ultrasound_augment,
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_every_transform_keeps_shape_and_dtype_changes_the_image_and_is_seeded(name):
    image = _scan()
    before = image.copy()
    first = TRANSFORMS[name](image, np.random.default_rng(5))
    again = TRANSFORMS[name](image, np.random.default_rng(5))
    assert first.shape == image.shape and first.dtype == np.uint8
    assert np.array_equal(image, before)               # the input is left alone
    assert not np.array_equal(first, image)
    assert np.array_equal(first, again)


def test_gain_and_gamma_scale_and_bend_the_grey_map():
    image = _scan()
    assert np.array_equal(us.gain_gamma(image, 1.0, 1.0), image)
    brighter = us.gain_gamma(image, 1.3, 1.0)
    assert brighter.mean() > image.mean() * 1.2
    assert np.all(brighter[image == 0] == 0)          # black stays black
    mid = np.full((4, 4, 3), 128, np.uint8)
    assert us.gain_gamma(mid, 1.0, 0.7)[0, 0, 0] > 150 > 128 > us.gain_gamma(mid, 1.0, 1.4)[0, 0, 0]
    assert us.gain_gamma(np.full((2, 2, 3), 250, np.uint8), 1.4, 1.0).max() == 255
    with pytest.raises(ValueError, match="positive"):
        us.gain_gamma(image, 0.0, 1.0)


def test_speckle_is_multiplicative_grey_and_keeps_the_mean():
    image = _scan()
    noisy = us.speckle(image, np.random.default_rng(1), 0.3)
    assert np.all(noisy[image == 0] == 0)                       # black stays black
    assert np.array_equal(noisy[..., 0], noisy[..., 1])           # grey noise
    field = image[8:88, 10:121, 0] > 0
    assert noisy[8:88, 10:121, 0][field].mean() == pytest.approx(
        image[8:88, 10:121, 0][field].mean(), rel=0.05)
    bright_sd = noisy[12:27, 95:115, 0].std()                     # flat 180 before
    dim_sd = noisy[70:85, 15:35, 0].std()                         # flat 60 before
    assert bright_sd > 2 * dim_sd > 0                             # noise grows with the echo
    assert np.array_equal(us.speckle(image, np.random.default_rng(1), 0.0), image)


def test_blur_and_resampling_remove_fine_detail_and_keep_the_mean():
    image = _scan()
    for softened in (us.blur(image, 1.2), us.resample(image, 2.5)):
        assert _roughness(softened) < 0.7 * _roughness(image)
        assert softened.mean() == pytest.approx(image.mean(), rel=0.05)
    assert np.array_equal(us.resample(image, 1.0), image)
    with pytest.raises(ValueError, match="at least 1"):
        us.resample(image, 0.5)


def test_depth_zoom_scales_about_the_top_and_shifts_down():
    image = _scan()
    assert np.array_equal(us.depth_zoom(image, 1.0, 0.0), image)
    bright = lambda picture: int(np.sum(picture[..., 0] >= 240))   # the square's pixels
    first_row = lambda picture: int(np.flatnonzero(picture[..., 0].max(axis=1))[0])
    larger, smaller = us.depth_zoom(image, 1.2), us.depth_zoom(image, 0.8)
    assert bright(larger) > 1.3 * bright(image)
    assert bright(smaller) < 0.75 * bright(image)
    assert smaller[-12:].max() == 0                    # deeper setting: black beyond the field
    # Scaled about the top edge: the field's first row moves by the zoom, not by the centre.
    for zoom, picture in ((1.2, larger), (0.8, smaller)):
        assert abs(first_row(picture) - zoom * first_row(image)) <= 1
    moved = us.depth_zoom(image, 1.0, 0.1)
    assert abs(first_row(moved) - (first_row(image) + 0.1 * HEIGHT)) <= 1


def test_calipers_and_text_marks_touch_a_few_pixels_in_their_colours():
    image = _scan()
    measured = us.calipers(image, np.random.default_rng(2), pairs=1)
    changed = _changed(measured, image)
    assert 10 < changed.sum() < 0.03 * changed.size
    colours = {tuple(pixel) for pixel in measured[changed]}
    assert colours <= set(us.CALIPER_COLOURS)
    marked = us.text_marks(image, np.random.default_rng(3), count=1)
    changed = _changed(marked, image)
    assert 5 < changed.sum() < 0.05 * changed.size
    rows = np.flatnonzero(changed.any(axis=1))
    assert rows.max() < 0.3 * HEIGHT or rows.min() > 0.7 * HEIGHT   # near the top or bottom


def test_copies_depend_on_the_image_key_only_and_slot_into_the_build():
    image = _scan()
    make = augmentation_kinds.copies_function("ultrasound")
    first = make(image, 3, records.augmentation_rng(7, "folders:a.jpg"))
    again = make(image, 3, records.augmentation_rng(7, "folders:a.jpg"))
    other = make(image, 3, records.augmentation_rng(7, "folders:b.jpg"))
    assert len(first) == 3 and all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not any(np.array_equal(a, b) for a, b in zip(first, other))
    assert not np.array_equal(first[0], first[1])
    assert augmentation_kinds.copies_function("standard") is augment.augmented_copies
    with pytest.raises(ValueError, match="standard, ultrasound"):
        augmentation_kinds.copies_function("mixup")


def test_tta_averages_one_predict_call_over_mirrors_and_two_scales():
    images = [_scan(0), _scan(1)[:, :120]]
    calls = []

    def left_half_brightness(batch):        # not mirror-symmetric, not scale-invariant
        calls.append(len(batch))
        return [float(view[:, :view.shape[1] // 2].mean()) for view in batch]

    averaged = tta.tta_mean(left_half_brightness, images)
    assert calls == [len(tta.VIEWS) * len(images)] and len(tta.VIEWS) == 4
    for image, value in zip(images, averaged):
        expected = np.mean([left_half_brightness([view])[0] for view in tta.views(image)])
        assert value == pytest.approx(expected)
        assert value != pytest.approx(left_half_brightness([image])[0])
        # The views of a mirrored image are the views mirrored: the mean does not change.
        assert tta.tta_mean(left_half_brightness, [augment.horizontal_flip(image)])[0] == \
            pytest.approx(value)
    zoomed = tta.centre_zoom(images[0], 0.85)
    assert zoomed.shape == images[0].shape and not np.array_equal(zoomed, images[0])
    assert tta.tta_mean(left_half_brightness, []).shape == (0,)
    with pytest.raises(ValueError, match="answers for 4 views"):
        tta.tta_mean(lambda batch: [0.5], [images[0]])
