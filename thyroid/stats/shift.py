"""How far an image lies from the development images: a Mahalanobis distance and its
percentile among the development images' own distances.

The reference is fitted on the development images' feature vectors: each feature is centred
and scaled by the development mean and SD, and the covariance of the scaled features is
Ledoit-Wolf's (shrunk towards the identity by the amount its formula finds best), so it stays
invertible with more features than images. An image's score is its Mahalanobis distance
under that covariance.

A distance only means something beside the distances of images like the development ones,
and a development image is nearer to a reference that includes it than a new image would
be. So the development images' scores are cross-fitted: over given folds, each held-out
image is scored by a reference fitted without it. ``shift`` is the percentage (0-100) of
those cross-fitted scores strictly below an image's score; an image is ``unusual`` when its
shift is above ``UNUSUAL_ABOVE`` (99). A new image scored by the reference fitted on every
development image is, if it resembles them, in the same position as a held-out development
image, so about 1 % of such images are unusual.

Unusual means far from the development images, not wrong: the model's answer may still be
right, but nothing in its evaluation speaks for images like it.

The reference is stored as ``shift_reference.npz`` (``reference_bytes``, read back by
``read_reference``, which checks every array). Writing the file atomically is the caller's
(the statistics leaf imports nothing of the package but ``compat``).
"""

import contextlib
import dataclasses
import io
import zipfile

import numpy as np

FILE_NAME = "shift_reference.npz"
FORMAT = 1
UNUSUAL_ABOVE = 99.0
# A feature whose development SD is below this is scaled by it instead: a constant feature
# (a dead channel) would otherwise divide by zero.
MIN_SCALE = 1e-6
# Fewer training images than this leave the covariance of hundreds of features meaningless.
MIN_REFERENCE_IMAGES = 5
# The fits are a few hundred features square: one BLAS thread does them in a fraction of a
# second, where spinning threads on a machine busy with other jobs took many times longer.
BLAS_THREADS = 1
ARRAYS = ("format", "mean", "scale", "precision", "development_scores", "shrinkage", "features")


def _one_blas_thread():
    """At most ``BLAS_THREADS`` BLAS threads where threadpoolctl is installed (the research
    install); the serving install, which only scores, runs without it (scikit-learn, which
    brings it, is imported only to fit a reference)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=BLAS_THREADS, user_api="blas")


class ShiftReferenceError(ValueError):
    """A shift reference file that cannot be used; the message names the file and why."""


def _as_features(features, what="features"):
    values = np.asarray(features, np.float64)
    if values.ndim != 2 or values.shape[1] < 1:
        raise ValueError(f"{what}: expected a 2-D array [images, features], got shape "
                         f"{values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what}: {int(np.sum(~np.isfinite(values).all(axis=1)))} rows hold "
                         "NaN or infinite values")
    return values


@dataclasses.dataclass(frozen=True)
class Distance:
    """The distance part of a reference: centre, scale and precision of the scaled features."""
    mean: np.ndarray        # [D]
    scale: np.ndarray       # [D]
    precision: np.ndarray   # [D, D]
    shrinkage: float

    def scores(self, features):
        """Mahalanobis distances [N] of feature rows [N, D]."""
        values = _as_features(features)
        if values.shape[1] != self.mean.size:
            raise ValueError(f"features have {values.shape[1]} columns; the reference was "
                             f"fitted on {self.mean.size}")
        centred = (values - self.mean) / self.scale
        with _one_blas_thread():
            squared = np.sum((centred @ self.precision) * centred, axis=1)
        return np.sqrt(np.maximum(squared, 0.0))


def fit_distance(features):
    """The ``Distance`` of development feature rows [N, D] (N >= ``MIN_REFERENCE_IMAGES``)."""
    values = _as_features(features)
    if values.shape[0] < MIN_REFERENCE_IMAGES:
        raise ValueError(f"a shift reference needs at least {MIN_REFERENCE_IMAGES} images, "
                         f"got {values.shape[0]}")
    from sklearn.covariance import LedoitWolf
    mean = values.mean(axis=0)
    scale = np.maximum(values.std(axis=0), MIN_SCALE)
    with _one_blas_thread():
        estimator = LedoitWolf(assume_centered=True).fit((values - mean) / scale)
    return Distance(mean, scale, np.asarray(estimator.precision_, np.float64),
                    float(estimator.shrinkage_))


def cross_fitted_scores(features, held_out_parts):
    """Each image's distance under a reference fitted without it. ``held_out_parts``: lists
    of row indices (a fold's held-out images), every row in exactly one."""
    values = _as_features(features)
    count = values.shape[0]
    seen = np.zeros(count, np.int64)
    for part in held_out_parts:
        np.add.at(seen, np.asarray(part, np.int64), 1)
    if len(held_out_parts) < 2 or np.any(seen != 1):
        raise ValueError("cross-fitting needs at least two folds whose held-out parts hold "
                         f"every image exactly once ({int(np.sum(seen == 0))} images in none, "
                         f"{int(np.sum(seen > 1))} in several)")
    scores = np.empty(count)
    for part in held_out_parts:
        part = np.asarray(part, np.int64)
        training = np.ones(count, bool)
        training[part] = False
        scores[part] = fit_distance(values[training]).scores(values[part])
    return scores


@dataclasses.dataclass(frozen=True)
class ShiftReference:
    """The distance fitted on every development image, the development images' cross-fitted
    distances (sorted) and what the features are (``features``: a description that names the
    network, layer, pooling and image size, so a reference is never read with other ones)."""
    distance: Distance
    development_scores: np.ndarray
    features: str

    def scores(self, features):
        return self.distance.scores(features)

    def shift(self, features):
        """Percent (0-100) of development scores strictly below each image's score [N]."""
        return shift_of_scores(self.development_scores, self.scores(features))

    @property
    def dimension(self):
        return int(self.distance.mean.size)


def shift_of_scores(development_scores, scores):
    """Percent of the sorted ``development_scores`` strictly below each of ``scores``."""
    below = np.searchsorted(development_scores, np.asarray(scores, np.float64), side="left")
    return 100.0 * below / development_scores.size


def is_unusual(shift):
    """Whether a shift (scalar or array) is above ``UNUSUAL_ABOVE``."""
    return np.asarray(shift) > UNUSUAL_ABOVE


def fit_reference(features, held_out_parts, description):
    """The ``ShiftReference`` of development feature rows [N, D] over the given folds
    (``cross_fitted_scores``)."""
    if not description:
        raise ValueError("a shift reference needs a description of its features")
    development = np.sort(cross_fitted_scores(features, held_out_parts))
    return ShiftReference(fit_distance(features), development, str(description))


# ----------------------------------------------------------------------------- the file

def reference_bytes(reference):
    """The ``shift_reference.npz`` contents of ``reference`` (uncompressed, no pickles)."""
    buffer = io.BytesIO()
    distance = reference.distance
    np.savez(buffer, format=np.int64(FORMAT), mean=distance.mean, scale=distance.scale,
             precision=distance.precision,
             development_scores=np.asarray(reference.development_scores, np.float64),
             shrinkage=np.float64(distance.shrinkage), features=np.str_(reference.features))
    return buffer.getvalue()


def _read_arrays(path):
    try:
        stored = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ShiftReferenceError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ShiftReferenceError(f"{path}: not a readable shift reference ({reason})") from None
    if not isinstance(stored, np.lib.npyio.NpzFile):
        raise ShiftReferenceError(f"{path}: not a shift reference (a single array, not .npz)")
    with stored:
        missing = [name for name in ARRAYS if name not in stored.files]
        if missing:
            raise ShiftReferenceError(f"{path}: not a shift reference (no {', '.join(missing)})")
        try:
            return {name: stored[name] for name in ARRAYS}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ShiftReferenceError(f"{path}: not a readable shift reference ({reason})") \
                from None


def _check_arrays(arrays):
    """The reason ``arrays`` cannot be a reference, or ''."""
    stored_format = arrays["format"]
    if stored_format.shape != () or stored_format.dtype.kind not in "iu" \
            or int(stored_format) != FORMAT:
        return f"format {stored_format.tolist()!r}, expected {FORMAT}"
    mean, scale, precision = arrays["mean"], arrays["scale"], arrays["precision"]
    scores, shrinkage = arrays["development_scores"], arrays["shrinkage"]
    dimension = mean.shape[0] if mean.ndim == 1 else 0
    shapes = {"mean": (mean, (dimension,)), "scale": (scale, (dimension,)),
              "precision": (precision, (dimension, dimension)), "shrinkage": (shrinkage, ())}
    for name, (array, shape) in shapes.items():
        if dimension < 1 or array.shape != shape or array.dtype.kind != "f":
            return f"{name} has shape {array.shape} ({array.dtype}), expected {shape} floats"
        if not np.all(np.isfinite(array)):
            return f"{name} holds NaN or infinite values"
    if np.any(scale <= 0) or not 0.0 <= float(shrinkage) <= 1.0:
        return "scale must be positive and shrinkage within [0, 1]"
    if not np.allclose(precision, precision.T, rtol=1e-6, atol=1e-9 * np.abs(precision).max()):
        return "precision is not symmetric"
    if scores.ndim != 1 or scores.size < 1 or scores.dtype.kind != "f":
        return f"development_scores has shape {scores.shape}, expected one score per image"
    if not np.all(np.isfinite(scores)) or np.any(scores < 0) or np.any(np.diff(scores) < 0):
        return "development_scores must be finite, non-negative and sorted"
    if arrays["features"].shape != () or arrays["features"].dtype.kind != "U" \
            or not str(arrays["features"]):
        return "features must name what the features are"
    return ""


def read_reference(path):
    """The ``ShiftReference`` stored at ``path``; ``ShiftReferenceError`` (one line naming
    the file) when it is absent, unreadable or any array is missing, misshapen or not finite."""
    arrays = _read_arrays(path)
    reason = _check_arrays(arrays)
    if reason:
        raise ShiftReferenceError(f"{path}: not a usable shift reference: {reason}")
    distance = Distance(arrays["mean"].astype(np.float64), arrays["scale"].astype(np.float64),
                        arrays["precision"].astype(np.float64), float(arrays["shrinkage"]))
    return ShiftReference(distance, arrays["development_scores"].astype(np.float64),
                          str(arrays["features"]))
