"""Nodule outlines as masks and back: drawing polygons into a mask, splitting a mask into its
nodule views, tracing each view's outline, and measuring it.

Coordinates are pixel indices, x = column and y = row, the convention of DDTI's polygons and
of ``PIL.ImageDraw.polygon``, so ``rasterize(outlines(mask))`` gives back ``mask`` up to the
pixels the boundary crosses.

- The mask of an image is the union of its polygons (``rasterize``).
- Each connected region of a mask is one nodule view with its own box (``regions``): two
  nodules, or one nodule in both halves of a dual frame.
- ``box_of_regions`` is the box a classifier crops: the views that are not specks beside the
  largest one (``KEEP_FRACTION``), so a stray predicted blob does not widen the crop.
"""

import dataclasses
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from thyroid.preprocessing import labelling

# Regions smaller than this (pixels of the mask's own resolution) are noise, not a nodule view.
MIN_REGION_PIXELS = 16
# A region counts as a nodule view of the crop when its area is at least this share of the
# largest region's: both views of a dual frame pass, a speck of false positive does not.
KEEP_FRACTION = 0.25
# Outlines are thinned to at most this many points (a JSON answer, a drawn polygon).
MAX_OUTLINE_POINTS = 128
# 8-connectivity: a nodule drawn with a thin waist stays one view.
CONNECTIVITY = 8


@dataclasses.dataclass(frozen=True)
class Region:
    """One nodule view: its pixel count, box (x0, y0, x1, y1; x1/y1 exclusive) and centre."""
    pixels: int
    box: Tuple[int, int, int, int]
    centre: Tuple[float, float]
    label: int  # its number in the labelled mask (``regions``' second value)


def rasterize(polygons, height, width):
    """bool [height, width]: the union of ``polygons`` ([(x, y), ...] each; fewer than three
    points draw nothing)."""
    image = Image.new("L", (int(width), int(height)), 0)
    draw = ImageDraw.Draw(image)
    for polygon in polygons or ():
        points = [(float(x), float(y)) for x, y in polygon]
        if len(points) >= 3:
            draw.polygon(points, fill=1)
    return np.asarray(image, dtype=bool)


def regions(mask, min_pixels=MIN_REGION_PIXELS):
    """([Region, ...] largest first, labelled int array) of ``mask``'s connected regions of at
    least ``min_pixels`` pixels."""
    labelled, count = labelling.label(mask, CONNECTIVITY)
    found = []
    for index, window in enumerate(labelling.find_objects(labelled, count), start=1):
        if window is None:
            continue
        rows, cols = np.nonzero(labelled[window] == index)
        if rows.size < min_pixels:
            continue
        top, left = window[0].start, window[1].start
        found.append(Region(int(rows.size), (left, top, window[1].stop, window[0].stop),
                            (float(cols.mean() + left), float(rows.mean() + top)), index))
    found.sort(key=lambda region: -region.pixels)
    return found, labelled


def kept_regions(found, keep_fraction=KEEP_FRACTION):
    """The regions at least ``keep_fraction`` of the largest one's area (``found`` as
    ``regions`` returns it, largest first)."""
    if not found:
        return []
    return [region for region in found if region.pixels >= keep_fraction * found[0].pixels]


def box_of_regions(found):
    """(x0, y0, x1, y1) around the kept regions, or None for none."""
    kept = kept_regions(found)
    if not kept:
        return None
    return (min(r.box[0] for r in kept), min(r.box[1] for r in kept),
            max(r.box[2] for r in kept), max(r.box[3] for r in kept))


def box_contains(box, point):
    return box is not None and box[0] <= point[0] < box[2] and box[1] <= point[1] < box[3]


def trace(region_mask, max_points=MAX_OUTLINE_POINTS):
    """The outer outline [(x, y), ...] of one region (holes filled), or [] when empty."""
    import contourpy
    filled = labelling.fill_holes(region_mask)
    if not filled.any():
        return []
    # Padding closes the contour of a region that touches the border.
    padded = np.pad(filled.astype(np.float64), 1)
    lines = contourpy.contour_generator(z=padded, name="serial").lines(0.5)
    longest = max(lines, key=len)
    points = longest[:-1] if len(longest) > 1 and np.allclose(longest[0], longest[-1]) else longest
    if len(points) > max_points:
        points = points[np.linspace(0, len(points), max_points, endpoint=False).astype(int)]
    return [(float(x) - 1.0, float(y) - 1.0) for x, y in points]


def outlines(mask, min_pixels=MIN_REGION_PIXELS, max_points=MAX_OUTLINE_POINTS):
    """One outline per kept region of ``mask``, largest region first."""
    found, labelled = regions(mask, min_pixels)
    return [trace(labelled == region.label, max_points) for region in kept_regions(found)]


def polygon_area(points):
    """Shoelace area of [(x, y), ...] (absolute value)."""
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(xy) < 3:
        return 0.0
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polygon_perimeter(points):
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(xy) < 2:
        return 0.0
    return float(np.sum(np.hypot(*(np.roll(xy, -1, axis=0) - xy).T)))


def measure(points, spacing_mm: Optional[Tuple[float, float]] = None):
    """Size of one outline: pixels, and millimetres when ``spacing_mm`` (row spacing, column
    spacing; a DICOM's PixelSpacing) is known.

    ``width`` is along x (columns), ``height`` along y (rows): on an ultrasound frame height is
    depth, so ``taller_than_wide`` is the classic sign (anteroposterior > transverse).
    """
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(xy) < 3:
        return None
    width, height = float(np.ptp(xy[:, 0])), float(np.ptp(xy[:, 1]))
    values = {"area_px": polygon_area(xy), "width_px": width, "height_px": height,
              "perimeter_px": polygon_perimeter(xy), "taller_than_wide": bool(height > width)}
    if spacing_mm:
        row_mm, col_mm = (float(v) for v in spacing_mm)
        scaled = xy * np.array([col_mm, row_mm])
        values.update(area_mm2=polygon_area(scaled), width_mm=width * col_mm,
                      height_mm=height * row_mm, perimeter_mm=polygon_perimeter(scaled),
                      taller_than_wide=bool(height * row_mm > width * col_mm))
    return values


def shift(polygons, dx, dy):
    """``polygons`` moved by (dx, dy): between a crop's coordinates and its image's."""
    return [[(x + dx, y + dy) for x, y in polygon] for polygon in polygons]


def scale(polygons, sx, sy):
    """``polygons`` scaled by (sx, sy): between a resized input's coordinates and the crop's."""
    return [[(x * sx, y * sy) for x, y in polygon] for polygon in polygons]


def resize_probabilities(probabilities, height, width):
    """A probability map [h, w] (float) resized bilinearly to [height, width]."""
    image = Image.fromarray(np.asarray(probabilities, np.float32))
    return np.asarray(image.resize((int(width), int(height)), Image.BILINEAR), np.float32)


def largest_outline(polygons: List) -> Optional[list]:
    """The polygon of largest area among ``polygons``, or None."""
    usable = [p for p in polygons or () if len(p) >= 3]
    return max(usable, key=polygon_area) if usable else None
