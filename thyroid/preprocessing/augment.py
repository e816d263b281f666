"""Training-set augmentation: horizontal flip, small rotation, additive noise (numpy + PIL).

``rng`` is a ``numpy.random.Generator``; the build gives each image its own, seeded from the
image (``datasets.records.augmentation_rng``).
"""

import numpy as np
from PIL import Image

MAX_ROTATION_DEGREES = 15.0
NOISE_SIGMA_RANGE = (2.0, 8.0)


def horizontal_flip(image):
    return np.ascontiguousarray(image[:, ::-1])


def rotate(image, degrees):
    """Rotates about the centre, same size; the corners it uncovers are black like the background."""
    rotated = Image.fromarray(image).rotate(degrees, resample=Image.BILINEAR, fillcolor=(0, 0, 0))
    return np.asarray(rotated, dtype=np.uint8)


def add_noise(image, rng, sigma):
    """Grey Gaussian noise (the same on every channel), rounded and clipped to uint8. Drawn
    and summed in float32, in place: this is the largest per-copy cost of the build."""
    noise = rng.standard_normal(image.shape[:2], dtype=np.float32)
    noise *= sigma
    noisy = image.astype(np.float32)
    noisy += noise[:, :, None]
    np.rint(noisy, out=noisy)
    np.clip(noisy, 0, 255, out=noisy)
    return noisy.astype(np.uint8)


def augment(image, rng):
    """One random copy: flip with probability 1/2, rotate up to 15 degrees, add grey noise."""
    out = horizontal_flip(image) if rng.random() < 0.5 else image
    out = rotate(out, float(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES)))
    return add_noise(out, rng, float(rng.uniform(*NOISE_SIGMA_RANGE)))


def augmented_copies(image, count, rng):
    return [augment(image, rng) for _ in range(count)]
