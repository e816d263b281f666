"""Augmentation that imitates what changes between ultrasound scanners and sonographers: gain
and gamma (the grey map), speckle-like multiplicative noise, blur and a lower resolution
(down then up sampling), depth-like zoom and shift (another depth setting, the probe held
elsewhere), and the marks left on saved frames (calipers with a dotted line, short text).

Every transform takes and returns a uint8 HxWx3 image of the same shape; the random ones
draw only from the ``numpy.random.Generator`` they are given, so a seed fixes the result.
``augmented_copies(image, count, rng)`` has the signature of ``augment.augmented_copies``,
so the build can make an image's copies with either (``augmentation_kinds``), each from the
generator ``datasets.records.augmentation_rng`` seeds from the build seed and the image's key.

Images reach augmentation already cropped to the scan field, so marks land on the image the
networks see, as calipers and annotations drawn inside the field do at another site.
"""

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from thyroid.preprocessing import augment

# Ranges the random copy draws from (each transform applied with its probability).
GAIN_RANGE = (0.7, 1.4)
GAMMA_RANGE = (0.7, 1.4)
SPECKLE_SIGMA_RANGE = (0.1, 0.35)
BLUR_SIGMA_RANGE = (0.5, 1.5)
RESAMPLE_FACTOR_RANGE = (1.5, 3.0)
ZOOM_RANGE = (0.85, 1.2)
DEPTH_SHIFT_RANGE = (-0.08, 0.08)
PROBABILITIES = {"gain_gamma": 0.8, "speckle": 0.7, "blur": 0.3, "resample": 0.3,
                 "depth": 0.5, "calipers": 0.3, "text": 0.3}
CALIPER_COLOURS = ((255, 255, 0), (255, 255, 255), (0, 255, 255), (255, 160, 0))
MARK_WORDS = ("RT LOBE", "LT LOBE", "TRV", "SAG", "ISTHMUS", "NOD 1", "L 1.2cm", "W 0.8cm",
              "D 1.05 cm", "THY", "+ 12", "CFM")


def _to_uint8(values):
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def gain_gamma(image, gain, gamma):
    """255 x gain x (pixel / 255) ** gamma: gamma below 1 lifts the mid-greys, gain scales."""
    if gain <= 0 or gamma <= 0:
        raise ValueError(f"gain and gamma must be positive, got {gain}, {gamma}")
    table = _to_uint8(255.0 * gain * (np.arange(256) / 255.0) ** gamma)
    return table[image]


def _box_mean(values, taps, axis):
    """Moving mean over ``taps`` pixels along ``axis`` (same length, edges averaged over
    what exists)."""
    padded = np.concatenate([np.zeros_like(np.take(values, [0], axis=axis)),
                             np.cumsum(values, axis=axis)], axis=axis)
    length = values.shape[axis]
    ends = np.minimum(np.arange(length) + taps - taps // 2, length)
    starts = np.maximum(np.arange(length) - taps // 2, 0)
    counts = (ends - starts).astype(values.dtype)
    shape = [1, 1]
    shape[axis] = length
    return (np.take(padded, ends, axis=axis) - np.take(padded, starts, axis=axis)) \
        / counts.reshape(shape)


def _smoothed_field(rng, shape, taps):
    """A standard-normal field correlated over about ``taps`` pixels each way, rescaled to
    unit variance."""
    field = rng.standard_normal(shape, dtype=np.float32)
    for axis in (0, 1):
        field = _box_mean(field, taps, axis)
    return field / max(float(field.std()), 1e-6)


def speckle(image, rng, sigma, taps=2):
    """Multiplicative grey noise exp(sigma z - sigma^2 / 2) with z a correlated normal field:
    the same on every channel, mean factor 1, so black stays black and bright tissue is the
    noisiest, as speckle is."""
    if sigma < 0:
        raise ValueError(f"speckle sigma must be non-negative, got {sigma}")
    factor = np.exp(sigma * _smoothed_field(rng, image.shape[:2], taps) - sigma ** 2 / 2.0)
    return _to_uint8(image.astype(np.float32) * factor[:, :, None])


def blur(image, sigma):
    """Gaussian blur of radius ``sigma`` pixels (a softer probe or a smoothing preset)."""
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)), np.uint8)


def resample(image, factor):
    """Down by ``factor`` then back up (bilinear): a scanner or export of lower resolution."""
    if factor < 1:
        raise ValueError(f"resample factor must be at least 1, got {factor}")
    height, width = image.shape[:2]
    small = Image.fromarray(image).resize((max(1, round(width / factor)),
                                           max(1, round(height / factor))), Image.BILINEAR)
    return np.asarray(small.resize((width, height), Image.BILINEAR), np.uint8)


def depth_zoom(image, zoom, shift=0.0):
    """Another depth setting: the image scaled by ``zoom`` about the middle of its top edge
    (the probe's face stays at the top; above 1 the tissue looks larger, below 1 smaller with
    black beyond), then moved down by ``shift`` x height (up when negative). Same size."""
    if zoom <= 0:
        raise ValueError(f"zoom must be positive, got {zoom}")
    height, width = image.shape[:2]
    centre_x, offset = width / 2.0, shift * height
    # PIL's affine map takes each output pixel (x, y) to the input pixel it reads.
    coefficients = (1.0 / zoom, 0.0, centre_x - centre_x / zoom,
                    0.0, 1.0 / zoom, -offset / zoom)
    moved = Image.fromarray(image).transform((width, height), Image.AFFINE, coefficients,
                                             resample=Image.BILINEAR, fillcolor=(0, 0, 0))
    return np.asarray(moved, np.uint8)


def calipers(image, rng, pairs=1):
    """``pairs`` caliper measurements: two '+' marks in one colour, a dotted line between them,
    placed at random in the middle of the image (where a nodule is measured)."""
    height, width = image.shape[:2]
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    arm = max(2, round(min(height, width) / 40))
    for _ in range(pairs):
        colour = CALIPER_COLOURS[int(rng.integers(len(CALIPER_COLOURS)))]
        ends = rng.uniform([0.15 * width, 0.2 * height], [0.85 * width, 0.85 * height], (2, 2))
        for x, y in ends:
            draw.line([(x - arm, y), (x + arm, y)], fill=colour, width=1)
            draw.line([(x, y - arm), (x, y + arm)], fill=colour, width=1)
        (x0, y0), (x1, y1) = ends
        steps = max(2, int(np.hypot(x1 - x0, y1 - y0) / (2 * arm)))
        for t in np.linspace(0.0, 1.0, steps + 1)[1:-1]:
            draw.point([(x0 + t * (x1 - x0), y0 + t * (y1 - y0))], fill=colour)
    return np.asarray(canvas, np.uint8)


def text_marks(image, rng, count=1):
    """``count`` short annotations (``MARK_WORDS``) in white or yellow near an edge or corner,
    where scanners and sonographers put them."""
    height, width = image.shape[:2]
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for _ in range(count):
        word = MARK_WORDS[int(rng.integers(len(MARK_WORDS)))]
        left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
        x = rng.uniform(0, max(1.0, width - (right - left) - 1))
        y = rng.choice([rng.uniform(0, 0.15), rng.uniform(0.8, 0.95)]) * height
        colour = ((255, 255, 255), (255, 255, 0))[int(rng.integers(2))]
        draw.text((x, min(y, max(0, height - (bottom - top) - 1))), word, fill=colour, font=font)
    return np.asarray(canvas, np.uint8)


def ultrasound_augment(image, rng):
    """One random copy: flip (1/2) and rotation (as ``augment.augment``), then each transform
    of ``PROBABILITIES`` with its probability and parameters drawn from the ranges above.
    The draws happen in a fixed order whatever is applied, so one transform's choice never
    changes another's parameters."""
    draws = {name: rng.random() < p for name, p in PROBABILITIES.items()}
    flip = rng.random() < 0.5
    degrees = rng.uniform(-augment.MAX_ROTATION_DEGREES, augment.MAX_ROTATION_DEGREES)
    gain, gamma = rng.uniform(*GAIN_RANGE), rng.uniform(*GAMMA_RANGE)
    sigma, taps = rng.uniform(*SPECKLE_SIGMA_RANGE), int(rng.integers(1, 4))
    blur_sigma, factor = rng.uniform(*BLUR_SIGMA_RANGE), rng.uniform(*RESAMPLE_FACTOR_RANGE)
    zoom, shift = rng.uniform(*ZOOM_RANGE), rng.uniform(*DEPTH_SHIFT_RANGE)
    marks = np.random.default_rng(rng.integers(2 ** 63))   # the marks' own stream
    noise = np.random.default_rng(rng.integers(2 ** 63))   # the speckle's own stream
    out = augment.horizontal_flip(image) if flip else image
    out = augment.rotate(out, float(degrees))
    if draws["depth"]:
        out = depth_zoom(out, float(zoom), float(shift))
    if draws["gain_gamma"]:
        out = gain_gamma(out, float(gain), float(gamma))
    if draws["blur"]:
        out = blur(out, float(blur_sigma))
    if draws["resample"]:
        out = resample(out, float(factor))
    if draws["speckle"]:
        out = speckle(out, noise, float(sigma), taps)
    if draws["calipers"]:
        out = calipers(out, marks, pairs=1 + int(marks.random() < 0.3))
    if draws["text"]:
        out = text_marks(out, marks, count=1 + int(marks.random() < 0.3))
    return out


def augmented_copies(image, count, rng):
    """``count`` copies by ``ultrasound_augment`` (``augment.augmented_copies``'s signature)."""
    return [ultrasound_augment(image, rng) for _ in range(count)]
