"""Drawing a heat map over the image it explains: colour map, overlay inside the crop, PNG.

The map comes from the exported model itself (its ``cam`` output, ``deploy.head_cam``), scaled
to [0, 1] by ``TFLiteModel.explain_prepared``; it is upsampled bilinearly to the crop and drawn
with a colour map over the input image. Numpy and Pillow only.
"""

import io

import numpy as np
from PIL import Image

ALPHA = 0.45


def colormap(values):
    """[0, 1] -> uint8 RGB, a 'jet'-like map (blue -> cyan -> yellow -> red)."""
    v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
    red = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0.0, 1.0)
    green = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0.0, 1.0)
    blue = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0.0, 1.0)
    return (np.stack([red, green, blue], axis=-1) * 255.0).round().astype(np.uint8)


def overlay(rgb, heat, box, alpha=ALPHA):
    """Draws ``heat`` (any resolution) over ``rgb`` inside ``box`` = (top, bottom, left, right).

    Outside the box (the parts the crop removed) the image is dimmed. Returns uint8 HxWx3 of
    the input's size.
    """
    rgb = np.asarray(rgb, np.uint8)
    top, bottom, left, right = box
    out = (rgb.astype(np.float32) * 0.6).round()
    height, width = bottom - top, right - left
    heat_image = Image.fromarray(np.ascontiguousarray(heat, np.float32)).resize(
        (width, height), Image.BILINEAR)
    colours = colormap(np.asarray(heat_image)).astype(np.float32)
    region = rgb[top:bottom, left:right].astype(np.float32)
    out[top:bottom, left:right] = (1.0 - alpha) * region + alpha * colours
    return np.clip(out, 0, 255).astype(np.uint8)


def png_bytes(rgb):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
