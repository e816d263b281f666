"""DICOM decoding (the ``dicom`` extra, pydicom); the folder and CSV readers take ``.dcm`` files.

One image per file: the first frame of a multi-frame file (a cine loop's frames are near
copies of one another and of one patient, so more frames add no independent evidence); the
frame count is kept in the example's fields. Greyscale (MONOCHROME1/2) is windowed with the
file's VOI LUT, else its window centre/width, else scaled by BitsStored; MONOCHROME1 is
inverted so that bright means echogenic as in MONOCHROME2. RGB and YBR files are returned as
RGB. ``PatientID`` is the patient id when present (the readers fall back to one patient per file).
"""

import io

import numpy as np

from thyroid.datasets import files
from thyroid.datasets.pixels import ImageError, scale_to_uint8

GREYSCALE = ("MONOCHROME1", "MONOCHROME2")
# Header elements come before the pixel data and take kilobytes; reading a file's header from
# at most this much of it bounds the work whatever the file's size.
HEADER_BYTES = 16 * 2 ** 20
WINDOW_FALLBACK = "DICOM window unusable (width not a number >= 1): stored value range used"


def _pydicom():
    try:
        import pydicom
    except ImportError as error:
        raise ImageError("DICOM needs pydicom: pip install -e .[dicom]") from error
    return pydicom


def _read_header(source):
    pydicom = _pydicom()
    if isinstance(source, str):
        try:
            source = io.BytesIO(files.read_prefix(source, HEADER_BYTES))
        except files.FileError as error:
            raise ImageError(error.reason, error.detail) from error
    try:
        return pydicom.dcmread(source, stop_before_pixels=True, force=True)
    except Exception as error:  # pydicom raises many types for broken files
        raise ImageError("cannot decode image", f"unreadable DICOM header ({error})") \
            from error


def header_size(source):
    """(width, height, frames) from the DICOM header, without reading pixel data."""
    header = _read_header(source)
    if hasattr(source, "seek"):
        source.seek(0)
    rows, columns = header.get("Rows"), header.get("Columns")
    if not rows or not columns:
        raise ImageError("cannot decode image", "DICOM without Rows/Columns (no pixel data)")
    return int(columns), int(rows), int(header.get("NumberOfFrames", 1) or 1)


def _first_frame(dataset):
    from pydicom.pixels import pixel_array
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    # as_rgb converts YBR_* to RGB; index reads one frame only of a multi-frame file.
    return pixel_array(dataset, index=0 if frames > 1 else None, as_rgb=True)


def _value_range(values):
    """Values scaled by their own minimum and maximum onto 0..1 (all 0 when constant)."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def _apply_window(values, center, width, fallbacks):
    """DICOM's linear window function (PS3.3 C.11.2.1.2) onto 0..1. A width below 1 or a
    centre or width that is not a number is invalid (it would give a black or two-level
    image): the values' own range is used instead and ``fallbacks`` says so."""
    if not (np.isfinite(center) and np.isfinite(width) and width >= 1):
        if fallbacks is not None:
            fallbacks.append(WINDOW_FALLBACK)
        return _value_range(values)
    if width == 1:  # the standard's threshold: no ramp between the two levels
        return (values > center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def _window(dataset, pixels, fallbacks=None):
    """Greyscale stored values -> floats in 0..1 through VOI LUT or window, else BitsStored."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
    has_window = "WindowCenter" in dataset and "WindowWidth" in dataset
    if "VOILUTSequence" in dataset:
        values = apply_voi_lut(pixels, dataset).astype(np.float64)
        bits = int(dataset.VOILUTSequence[0].LUTDescriptor[2])
        return values / (2 ** bits - 1)
    if has_window:
        values = apply_modality_lut(pixels, dataset).astype(np.float64)
        return _apply_window(values, float(np.ravel([dataset.WindowCenter])[0]),
                             float(np.ravel([dataset.WindowWidth])[0]), fallbacks)
    bits = int(dataset.get("BitsStored", 8) or 8)
    values = pixels.astype(np.float64)
    if int(dataset.get("PixelRepresentation", 0) or 0) == 1:
        values = values + 2 ** (bits - 1)  # signed: shift to 0..2^bits-1
    return values / (2 ** bits - 1)


def _check_shape(dataset, interpretation, pixels):
    """The decoded frame must be what the header declares (Rows x Columns, one sample for
    greyscale, three for colour): pixel data that disagrees with its header (three samples
    called MONOCHROME2, several frames' worth of data without NumberOfFrames) is refused
    rather than guessed at."""
    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    expected = (rows, columns) if interpretation in GREYSCALE else (rows, columns, 3)
    if pixels.shape != expected:
        raise ImageError(
            "unsupported DICOM", f"{interpretation} with {dataset.get('SamplesPerPixel', 1)} "
            f"sample(s) per pixel decodes to shape {'x'.join(map(str, pixels.shape))}, the "
            f"header declares {'x'.join(map(str, expected))}")


def load_rgb(source, fallbacks=None):
    """uint8 HxWx3 of the first frame of a DICOM file (path or file object); ``fallbacks``, a
    list, receives a line for each setting of the file that could not be used as it is."""
    pydicom = _pydicom()
    dataset = pydicom.dcmread(source, force=True)
    interpretation = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    pixels = _first_frame(dataset)
    _check_shape(dataset, interpretation, pixels)
    if interpretation in GREYSCALE:
        gray = scale_to_uint8(_window(dataset, pixels, fallbacks), 1.0)
        if interpretation == "MONOCHROME1":
            gray = 255 - gray
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if pixels.dtype != np.uint8:
        bits = int(dataset.get("BitsStored", 8) or 8)
        return scale_to_uint8(pixels, 2 ** bits - 1)
    return np.ascontiguousarray(pixels)


def dicom_patient(path, default):
    """(PatientID or ``default``, number of frames) from the header; ImageError if unreadable."""
    header = _read_header(path)
    if not header.get("Rows") or not header.get("Columns"):
        raise ImageError("cannot decode image", "not a DICOM image (no Rows/Columns)")
    patient = str(header.get("PatientID", "") or "").strip()
    return patient or default, int(header.get("NumberOfFrames", 1) or 1)


# Ultrasound regions give their physical units as codes (PS3.3 C.8.5.5.1.15); 3 = cm.
CENTIMETRE_UNITS = 3


# Millimetres per pixel a real ultrasound frame can have: from 0.001 (a 1 cm field over
# 10 000 pixels) to 10 (a 500-pixel frame would span 5 m). Anything else is a damaged or
# mistaken header: its millimetres would be nonsense (1e300 overflows to inf and NaN), so it is
# ignored like a spacing of 0, a negative one, NaN or inf, and the measurements stay in pixels.
PLAUSIBLE_SPACING_MM = (0.001, 10.0)


def _header_values(header, name):
    """An element's values as a list (pydicom gives a one-value element as a bare number);
    [] when absent or unreadable (pydicom raises many types on malformed values)."""
    try:
        value = header.get(name, None)
    except Exception:  # noqa: BLE001 - a malformed element is as good as none here
        return []
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)


def _spacing_mm(values, scale=1.0):
    """(row mm, column mm) from two numbers (times ``scale``) in PLAUSIBLE_SPACING_MM, else
    None."""
    try:
        numbers = [float(v) * scale for v in values]
    except (TypeError, ValueError, OverflowError):
        return None
    low, high = PLAUSIBLE_SPACING_MM
    if len(numbers) != 2 or not all(low <= n <= high for n in numbers):  # NaN fails too
        return None
    return numbers[0], numbers[1]


def _region_spacing(header):
    """(row mm, column mm) of the first ultrasound region measured in centimetres."""
    for region in _header_values(header, "SequenceOfUltrasoundRegions"):
        units = [_header_values(region, name)
                 for name in ("PhysicalUnitsXDirection", "PhysicalUnitsYDirection")]
        if units != [[CENTIMETRE_UNITS]] * 2:
            continue
        deltas = [_header_values(region, name) for name in ("PhysicalDeltaY", "PhysicalDeltaX")]
        spacing = _spacing_mm([d[0] if len(d) == 1 else None for d in deltas], scale=10.0)
        if spacing:
            return spacing
    return None


def pixel_spacing(source):
    """(row spacing, column spacing) in millimetres from the header (PixelSpacing, else the
    first ultrasound region in centimetres), or None when the file gives neither as two
    numbers in PLAUSIBLE_SPACING_MM."""
    header = _read_header(source)
    return _spacing_mm(_header_values(header, "PixelSpacing")) or _region_spacing(header)
