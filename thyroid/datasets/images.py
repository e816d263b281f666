"""Image loading and validation, scan / ROI cropping, and content hashing for duplicates.

Every decoding path (dataset build, predict, the web app) goes through ``check_pixel_count``
before decoding and ``to_rgb8`` after it, so limits and bit-depth handling are the same
everywhere. A file is opened only when it is a regular file no larger than
``max_file_bytes(max_pixels)`` (``thyroid.datasets.files``).
"""

import io
import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from thyroid.datasets import dicom, files
# Re-exported: callers catch images.ImageError and the scaling is part of this module's story.
from thyroid.datasets.pixels import ImageError, effective_bit_depth, scale_to_uint8  # noqa: F401

RASTER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DICOM_EXTENSIONS = (".dcm", ".dicom")
MIN_SIDE = 16  # anything smaller is not an ultrasound frame
# An ultrasound frame is about 1 Mpx; 40 Mpx leaves room for stitched or high-resolution
# exports while a decode stays under about 160 MB of RGB (Pillow alone allows 179 Mpx).
DEFAULT_MAX_PIXELS = 40_000_000
DICOM_MAGIC_OFFSET = 128
# The largest file one frame of max_pixels can need: 8 bytes per pixel (16-bit RGBA stored
# uncompressed, the widest layout decoded). MIN_FILE_LIMIT leaves room for headers, metadata
# and embedded previews when max_pixels is small. A multi-frame DICOM above the limit is
# refused (--max_pixels raises it).
BYTES_PER_PIXEL_LIMIT = 8
MIN_FILE_LIMIT = 16 * 2 ** 20


def max_file_bytes(max_pixels=DEFAULT_MAX_PIXELS):
    """Largest image file opened for a given pixel limit (checked before reading)."""
    return max(BYTES_PER_PIXEL_LIMIT * int(max_pixels or DEFAULT_MAX_PIXELS), MIN_FILE_LIMIT)


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


# A nodule outline drawn as a mask image beside its image (``scan.jpg`` -> ``scan_mask.png``):
# read by the outline set (``datasets.outlines``), never as a scan of its own.
MASK_SUFFIX = "_mask.png"


def is_mask_file(path):
    return os.path.basename(path).lower().endswith(MASK_SUFFIX)


def file_sha256(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Content hash of an image file, streamed; ImageError for a file that must not be read."""
    try:
        return files.sha256(path, max_file_bytes(max_pixels))
    except files.FileError as error:
        raise ImageError(error.reason, error.detail) from error


def _is_dicom_bytes(data):
    return data[DICOM_MAGIC_OFFSET:DICOM_MAGIC_OFFSET + 4] == b"DICM"


def _open_source(path_or_bytes):
    return io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) \
        else path_or_bytes


def _raster_size(path_or_bytes):
    """(width, height, frames) from the header; Pillow's open does not decode pixels."""
    try:
        with warnings.catch_warnings():  # our own limit, checked next, is the stricter one
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(_open_source(path_or_bytes)) as image:
                return image.width, image.height, 1
    except Image.DecompressionBombError as error:
        raise ImageError("image too large", str(error)) from error
    except UnidentifiedImageError as error:
        raise ImageError("cannot decode image", "unrecognised format (expected JPEG, PNG, BMP, "
                         "TIFF or DICOM)") from error
    except Exception as error:  # PIL raises many types for broken headers
        raise ImageError("cannot decode image", str(error)) from error


def check_pixel_count(path_or_bytes, max_pixels=DEFAULT_MAX_PIXELS):
    """Refuses an image whose header declares more than ``max_pixels`` pixels, before decoding.

    ``path_or_bytes``: a file path or the file's contents (JPEG, PNG, BMP, TIFF or DICOM).
    Returns (width, height, frames); raises ImageError naming the size and the limit.
    """
    if isinstance(path_or_bytes, (bytes, bytearray)):
        is_dicom = _is_dicom_bytes(path_or_bytes)
    else:
        is_dicom = os.path.splitext(path_or_bytes)[1].lower() in DICOM_EXTENSIONS
    if is_dicom:
        width, height, frames = dicom.header_size(_open_source(path_or_bytes))
    else:
        width, height, frames = _raster_size(path_or_bytes)
    # Only one frame is ever decoded (see dicom.py), so the limit applies per frame.
    if max_pixels and width * height > max_pixels:
        raise ImageError("image too large", f"{width}x{height} = {width * height} pixels, "
                         f"above the limit of {max_pixels} (--max_pixels)")
    return width, height, frames


def to_rgb8(image):
    """A decoded PIL image -> uint8 HxWx3. 8-bit modes convert as Pillow does; 16/32-bit integer
    greyscale is scaled by its effective bit depth (never clipped); float by its own range."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.int64)
        values = values - min(int(values.min()), 0)  # signed data starts at zero
        gray = scale_to_uint8(values, 2 ** effective_bit_depth(values.max()) - 1)
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        if low >= 0 and high <= 1:
            low, high = 0.0, 1.0
        gray = scale_to_uint8(values - low, high - low)
    else:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _decode_raster(path_or_bytes):
    with Image.open(_open_source(path_or_bytes)) as image:
        image.load()  # forces a full decode, so truncation shows up here
        return to_rgb8(image)


def _decode(path_or_bytes, is_dicom, max_pixels, fallbacks):
    check_pixel_count(path_or_bytes, max_pixels)
    try:
        if is_dicom:
            return dicom.load_rgb(_open_source(path_or_bytes), fallbacks)
        return _decode_raster(path_or_bytes)
    except ImageError:
        raise
    except Exception as error:  # PIL / pydicom raise many types for broken files
        raise ImageError("cannot decode image", str(error)) from error


def _check_side(array):
    # Every decoder returns uint8 HxWx3; anything else would fail later, far from its file.
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ImageError("cannot decode image", f"decoded to {array.dtype} of shape "
                         f"{'x'.join(map(str, array.shape))}, not height x width x 3")
    if array.shape[0] < MIN_SIDE or array.shape[1] < MIN_SIDE:
        raise ImageError("image too small", f"{array.shape[1]}x{array.shape[0]}")
    return array


def decode_image_bytes(data, max_pixels=DEFAULT_MAX_PIXELS, fallbacks=None):
    """Image file contents -> uint8 HxWx3, or ImageError saying why they cannot be used
    (``fallbacks`` as for ``load_image``)."""
    if not data:
        raise ImageError("empty file")
    data = bytes(data)
    is_dicom = _is_dicom_bytes(data)
    if is_dicom and not dicom_available():
        raise ImageError("DICOM needs pydicom: pip install -e .[dicom]")
    return _check_side(_decode(data, is_dicom, max_pixels, fallbacks))


def load_image(path, max_pixels=DEFAULT_MAX_PIXELS, fallbacks=None):
    """Reads an image as uint8 HxWx3, or raises ImageError saying why it cannot be used.
    ``fallbacks``, a list, receives a line for each of the file's settings that could not be
    used as they are (an invalid DICOM window: its values' range is used instead)."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in supported_extensions():
        raise ImageError("unsupported file type", extension or "(none)")
    try:
        size = files.check_regular_file(path, max_file_bytes(max_pixels))
    except files.FileError as error:
        raise ImageError(error.reason, error.detail) from error
    if size == 0:
        raise ImageError("empty file")
    return _check_side(_decode(path, extension in DICOM_EXTENSIONS, max_pixels, fallbacks))


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
# Crops that change the frame around the scan field, for the study's robustness check only
# (never a training or export crop): the detected field with the bottom text band kept, and a
# fixed proportional box in place of the detected field (another scanner's layout).
VARIANT_CROPS = ("scan_with_band", "fixed_box")


def crop(rgb, mode, polygons=()):
    if mode == "scan":
        return crop_scan(rgb)
    if mode == "roi":
        return crop_roi(rgb, polygons)
    if mode == "none":
        return rgb
    if mode == "scan_with_band":
        top, _, left, right = find_scan_box(rgb)
        return np.ascontiguousarray(rgb[top:, left:right])
    if mode == "fixed_box":
        top, bottom, left, right = fallback_scan_box(*rgb.shape[:2])
        return np.ascontiguousarray(rgb[top:bottom, left:right])
    raise ValueError(f"unknown crop mode {mode!r}; expected one of {CROP_MODES}")
