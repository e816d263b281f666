"""Adapting an exported model to a site from the site's own labelled images, and measuring
what that did by the site's own cross-validation.

Two ways to adapt are weighed: recalibration only (the export's P(malignant) through a
logistic map, ``stats.recalibration``: the ranking, so the AUC, is the export's), or a new
head (``training.logreg``: a balanced L2 logistic regression, C by its own inner search) on the
export's pooled features followed by a recalibration map. Inner folds (``INNER_FOLDS``,
grouped) choose between them by log-loss: each candidate's inner out-of-fold scores are
recalibrated by maps cross-fitted over the same inner folds, so both are judged as they
would be used. The chosen candidate's map is then fitted on its inner out-of-fold scores and,
for a new head, the head refitted on every training image.

``cross_validate`` does all of that inside each of ``OUTER_FOLDS`` grouped outer folds and
scores each outer test part with the adapter its training part chose, so every image is
scored by an adaptation that never saw it; the figures before (the export as it is) and after
are then computed on the same images: AUC with its bootstrap interval over groups, DeLong's
test between them, calibration intercept and slope, Brier score and net benefit at the
decision-curve table's thresholds with intervals. ``fit_adapter`` on every image gives the
adapter to ship.

Groups are what the images may not be split across (patients, or duplicate-linked units);
folds come from ``datasets.splits.cross_validation_folds`` (grouped, stratified). Where every
image is its own group, near-duplicate frames of one nodule may sit on both sides of a fold
and the estimates may be optimistic; the result says so (``notes``).
"""

import dataclasses
from typing import Optional, Tuple

import numpy as np

from thyroid.datasets import splits
from thyroid.stats import decision, metrics
from thyroid.stats.recalibration import RecalibrationMap, fit_recalibration
from thyroid.training import logreg

OUTER_FOLDS, INNER_FOLDS = 5, 3
MIN_IMAGES = 20
MIN_GROUPS_PER_CLASS = 5
RECALIBRATE, NEW_HEAD = "recalibration only", "new head + recalibration"
METHODS = (RECALIBRATE, NEW_HEAD)
# P(malignant) is clipped this far from 0 and 1 in the log-loss (an exact 0 or 1 would make
# one wrong image infinitely costly).
LOG_LOSS_CLIP = 1e-6
IMAGE_GROUPS_NOTE = ("every image is its own group: near-duplicate frames of one nodule may "
                     "sit on both sides of a fold, so these estimates may be optimistic")


class AdaptationError(ValueError):
    """Labelled images too few (or too few groups of a class) to adapt and to measure it."""


@dataclasses.dataclass(frozen=True)
class SiteImages:
    """A site's labelled images as the export sees them: its pooled ``features`` [N, D], its
    P(malignant) ``probabilities`` [N], ``labels`` [N] (0/1), ``groups`` [N] (str) and the
    export's own ``risks`` [N] (its recalibrated answer, which the figures before adaptation
    describe; None: the probabilities are its answer)."""
    features: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    risks: Optional[np.ndarray] = None

    @classmethod
    def checked(cls, features, probabilities, labels, groups, risks=None):
        """The arrays converted and checked (``AdaptationError`` for too few images or
        groups, ``ValueError`` for arrays that do not fit together)."""
        features = np.asarray(features, np.float64)
        features = features.reshape(len(features), -1)
        probabilities = np.asarray(probabilities, np.float64).reshape(-1)
        labels = np.asarray(labels).reshape(-1)
        groups = np.asarray(groups).reshape(-1).astype(str)
        if not features.shape[0] == probabilities.size == labels.size == groups.size:
            raise ValueError(f"features, probabilities, labels and groups differ in length: "
                             f"{features.shape[0]}, {probabilities.size}, {labels.size}, "
                             f"{groups.size}")
        if not np.all(np.isfinite(features)) or not np.all((probabilities >= 0)
                                                           & (probabilities <= 1)):
            raise ValueError("features must be finite and probabilities within [0, 1]")
        if not np.all(np.isin(labels, (0, 1))):
            raise ValueError("labels must be 0 (benign) or 1 (malignant)")
        if risks is not None:
            risks = np.asarray(risks, np.float64).reshape(-1)
            if risks.size != labels.size or not np.all((risks >= 0) & (risks <= 1)):
                raise ValueError("risks must be one per image, within [0, 1]")
        site = cls(features, probabilities, labels.astype(np.int64), groups, risks)
        check_site(site.labels, site.groups)
        return site

    @property
    def answers(self):
        """What the export answers for each image: its risk, else its probability."""
        return self.probabilities if self.risks is None else self.risks

    def subset(self, indices):
        return SiteImages(self.features[indices], self.probabilities[indices],
                          self.labels[indices], self.groups[indices],
                          None if self.risks is None else self.risks[indices])


def check_site(labels, groups):
    """``AdaptationError`` (one line) below ``MIN_IMAGES`` labelled images or
    ``MIN_GROUPS_PER_CLASS`` groups of a class (a group counts as malignant when any of its
    images is, as the folds stratify it)."""
    labels = np.asarray(labels).reshape(-1)
    if labels.size < MIN_IMAGES:
        raise AdaptationError(f"{labels.size} labelled images; adapting and measuring it "
                              f"need at least {MIN_IMAGES}")
    unit_labels = splits.unit_labels_of([int(label) for label in labels], list(groups))
    for label, name in ((0, "benign"), (1, "malignant")):
        count = sum(1 for value in unit_labels.values() if value == label)
        if count < MIN_GROUPS_PER_CLASS:
            raise AdaptationError(
                f"{count} {name} patient groups among {labels.size} labelled images; "
                f"{OUTER_FOLDS}-fold cross-validation needs at least {MIN_GROUPS_PER_CLASS} "
                "of each class")


def grouped_test_parts(labels, groups, num_folds, seed):
    """Each fold's held-out indices from the project's grouped, stratified folds."""
    folds = splits.cross_validation_folds([int(label) for label in labels], list(groups),
                                          num_folds, seed=seed)
    return [np.asarray(fold["test"], np.int64) for fold in folds["repeats"][0]["folds"]]


def log_loss(labels, risks):
    """Mean negative log-likelihood of 0/1 labels under P(malignant) ``risks``."""
    risks = np.clip(np.asarray(risks, np.float64), LOG_LOSS_CLIP, 1.0 - LOG_LOSS_CLIP)
    labels = np.asarray(labels, np.float64)
    return float(-np.mean(labels * np.log(risks) + (1.0 - labels) * np.log1p(-risks)))


@dataclasses.dataclass(frozen=True)
class Adapter:
    """One adaptation: ``method`` (``METHODS``), the ``recalibration`` map applied last, the new
    ``head`` (a fitted ``logreg`` pipeline; None for recalibration only) and the inner
    cross-fitted log-loss of each method that chose it."""
    method: str
    recalibration: RecalibrationMap
    head: Optional[object]
    inner_log_loss: Tuple[Tuple[str, float], ...]

    def scores(self, features, probabilities):
        """What the map is applied to: the export's P(malignant), or the new head's."""
        if self.head is None:
            return np.asarray(probabilities, np.float64).reshape(-1)
        return np.asarray(logreg.logreg_scores(self.head, features), np.float64)

    def risks(self, features, probabilities):
        """The adapted P(malignant) of images given the export's features and P(malignant)."""
        return self.recalibration.apply(self.scores(features, probabilities))

    def linear_head(self):
        """(weights [D], bias) of the new head's logit on the raw features, None for
        recalibration only."""
        return None if self.head is None else logreg.linear_form(self.head)


def _inner_scores(site, parts, seed):
    """{method: inner out-of-fold scores}: the export's P(malignant) (it never saw the site),
    and each inner held-out part scored by a head fitted on the other parts."""
    head_scores = np.full(site.labels.size, np.nan)
    for part in parts:
        training = np.setdiff1d(np.arange(site.labels.size), part)
        head, _ = logreg.fit_logreg(site.features[training], site.labels[training],
                                    site.groups[training], seed)
        head_scores[part] = logreg.logreg_scores(head, site.features[part])
    return {RECALIBRATE: site.probabilities, NEW_HEAD: head_scores}


def _cross_fitted_log_loss(labels, scores, parts):
    """The log-loss of ``scores`` recalibrated part by part by maps fitted on the other parts."""
    risks = np.empty(labels.size)
    for part in parts:
        training = np.setdiff1d(np.arange(labels.size), part)
        risks[part] = fit_recalibration(labels[training], scores[training]).apply(scores[part])
    return log_loss(labels, risks)


def fit_adapter(site, seed=0):
    """The ``Adapter`` ``site``'s images choose by ``INNER_FOLDS`` grouped inner folds (ties
    go to recalibration only, the smaller change)."""
    parts = grouped_test_parts(site.labels, site.groups, INNER_FOLDS, seed)
    scores = _inner_scores(site, parts, seed)
    losses = {method: _cross_fitted_log_loss(site.labels, scores[method], parts)
              for method in METHODS}
    method = NEW_HEAD if losses[NEW_HEAD] < losses[RECALIBRATE] else RECALIBRATE
    recalibration = fit_recalibration(site.labels, scores[method])
    head = None
    if method == NEW_HEAD:
        head, _ = logreg.fit_logreg(site.features, site.labels, site.groups, seed)
    return Adapter(method, recalibration, head, tuple(losses.items()))


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A figure with its 95 % bootstrap interval over groups (nan where undefined)."""
    value: float
    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class NetBenefit:
    """Net benefit of acting on the risk at ``threshold`` (with its interval) and of treating
    every image, on the same images."""
    threshold: float
    value: Estimate
    treat_all: float


@dataclasses.dataclass(frozen=True)
class SiteFigures:
    """How one set of P(malignant) does on the site's images."""
    auc: Estimate
    calibration_intercept: float
    calibration_slope: float
    brier: float
    net_benefit: Tuple[NetBenefit, ...]


def site_figures(labels, risks, groups, num_samples=1000, seed=0):
    """``SiteFigures`` of ``risks``: the project's AUC, calibration, Brier and decision-curve
    statistics, intervals from the bootstrap over ``groups``."""
    low, high = metrics.bootstrap_ci(labels, risks, groups, 0.5, num_samples, seed=seed)["auc"]
    intercept, slope = metrics.calibration_intercept_slope(labels, risks)
    curve = decision.decision_curve(labels, risks, groups, decision.TABLE_THRESHOLDS,
                                    num_samples, seed)
    benefits = tuple(NetBenefit(threshold, Estimate(value, low_nb, high_nb), everyone)
                     for threshold, value, low_nb, high_nb, everyone in zip(
                         curve.thresholds, curve.net_benefit, curve.low, curve.high,
                         curve.treat_all))
    return SiteFigures(Estimate(metrics.auc_score(labels, risks), low, high), intercept, slope,
                       metrics.brier_score(labels, risks), benefits)


@dataclasses.dataclass(frozen=True)
class FoldChoice:
    """What one outer fold's training part chose, and on how many test images it was scored."""
    fold: int
    method: str
    inner_log_loss: Tuple[Tuple[str, float], ...]
    test_images: int


@dataclasses.dataclass(frozen=True)
class AdaptationResult:
    """The site's own cross-validation: the export as it is (``before``) and adapted
    (``after``, every image scored by the adaptation of the outer fold it was held out of),
    DeLong's test between the two AUCs, each fold's choice, the out-of-fold adapted risks,
    the counts and ``notes`` (caveats to print with the figures)."""
    before: SiteFigures
    after: SiteFigures
    delong_p: float
    folds: Tuple[FoldChoice, ...]
    risks: np.ndarray
    images: int
    groups: int
    benign: int
    malignant: int
    notes: Tuple[str, ...]

    def to_json(self):
        """JSON-ready (what an adapted export's metadata records; risks left out)."""
        out = dataclasses.asdict(self)
        del out["risks"]
        return _json_ready(out)


def _json_ready(value):
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def cross_validate(site, num_samples=1000, seed=0):
    """The ``AdaptationResult`` of ``site`` (a checked ``SiteImages``) over ``OUTER_FOLDS``
    grouped outer folds, each choosing its adapter by ``fit_adapter`` on its training part."""
    risks = np.full(site.labels.size, np.nan)
    choices = []
    for fold, part in enumerate(grouped_test_parts(site.labels, site.groups, OUTER_FOLDS,
                                                   seed)):
        training = np.setdiff1d(np.arange(site.labels.size), part)
        adapter = fit_adapter(site.subset(training), seed)
        risks[part] = adapter.risks(site.features[part], site.probabilities[part])
        choices.append(FoldChoice(fold, adapter.method, adapter.inner_log_loss, int(part.size)))
    labels, groups = site.labels, site.groups
    delong = metrics.delong_test(labels, risks, site.answers)
    unit_labels = splits.unit_labels_of(labels.tolist(), groups.tolist())
    notes = (IMAGE_GROUPS_NOTE,) if len(unit_labels) == labels.size else ()
    return AdaptationResult(
        site_figures(labels, site.answers, groups, num_samples, seed),
        site_figures(labels, risks, groups, num_samples, seed), float(delong["p_value"]),
        tuple(choices), risks, int(labels.size), len(unit_labels), int(np.sum(labels == 0)),
        int(np.sum(labels == 1)), notes)


def _estimate_text(estimate):
    if not np.isfinite(estimate.value):
        return "n/a"
    if not (np.isfinite(estimate.low) and np.isfinite(estimate.high)):
        return f"{estimate.value:.3f}"
    return f"{estimate.value:.3f} [{estimate.low:.3f}, {estimate.high:.3f}]"


def report_lines(result):
    """The result as lines to print: before and after side by side, the choices, the notes."""
    rows = [("AUC", _estimate_text(result.before.auc), _estimate_text(result.after.auc))]
    for name in ("calibration_intercept", "calibration_slope", "brier"):
        before, after = getattr(result.before, name), getattr(result.after, name)
        rows.append((name.replace("_", " "), f"{before:.3f}", f"{after:.3f}"))
    for before, after in zip(result.before.net_benefit, result.after.net_benefit):
        rows.append((f"net benefit at {before.threshold:.2f} (treat all {before.treat_all:.3f})",
                     _estimate_text(before.value), _estimate_text(after.value)))
    width = max(len(row[0]) for row in rows)
    lines = [f"Adaptation measured on {result.images} labelled images ({result.groups} groups; "
             f"{result.benign} benign, {result.malignant} malignant images), {OUTER_FOLDS} "
             f"outer x {INNER_FOLDS} inner grouped folds:",
             f"{'':<{width}}  {'before (export as is)':<26}  after (out of fold)"]
    lines += [f"{name:<{width}}  {before:<26}  {after}" for name, before, after in rows]
    lines.append(f"DeLong's test, AUC after vs before: p = {result.delong_p:.3g}")
    counts = {method: sum(1 for fold in result.folds if fold.method == method)
              for method in METHODS}
    lines.append("chosen by the outer folds' training parts: " + ", ".join(
        f"{method} ({count})" for method, count in counts.items()))
    lines += [f"note: {note}" for note in result.notes]
    return lines
