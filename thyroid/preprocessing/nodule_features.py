"""Hand-crafted measurements of an outlined nodule: shape, echo level, texture.

Inputs are the image and its nodule outline(s) only: an expert's polygons, or the outline
traced from a predicted mask (``thyroid.preprocessing.outline``). The report's sonographic
fields (composition, echogenicity, margins, calcifications) and TIRADS are never used: the
label is computed from them.

    values = roi_features(rgb, polygons)   # float32 [len(FEATURE_NAMES)], NaN where undefined

Where an image has several polygons (two nodules, or one nodule in both views of a dual
frame), the largest one is described.
"""

import numpy as np

from thyroid.preprocessing.outline import polygon_area, polygon_perimeter, rasterize

RING_WIDTH = 12        # pixels of tissue around the nodule that set its reference echo level
BORDER_WIDTH = 3       # pixels either side of the contour where margin sharpness is measured
GLCM_LEVELS = 16
GLCM_OFFSETS = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (0, 4), (4, 0))
MIN_POLYGON_AREA = 30.0

SHAPE_NAMES = ("log_area", "height_over_width", "solidity", "circularity", "radial_cv",
               "ellipse_elongation", "taller_than_wide")
INTENSITY_NAMES = ("inside_mean", "inside_std", "inside_p10", "inside_p50", "inside_p90",
                   "ring_mean", "ring_std", "inside_minus_ring", "inside_over_ring",
                   "dark_fraction", "bright_fraction", "bright_spots", "edge_contrast",
                   "border_gradient")
TEXTURE_NAMES = ("glcm_contrast", "glcm_homogeneity", "glcm_energy", "glcm_correlation",
                 "glcm_entropy")
FEATURE_NAMES = SHAPE_NAMES + INTENSITY_NAMES + TEXTURE_NAMES


def to_gray(rgb):
    """uint8 HxWx3 (or HxW) -> float64 HxW in [0, 255]."""
    array = np.asarray(rgb, dtype=np.float64)
    return array.mean(axis=2) if array.ndim == 3 else array


def convex_hull(points):
    """Monotone-chain convex hull of [(x, y), ...], counter-clockwise."""
    pts = sorted(set(map(tuple, np.asarray(points, dtype=np.float64).tolist())))
    if len(pts) < 3:
        return pts

    def half(sequence):
        hull = []
        for p in sequence:
            while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) <= 0:
                hull.pop()
            hull.append(p)
        return hull[:-1]

    return half(pts) + half(reversed(pts))


def _cross(o, a, b):
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def largest_polygon(polygons):
    """The polygon of largest area, or None when none encloses MIN_POLYGON_AREA pixels."""
    usable = [p for p in polygons or () if len(p) >= 3 and polygon_area(p) >= MIN_POLYGON_AREA]
    return max(usable, key=polygon_area) if usable else None


def shape_features(points):
    """Scale-free shape descriptors plus log area (pixels: DDTI frames share one size)."""
    xy = np.asarray(points, dtype=np.float64)
    area, perimeter = polygon_area(xy), polygon_perimeter(xy)
    width, height = np.ptp(xy[:, 0]) + 1.0, np.ptp(xy[:, 1]) + 1.0
    radii = np.hypot(*(xy - xy.mean(axis=0)).T)
    covariance = np.cov(xy.T)
    eigen = np.sort(np.linalg.eigvalsh(covariance))
    return [np.log(area), height / width, area / max(polygon_area(convex_hull(xy)), 1e-9),
            4.0 * np.pi * area / max(perimeter ** 2, 1e-9), radii.std() / max(radii.mean(), 1e-9),
            np.sqrt(max(eigen[1], 1e-9) / max(eigen[0], 1e-9)), float(height > width)]


def polygon_mask(shape, points):
    return rasterize([points], shape[0], shape[1])


def dilate(mask, radius):
    """Binary dilation by a (2r+1) square, via cumulative sums (no SciPy needed)."""
    size = 2 * radius + 1
    padded = np.pad(mask.astype(np.int64), radius + 1)
    sums = padded.cumsum(0).cumsum(1)
    h, w = mask.shape
    window = (sums[size:size + h, size:size + w] - sums[:h, size:size + w]
              - sums[size:size + h, :w] + sums[:h, :w])
    return window > 0


def erode(mask, radius):
    return ~dilate(~mask, radius)


def gradient_magnitude(gray):
    gy, gx = np.gradient(gray)
    return np.hypot(gx, gy)


def intensity_features(gray, mask):
    """Echo level inside vs a ring around the nodule, dark/bright fractions, margin sharpness."""
    ring = dilate(mask, RING_WIDTH) & ~mask
    inside, around = gray[mask], gray[ring]
    if around.size == 0:
        around = inside
    ring_mean, ring_std = around.mean(), around.std() + 1e-6
    bright = mask & (gray > ring_mean + 2.0 * ring_std)
    border = dilate(mask, BORDER_WIDTH) & ~erode(mask, BORDER_WIDTH)
    gradient = gradient_magnitude(gray)
    inner = erode(mask, BORDER_WIDTH)
    inner_gradient = gradient[inner].mean() if inner.any() else gradient[mask].mean()
    return [inside.mean(), inside.std(), *np.percentile(inside, (10, 50, 90)),
            ring_mean, around.std(), inside.mean() - ring_mean, inside.mean() / (ring_mean + 1.0),
            float(np.mean(inside < 0.5 * ring_mean)), float(bright.sum()) / inside.size,
            _count_spots(bright), (inside.mean() - ring_mean) / ring_std,
            gradient[border].mean() / (inner_gradient + 1e-6)]


def _count_spots(bright):
    """Number of bright 3x3 local maxima: a proxy for echogenic foci per nodule."""
    if not bright.any():
        return 0.0
    padded = np.pad(bright, 1)
    core = padded[1:-1, 1:-1]
    isolated = core & ~(padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return float(np.log1p(isolated.sum()))


def glcm_features(gray, mask, levels=GLCM_LEVELS, offsets=GLCM_OFFSETS):
    """Grey-level co-occurrence statistics inside the mask, averaged over offsets.

    Levels are quantised between the nodule's own 1st and 99th percentiles, so texture is
    measured independently of overall brightness (gain differs between scanners).
    """
    inside = gray[mask]
    low, high = np.percentile(inside, (1, 99))
    quantised = np.clip(((gray - low) / max(high - low, 1e-6) * levels).astype(int), 0, levels - 1)
    stats = []
    i, j = np.meshgrid(np.arange(levels), np.arange(levels), indexing="ij")
    for dy, dx in offsets:
        a, b = _pairs(quantised, mask, dy, dx)
        if a.size == 0:
            continue
        matrix = np.bincount(a * levels + b, minlength=levels * levels).reshape(levels, levels)
        p = (matrix + matrix.T) / (2.0 * a.size)
        mean_i = (i * p).sum()
        var_i = ((i - mean_i) ** 2 * p).sum()
        correlation = ((i - mean_i) * (j - mean_i) * p).sum() / var_i if var_i > 0 else 1.0
        nonzero = p[p > 0]
        stats.append([((i - j) ** 2 * p).sum(), (p / (1.0 + np.abs(i - j))).sum(),
                      (p ** 2).sum(), correlation, -(nonzero * np.log(nonzero)).sum()])
    return list(np.mean(stats, axis=0)) if stats else [np.nan] * len(TEXTURE_NAMES)


def _pairs(quantised, mask, dy, dx):
    """Level pairs (a, b) of pixel p and p + (dy, dx), both inside the mask."""
    h, w = mask.shape
    first = (slice(0, h - dy), slice(0, w - dx))
    second = (slice(dy, h), slice(dx, w))
    both = mask[first] & mask[second]
    return quantised[first][both], quantised[second][both]


def roi_features(rgb, polygons):
    """float32 [len(FEATURE_NAMES)] for the largest polygon; all NaN when there is none."""
    points = largest_polygon(polygons)
    if points is None:
        return np.full(len(FEATURE_NAMES), np.nan, np.float32)
    gray = to_gray(rgb)
    mask = polygon_mask(gray.shape, points)
    if mask.sum() < MIN_POLYGON_AREA:
        return np.full(len(FEATURE_NAMES), np.nan, np.float32)
    values = shape_features(points) + intensity_features(gray, mask) + glcm_features(gray, mask)
    return np.asarray(values, dtype=np.float32)
