"""Operating point: the threshold on P(malignant) chosen from validation predictions.

Rules (the text form is what ``--operating_point`` takes):

* ``youden``          the threshold maximising sensitivity + specificity - 1; among tied
                      thresholds the highest (fewest false positives) wins.
* ``sensitivity:x``   the highest threshold whose sensitivity is at least x.
* ``specificity:x``   the lowest threshold whose specificity is at least x.
* ``fixed:t``         t, whatever the validation data.

An image is called malignant when ``prob >= threshold`` (as in ``metrics``). Candidate
thresholds are the distinct validation probabilities, plus the next float above the
largest so that "call nothing malignant" is reachable. When the validation set lacks
a class (or is empty) no data-driven rule is defined: the threshold falls back to
``FALLBACK_THRESHOLD`` (0.5) with a warning.
"""

import collections

import numpy as np
from absl import logging

FALLBACK_THRESHOLD = 0.5
RULES = ("youden", "sensitivity", "specificity", "fixed")

OperatingPoint = collections.namedtuple("OperatingPoint", ["rule", "value"])


class OperatingPointError(ValueError):
    """A malformed operating-point string."""


def parse_operating_point(text):
    """'youden' | 'sensitivity:0.9' | 'specificity:0.9' | 'fixed:0.5' -> OperatingPoint."""
    if isinstance(text, OperatingPoint):
        return text
    expected = "expected youden, sensitivity:X, specificity:X or fixed:T with X, T in [0, 1]"
    raw = str(text).strip().lower()
    rule, _, number = raw.partition(":")
    if rule == "youden" and not number:
        return OperatingPoint("youden", None)
    if rule not in RULES[1:] or not number:
        raise OperatingPointError(f"bad operating point {text!r}: {expected}")
    try:
        value = float(number)
    except ValueError:
        raise OperatingPointError(f"bad operating point {text!r}: {number!r} is not a "
                                  "number") from None
    if not 0.0 <= value <= 1.0:
        raise OperatingPointError(f"bad operating point {text!r}: {value} is outside [0, 1]")
    return OperatingPoint(rule, value)


def operating_point_flag_checker(text):
    """absl flag validator: True, or flags.ValidationError with the one-line reason."""
    from absl import flags
    try:
        parse_operating_point(text)
    except OperatingPointError as error:
        raise flags.ValidationError(str(error)) from None
    return True


def _rates(labels, probs, candidates):
    """Sensitivity and specificity at each candidate threshold, O(n log n)."""
    pos = np.sort(probs[labels == 1])
    neg = np.sort(probs[labels == 0])
    called_pos = pos.size - np.searchsorted(pos, candidates, side="left")
    spared_neg = np.searchsorted(neg, candidates, side="left")
    return called_pos / pos.size, spared_neg / neg.size


def choose_threshold(operating_point, labels, probs):
    """The threshold the rule picks on validation ``labels`` (0/1) and ``probs``."""
    point = parse_operating_point(operating_point)
    if point.rule == "fixed":
        return float(point.value)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    if labels.shape != probs.shape:
        raise ValueError(f"labels and probs differ in length: {labels.shape} vs {probs.shape}")
    if not (np.any(labels == 1) and np.any(labels == 0)):
        logging.warning("Validation set has %d images and not both classes: operating point "
                        "%s falls back to threshold %.2f", labels.size, point.rule,
                        FALLBACK_THRESHOLD)
        return FALLBACK_THRESHOLD
    distinct = np.unique(probs)
    candidates = np.r_[distinct, np.nextafter(distinct[-1], np.inf)]
    sensitivity, specificity = _rates(labels, probs, candidates)
    if point.rule == "youden":
        youden = sensitivity + specificity - 1.0
        best = np.flatnonzero(youden >= youden.max() - 1e-12)
        return float(candidates[best[-1]])
    if point.rule == "sensitivity":
        # Sensitivity falls as the threshold rises, and is 1 at the lowest candidate.
        return float(candidates[np.flatnonzero(sensitivity >= point.value)[-1]])
    # Specificity rises with the threshold, and is 1 above the highest probability.
    return float(candidates[np.flatnonzero(specificity >= point.value)[0]])
