"""The one resize every path uses, so training, evaluation and serving see the same pixels."""

import numpy as np
from PIL import Image


def to_rgb_array(image):
    """PIL image or array (HxW, HxWx1, HxWx3, HxWx4) -> HxWx3 uint8 array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3]).astype(np.uint8)


def resize_square(image, size):
    """Bilinear resize of the whole image to ``size`` x ``size``; returns uint8 HxWx3."""
    rgb = to_rgb_array(image)
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def resize_batch(images, size):
    """List of images -> uint8 array [N, size, size, 3]."""
    if len(images) == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([resize_square(image, size) for image in images])
