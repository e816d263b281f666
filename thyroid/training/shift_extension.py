"""A shift reference (``stats.shift``) extended with a site's own images, for an adapted export:
its distance then measures how far an image lies from the development and the site's images
together, and its percentile set holds both.

A reference keeps no feature vectors, only the development mean, SD, the precision of the
Ledoit-Wolf covariance of the scaled features, the shrinkage and the cross-fitted development
scores. The development images' empirical covariance is recovered from those: Ledoit-Wolf's
estimate is (1 - s) C + s (tr C / D) I, whose trace is tr C, so C = (S - s (tr S / D) I) /
(1 - s) with S the inverse of the stored precision (with s = 1 only the trace is left, and S
stands in for C). With the development count (the number of stored scores), mean and
covariance, the pooled mean and covariance of development and site images are exact. The
shrinkage is kept at the development reference's: Ledoit-Wolf's formula needs every image's
features, which the reference does not keep.

The site's images are cross-fitted over the given folds: each held-out part is scored by the
distance of the development images plus the site's other parts. The percentile set is the
development images' stored cross-fitted scores (under the development reference, which did
not include the site) and the site's cross-fitted scores, sorted.
"""

import numpy as np

from thyroid.stats import shift

EXTENSION_NOTE = (
    "shift reference extended with the site's images: mean and covariance pooled exactly from "
    "the development reference and the site's features, shrinkage kept at the development "
    "reference's; percentiles over the development images' stored cross-fitted scores and the "
    "site's images' scores cross-fitted over the adaptation's outer folds")


def development_moments(reference):
    """(count, mean [D], covariance [D, D]) of the development images' features, recovered from
    ``reference`` (population covariance, as Ledoit-Wolf's estimator starts from)."""
    distance = reference.distance
    shrunk = np.linalg.inv(distance.precision)
    shrunk = (shrunk + shrunk.T) / 2.0
    dimension = shrunk.shape[0]
    level = np.trace(shrunk) / dimension
    if distance.shrinkage < 1.0:
        empirical = (shrunk - distance.shrinkage * level * np.eye(dimension)) \
            / (1.0 - distance.shrinkage)
    else:
        empirical = shrunk
    return (int(reference.development_scores.size), distance.mean.copy(),
            empirical * np.outer(distance.scale, distance.scale))


def pooled_distance(moments, features, shrinkage):
    """The ``stats.shift.Distance`` of the development ``moments`` pooled with feature rows
    [N, D], shrunk by ``shrinkage``."""
    count, mean, covariance = moments
    values = np.asarray(features, np.float64).reshape(-1, mean.size)
    total = count + values.shape[0]
    local_mean = values.mean(axis=0) if values.shape[0] else mean
    pooled_mean = (count * mean + values.shape[0] * local_mean) / total
    local = values - pooled_mean
    second = count * (covariance + np.outer(mean - pooled_mean, mean - pooled_mean)) \
        + local.T @ local
    pooled = second / total
    scale = np.maximum(np.sqrt(np.clip(np.diag(pooled), 0.0, None)), shift.MIN_SCALE)
    scaled = pooled / np.outer(scale, scale)
    level = np.trace(scaled) / mean.size
    shrunk = (1.0 - shrinkage) * scaled + shrinkage * level * np.eye(mean.size)
    precision = np.linalg.pinv(shrunk, hermitian=True)
    return shift.Distance(pooled_mean, scale, (precision + precision.T) / 2.0, float(shrinkage))


def extend_reference(reference, features, held_out_parts):
    """``reference`` extended with the site's feature rows [N, D]; ``held_out_parts``: the
    folds' held-out row indices, every row in exactly one."""
    values = np.asarray(features, np.float64)
    if values.ndim != 2 or values.shape[1] != reference.dimension:
        raise ValueError(f"site features have shape {values.shape}; the reference was fitted "
                         f"on {reference.dimension} features")
    seen = np.zeros(values.shape[0], np.int64)
    for part in held_out_parts:
        np.add.at(seen, np.asarray(part, np.int64), 1)
    if np.any(seen != 1):
        raise ValueError("the held-out parts must hold every site image exactly once")
    moments = development_moments(reference)
    shrinkage = reference.distance.shrinkage
    scores = np.empty(values.shape[0])
    for part in held_out_parts:
        part = np.asarray(part, np.int64)
        training = np.setdiff1d(np.arange(values.shape[0]), part)
        scores[part] = pooled_distance(moments, values[training], shrinkage).scores(values[part])
    return shift.ShiftReference(
        pooled_distance(moments, values, shrinkage),
        np.sort(np.concatenate([reference.development_scores, scores])), reference.features)
