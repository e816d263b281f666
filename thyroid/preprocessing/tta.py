"""Test-time augmentation: a model's answer averaged over views of each image, the image and
its left-right mirror at two scales (the whole image, and its centre enlarged to the same
size: a nearer depth setting). Up-down flips are left out: the probe's face is always at the
top of an ultrasound image, so a vertical mirror is no image a scanner makes.

``tta_mean(predict, images)`` calls ``predict`` once on every view of every image (a list of
uint8 HxWx3 arrays, ``len(VIEWS)`` per image, image by image) and returns the mean of its
answers per image: probabilities stay probabilities (the mean of the views' P(malignant)).
"""

import numpy as np
from PIL import Image

from thyroid.preprocessing import augment

# (mirrored, scale): scale 1 is the whole image, below 1 the central part of that share of
# each side, resized back to the image's size.
SCALES = (1.0, 0.85)
VIEWS = tuple((mirrored, scale) for scale in SCALES for mirrored in (False, True))
# The views by name, in ``VIEWS`` order: a build can write one view of every image
# (``datasets.build_config.BuildConfig.view``), so that any model scores it as it scores
# any other image set.
VIEW_NAMES = ("whole", "mirror", "zoom", "mirror_zoom")
VIEW_OF_NAME = dict(zip(VIEW_NAMES, VIEWS))


def centre_zoom(image, scale):
    """The central ``scale`` share of each side, resized (bilinear) to the image's size."""
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    if scale == 1:
        return image
    height, width = image.shape[:2]
    crop_h, crop_w = max(1, round(height * scale)), max(1, round(width * scale))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    crop = Image.fromarray(image[top:top + crop_h, left:left + crop_w])
    return np.asarray(crop.resize((width, height), Image.BILINEAR), np.uint8)


def _view(image, mirrored, scale):
    view = centre_zoom(image, scale)
    return augment.horizontal_flip(view) if mirrored else view


def views(image):
    """The ``VIEWS`` of one uint8 HxWx3 image, in order."""
    return [_view(image, mirrored, scale) for mirrored, scale in VIEWS]


def named_view(image, name):
    """The view ``name`` (one of ``VIEW_NAMES``) of one uint8 HxWx3 image; ValueError naming
    the views for any other name."""
    if name not in VIEW_OF_NAME:
        raise ValueError(f"test-time view {name!r}: expected one of {', '.join(VIEW_NAMES)}")
    return _view(image, *VIEW_OF_NAME[name])


def tta_mean(predict, images):
    """The mean of ``predict`` over every image's views: ``predict(list of images)`` returns
    one number (or one row) per image it is given; -> float64 array [N] (or [N, ...])."""
    images = list(images)
    if not images:
        return np.zeros(0)
    every_view = [view for image in images for view in views(image)]
    answers = np.asarray(predict(every_view), np.float64)
    if answers.shape[:1] != (len(every_view),):
        raise ValueError(f"predict returned {answers.shape[:1]} answers for "
                         f"{len(every_view)} views")
    return answers.reshape((len(images), len(VIEWS)) + answers.shape[1:]).mean(axis=1)
