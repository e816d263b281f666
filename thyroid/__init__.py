"""thyroid: transfer learning for benign/malignant thyroid ultrasound classification."""

__version__ = "0.1.0"

LABEL_NAMES = ("benign", "malignant")
BENIGN, MALIGNANT = 0, 1
