"""A site's adaptation, as an adapted export carries it and every answer applies it.

``python -m thyroid.adapt`` copies an export's model files and writes, in the new
metadata.json under ``adaptation``, what its site's labelled images chose
(``training.adaptation``): recalibration only (the export's P(malignant), a fold ensemble's
mean, through a new logistic map) or a new head on the export's pooled ``features`` followed
by a map. ``SiteAdaptation.apply`` turns a model file's outputs into the adapted score and heat
map; ``deploy.tflite_model.TFLiteModel`` calls it for every image, so ``predict``, the web app
and anything else that loads the export answer through the adaptation without a flag.

The new head is linear in the features: score = sigmoid(w . f + b), and ``f`` is the mean over
space of the export's ``feature_map`` A [h, w, D]. Grad-CAM of its logit then needs no
gradient: d logit / d A[i, j, c] = w_c / (h w) at every position, so the channel weights are
alpha = w / (h w) and the map is ReLU(sum_c alpha_c A_c). For such a head this is also the
class activation map: before the ReLU, the map's cells sum to logit - b, each cell's share of
the score. With recalibration only the head is the export's own, and so is its ``cam``.

numpy only: the serving install loads adapted exports too.
"""

import dataclasses

import numpy as np

from thyroid.stats.recalibration import RecalibrationMap, sigmoid

METADATA_KEY = "adaptation"
# How the adapted score is made (``method``; the same words as ``training.adaptation``).
RECALIBRATE, NEW_HEAD = "recalibration only", "new head + recalibration"
CAM_MEANING = ("Grad-CAM of the new head's logit: ReLU(sum over channels of (w_c / (h w)) "
               "times the feature map the head's features are the spatial mean of); for this "
               "linear head on mean-pooled maps it is also the class activation map, each "
               "cell's share of the logit above the head's bias")


class AdaptationError(ValueError):
    """An ``adaptation`` entry of metadata.json that cannot be applied (the reason)."""


@dataclasses.dataclass(frozen=True)
class LinearHead:
    """logit = ``weights`` . features + ``bias`` (the standardisation folded in)."""
    weights: np.ndarray  # [D]
    bias: float

    def logits(self, features):
        return float(np.dot(np.asarray(features, np.float64).reshape(-1), self.weights)
                     + self.bias)

    def cam(self, feature_map):
        """ReLU(sum_c (w_c / (h w)) A_c) [h, w] of one image's maps A [h, w, D]."""
        maps = np.asarray(feature_map, np.float64)
        height, width = maps.shape[:2]
        return np.maximum(maps @ (self.weights / float(height * width)), 0.0)

    def to_json(self):
        return {"weights": [float(v) for v in self.weights], "bias": float(self.bias)}

    @classmethod
    def from_json(cls, saved):
        if not isinstance(saved, dict):
            raise AdaptationError(f"head must be a mapping, not {type(saved).__name__}")
        try:
            weights = np.asarray(saved["weights"], np.float64).reshape(-1)
            bias = float(saved["bias"])
        except (KeyError, TypeError, ValueError) as error:
            raise AdaptationError(f"head needs numeric weights and bias ({error})") from None
        if weights.size == 0 or not np.all(np.isfinite(weights)) or not np.isfinite(bias):
            raise AdaptationError("head weights and bias must be finite, at least one weight")
        return cls(weights, bias)


@dataclasses.dataclass(frozen=True)
class SiteAdaptation:
    """What an adapted export applies: ``method``, the ``recalibration`` map from its score to
    the risk, and the new ``head`` (None for recalibration only)."""
    method: str
    recalibration: RecalibrationMap
    head: LinearHead | None = None

    def apply(self, probabilities, cam, features, feature_map):
        """(score, heat map or None) from one image's outputs: the new head's P(malignant)
        and its map, or the export's own (a fold ensemble's mean) and its own map."""
        if self.head is None:
            return float(np.mean(probabilities)), cam
        if features is None:
            raise AdaptationError("the new head needs the model's features output")
        score = float(sigmoid(self.head.logits(features)))
        return score, None if feature_map is None else self.head.cam(feature_map)

    def score_threshold(self, risk_threshold):
        """The score whose risk is ``risk_threshold``: the map is increasing (slope > 0), so
        acting above that risk is acting above this score."""
        risk = min(max(float(risk_threshold), 1e-6), 1.0 - 1e-6)
        if self.recalibration.is_identity:
            return risk
        logit = (np.log(risk / (1.0 - risk)) - self.recalibration.intercept) \
            / self.recalibration.slope
        return float(sigmoid(logit))

    def to_json(self):
        return {"method": self.method, "recalibration": self.recalibration.to_json(),
                "head": None if self.head is None else self.head.to_json()}

    @classmethod
    def from_json(cls, saved):
        if not isinstance(saved, dict):
            raise AdaptationError(f"must be a mapping, not {type(saved).__name__}")
        method = saved.get("method")
        if method not in (RECALIBRATE, NEW_HEAD):
            raise AdaptationError(f"method {method!r}: expected {RECALIBRATE!r} or "
                                  f"{NEW_HEAD!r}")
        head = saved.get("head")
        if (head is None) != (method == RECALIBRATE):
            raise AdaptationError(f"method {method!r} with{'out' if head is None else ''} "
                                  "a head")
        recalibration = saved.get("recalibration")
        if not isinstance(recalibration, dict):
            raise AdaptationError("no recalibration map")
        try:
            mapping = RecalibrationMap.from_json(recalibration)
        except TypeError as error:
            raise AdaptationError(f"recalibration: {error}") from None
        if not mapping.is_identity and not (np.isfinite(mapping.intercept)
                                            and mapping.slope > 0):
            raise AdaptationError("recalibration needs a finite intercept and a positive slope")
        return cls(method, mapping, None if head is None else LinearHead.from_json(head))

    @classmethod
    def from_metadata(cls, metadata):
        """The adaptation an export's metadata.json carries, or None for one not adapted."""
        saved = (metadata or {}).get(METADATA_KEY)
        if saved is None:
            return None
        if not isinstance(saved, dict):
            raise AdaptationError(f"must be a mapping, not {type(saved).__name__}")
        return cls.from_json(saved.get("applied"))
