"""What every decoder shares: the error it raises and the mapping of stored values onto 8 bits.

Kept apart from ``images`` so that the DICOM decoder (``dicom``), which ``images`` calls, needs
nothing from ``images`` itself: the two files import in one direction only.
"""

import numpy as np

from thyroid.datasets import files


class ImageError(files.FileError):
    """An image file that cannot be used (corrupt, truncated, empty, unsupported, too large,
    not a regular file)."""


def effective_bit_depth(max_value):
    """Smallest bit depth (at least 8) whose range holds ``max_value``: 12-bit data in a 16-bit
    container scales by 4095, and 16-bit files holding only 0..255 stay unchanged."""
    return max(8, int(np.ceil(np.log2(float(max_value) + 1.0))))


def scale_to_uint8(values, full_scale):
    """Linear map of 0..full_scale onto 0..255 (rounded, not clipped at 255 from above)."""
    scaled = np.asarray(values, np.float64) * (255.0 / max(float(full_scale), 1.0))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
