"""Image loading and validation, scan / ROI cropping, and content hashing for duplicates."""

import hashlib
import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

RASTER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
DICOM_EXTENSIONS = (".dcm", ".dicom")
MIN_SIDE = 16  # anything smaller is not an ultrasound frame
MAX_PIXELS = 64_000_000  # refuse decompression bombs


class ImageError(Exception):
    """An image file that cannot be used (corrupt, truncated, empty, unsupported)."""


def dicom_available():
    try:
        import pydicom  # noqa: F401
    except ImportError:
        return False
    return True


def supported_extensions():
    return RASTER_EXTENSIONS + (DICOM_EXTENSIONS if dicom_available() else ())


def is_image_file(path):
    return os.path.splitext(path)[1].lower() in supported_extensions()


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _load_dicom(path):
    import pydicom
    pixels = np.asarray(pydicom.dcmread(path).pixel_array, dtype=np.float64)
    if pixels.ndim == 3 and pixels.shape[0] not in (pixels.shape[1], 3) and pixels.shape[-1] != 3:
        pixels = pixels[0]  # multi-frame: first frame
    low, high = float(pixels.min()), float(pixels.max())
    scaled = (pixels - low) / max(high - low, 1e-9) * 255.0
    array = scaled.astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def load_image(path):
    """Reads an image as uint8 HxWx3, or raises ImageError saying why it cannot be used."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in supported_extensions():
        raise ImageError(f"unsupported file type {extension or '(none)'}")
    if os.path.getsize(path) == 0:
        raise ImageError("empty file")
    try:
        if extension in DICOM_EXTENSIONS:
            array = _load_dicom(path)
        else:
            with Image.open(path) as image:
                image.load()  # forces a full decode, so truncation shows up here
                array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except ImageError:
        raise
    except Exception as error:  # PIL raises many types for broken files
        raise ImageError(f"cannot decode image: {error}") from error
    if array.shape[0] < MIN_SIDE or array.shape[1] < MIN_SIDE:
        raise ImageError(f"image too small: {array.shape[1]}x{array.shape[0]}")
    return array


def _box_mean(values, size):
    """Mean over a size x size window (cumulative sums; same shape as input)."""
    pad = size // 2
    padded = np.pad(values, pad, mode="edge").astype(np.float64)
    sums = padded.cumsum(0).cumsum(1)
    sums = np.pad(sums, ((1, 0), (1, 0)))
    h, w = values.shape
    return (sums[size:size + h, size:size + w] - sums[:h, size:size + w]
            - sums[size:size + h, :w] + sums[:h, :w]) / float(size * size)


def _longest_run(mask):
    """(start, stop) of the longest run of True values, or None."""
    best, start = None, None
    for i, value in enumerate(list(mask) + [False]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            if best is None or i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def _fill_short_gaps(mask, max_gap):
    """Fills runs of False no longer than max_gap that sit between True values."""
    mask = np.array(mask, dtype=bool)
    true_positions = np.flatnonzero(mask)
    for a, b in zip(true_positions[:-1], true_positions[1:]):
        if 1 < b - a <= max_gap + 1:
            mask[a:b] = True
    return mask


def fallback_scan_box(height, width):
    """A fixed crop: drops the bottom text band (where DDTI burns in TIRADS) and the margins."""
    return (int(0.03 * height), int(0.85 * height), int(0.12 * width), int(0.86 * width))


def find_scan_box(rgb):
    """(top, bottom, left, right) of the ultrasound field.

    The field is the large block where most pixels carry speckle; text, scale bars and the
    bottom annotation band are sparse, so they fall out of the longest dense run of rows and
    then of columns. The bottom band is always dropped, even if the detector misses it.
    """
    height, width = rgb.shape[:2]
    gray = rgb.astype(np.float32).mean(axis=2)
    dense = _box_mean((gray > 12).astype(np.float32), 9) > 0.6
    rows = _longest_run(dense.mean(axis=1) > 0.3)
    fallback = fallback_scan_box(height, width)
    if rows is None or rows[1] - rows[0] < 0.3 * height:
        return fallback
    # Dual side-by-side frames have a thin dark seam; bridge it to keep both views.
    cols = _longest_run(_fill_short_gaps(dense[rows[0]:rows[1]].mean(axis=0) > 0.5,
                                         int(0.04 * width)))
    if cols is None or cols[1] - cols[0] < 0.3 * width:
        return fallback
    top, bottom = rows
    bottom = min(bottom, fallback[1])  # never keep the burned-in text band
    return (top, bottom, cols[0], cols[1])


def crop_scan(rgb):
    top, bottom, left, right = find_scan_box(rgb)
    return np.ascontiguousarray(rgb[top:bottom, left:right])


def polygon_box(polygons):
    points = [p for polygon in polygons for p in polygon]
    if not points:
        return None
    xs, ys = zip(*points)
    return min(xs), min(ys), max(xs), max(ys)


def crop_roi(rgb, polygons, margin=0.15):
    """Bounding box of all polygons plus a margin; the scan crop when there is no polygon."""
    box = polygon_box(polygons)
    if box is None:
        return crop_scan(rgb)
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = box
    pad_x, pad_y = margin * (x1 - x0) + 8, margin * (y1 - y0) + 8
    scan_bottom = fallback_scan_box(height, width)[1]
    left, right = max(0, int(x0 - pad_x)), min(width, int(np.ceil(x1 + pad_x)))
    top, bottom = max(0, int(y0 - pad_y)), min(scan_bottom, int(np.ceil(y1 + pad_y)))
    if right - left < MIN_SIDE or bottom - top < MIN_SIDE:
        return crop_scan(rgb)
    return np.ascontiguousarray(rgb[top:bottom, left:right])


CROP_MODES = ("scan", "roi", "none")


def crop(rgb, mode, polygons=()):
    if mode == "scan":
        return crop_scan(rgb)
    if mode == "roi":
        return crop_roi(rgb, polygons)
    if mode == "none":
        return rgb
    raise ValueError(f"unknown crop mode {mode!r}; expected one of {CROP_MODES}")


def decode_image_bytes(data):
    """Image file contents -> uint8 HxWx3, in memory. Raises ImageError with the reason."""
    if not data:
        raise ImageError("empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(f"image too large: {image.width}x{image.height} pixels")
            image.load()
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except ImageError:
        raise
    except UnidentifiedImageError as error:
        raise ImageError("unrecognised image format (expected JPEG, PNG, BMP, ...)") \
            from error
    except Exception as error:  # PIL raises many types for broken data
        raise ImageError(f"cannot decode image: {error}") from error
    if rgb.shape[0] < MIN_SIDE or rgb.shape[1] < MIN_SIDE:
        raise ImageError(f"image too small: {rgb.shape[1]}x{rgb.shape[0]}")
    return rgb
