"""Logistic recalibration of a row's score, fitted on inner-validation predictions only.

    risk = sigmoid(intercept + slope * logit(score))

The same map serves every row: for the trained rows ``score`` is P(malignant); for the SVM
rows it is the logistic of the decision value, so ``logit(score)`` is the decision value and
the map is Platt's. The slope is kept positive (at least ``MIN_SLOPE``), so the map never
reverses the ranking: a recalibrated score has the AUC of the raw one.

The fit is a maximum-likelihood logistic regression with a weak penalty that pulls
(intercept, slope) toward the identity map (0, 1), ``PENALTY`` / 2 * (a^2 + (b - 1)^2): about
one pseudo-observation, negligible on a few dozen images, and it keeps the fit finite when the
inner set is perfectly separated (where the plain likelihood has no maximum). An inner set
with fewer than ``MIN_IMAGES_PER_CLASS`` images of a class keeps the identity map, and the map
records why.
"""

import dataclasses

import numpy as np

from thyroid.stats.metrics import LOGIT_CLIP

MIN_IMAGES_PER_CLASS = 5
MIN_SLOPE = 0.01
PENALTY = 1.0
METHODS = ("logistic", "platt")
IDENTITY = "identity"


def logit(scores):
    scores = np.clip(np.asarray(scores, np.float64), LOGIT_CLIP, 1.0 - LOGIT_CLIP)
    return np.log(scores) - np.log1p(-scores)


def sigmoid(values):
    return 1.0 / (1.0 + np.exp(-np.clip(values, -35.0, 35.0)))


@dataclasses.dataclass(frozen=True)
class RecalibrationMap:
    """risk = sigmoid(intercept + slope * logit(score)); ``method`` says how it was fitted
    (``identity`` when it was not), ``benign`` / ``malignant`` on how many inner-validation
    images, ``note`` why the identity was kept."""
    intercept: float = 0.0
    slope: float = 1.0
    method: str = IDENTITY
    benign: int = 0
    malignant: int = 0
    note: str = ""

    @property
    def is_identity(self):
        return self.method == IDENTITY

    def apply(self, scores):
        """Recalibrated risks (float64) of ``scores``; the identity returns them unchanged."""
        scores = np.asarray(scores, np.float64)
        if self.is_identity:
            return scores.copy()
        return sigmoid(self.intercept + self.slope * logit(scores))

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, saved):
        if not saved:
            return cls()
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in fields})

    def describe(self):
        if self.is_identity:
            return f"identity ({self.note})" if self.note else "identity"
        return f"{self.method}: intercept {self.intercept:.2f}, slope {self.slope:.2f}"


def _objective(labels, design, prior, offset, beta):
    """The penalised log-likelihood (to maximise)."""
    eta = design @ beta + offset
    log_likelihood = np.sum(labels * eta - np.logaddexp(0.0, eta))
    return log_likelihood - 0.5 * PENALTY * np.sum((beta - prior) ** 2)


def _penalised_fit(labels, design, prior, offset):
    """Newton steps on the penalised log-likelihood, halved until it rises (it is strictly
    concave, so this converges to its one maximum)."""
    beta = prior.astype(np.float64).copy()
    current = _objective(labels, design, prior, offset, beta)
    for _ in range(100):
        fitted = sigmoid(design @ beta + offset)
        gradient = design.T @ (labels - fitted) - PENALTY * (beta - prior)
        hessian = (design * (fitted * (1.0 - fitted))[:, None]).T @ design
        step = np.linalg.solve(hessian + PENALTY * np.eye(beta.size), gradient)
        for _ in range(50):
            candidate = _objective(labels, design, prior, offset, beta + step)
            if candidate >= current - 1e-12:
                break
            step = step / 2.0
        beta, current = beta + step, candidate
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def fit_recalibration(labels, scores, method="logistic"):
    """The map fitted on inner-validation ``labels`` (0/1) and ``scores``; the identity (with
    its reason) when a class has fewer than ``MIN_IMAGES_PER_CLASS`` images."""
    if method not in METHODS:
        raise ValueError(f"recalibration method {method!r}: expected one of {METHODS}")
    labels = np.asarray(labels, np.float64).reshape(-1)
    x = logit(scores).reshape(-1)
    if labels.shape != x.shape:
        raise ValueError(f"labels and scores differ in length: {labels.shape} vs {x.shape}")
    benign, malignant = int(np.sum(labels == 0)), int(np.sum(labels == 1))
    if min(benign, malignant) < MIN_IMAGES_PER_CLASS:
        return RecalibrationMap(benign=benign, malignant=malignant, note=(
            f"inner validation has {benign} benign and {malignant} malignant images, fewer "
            f"than {MIN_IMAGES_PER_CLASS} of a class"))
    design = np.stack([np.ones_like(x), x], axis=1)
    intercept, slope = _penalised_fit(labels, design, np.array([0.0, 1.0]), 0.0)
    if slope < MIN_SLOPE:
        # A flat or reversed fit: keep the ranking and refit the intercept alone.
        slope = MIN_SLOPE
        intercept = _penalised_fit(labels, design[:, :1], np.zeros(1), slope * x)[0]
    return RecalibrationMap(float(intercept), float(slope), method, benign, malignant)


def method_for(mode):
    """Platt's map (of the decision value) for the SVM rows, logistic for the others."""
    return "platt" if mode == "bottleneck_svm" else "logistic"
