"""Per-row summary of cross-validated (out-of-fold) predictions.

A predictions table has one record per row, repeat and image with the keys of
``PREDICTION_COLUMNS`` (``fold`` is an int, or ``EXTERNAL_FOLD`` for an external image).
Every metric comes from ``thyroid.stats.metrics``; this module only pools and
aggregates:

* ``auc``: the AUC of each repeat's pooled out-of-fold predictions, mean over repeats;
  ``auc_ci_low/high``: the patient-bootstrap 95% interval of each repeat, bounds averaged
  over repeats (with one repeat: that repeat's interval).
* ``auc_fold_mean`` / ``auc_fold_sd``: over every (repeat, fold) with both classes.
* ``sensitivity``, ``specificity``, ``accuracy``: each image judged at its own fold's
  threshold, pooled per repeat, averaged like the AUC; the same at 0.5 as ``*_at_0_5``.
  ``threshold``: the mean of the per-fold thresholds.
* ``brier``, ``calibration_intercept``, ``calibration_slope``: on the pooled predictions,
  mean over repeats.
* ``brier_recalibrated``, ``calibration_intercept_recalibrated``,
  ``calibration_slope_recalibrated``: the same of each image's ``risk`` (the score after the
  recalibration map its fold fitted on inner-validation data).
* ``patient_auc_mean`` / ``patient_auc_max`` (with ``_ci_low/high``): the AUC over patients,
  each scored by the mean or the max of their images' scores (``stats.patients``).
* ``decision_curve``: the net benefit of acting on ``risk`` (``stats.decision``) with
  patient-bootstrap intervals, per repeat then averaged; ``net_benefit_at_0_10`` (and
  ``_ci_low/high``, ``treat_all_at_0_10``) at the ``decision.TABLE_THRESHOLDS``.
* ``p_vs_best``: DeLong's test against the row with the highest ``auc``, on the images
  both rows scored, each image's probability averaged over repeats. Not corrected for
  multiple comparisons. None for the best row itself. Rows in ``unranked`` (a reference
  that needs what a new image lacks) are never the best, but get their p too.
* ``delong_between(records, a, b)``: the same test between two named rows;
  ``delong_of_records(a, b)`` between two sets of records (a row and a variant of it).

External records carry the fold ``EXTERNAL_FOLD`` (the refitted model) or ``ENSEMBLE_FOLD``
(the fold ensemble, whose ``spread`` is the SD of its fold models' risks per image). Given
each external image's shift score, an external row's figures add ``unusual_share``,
``median_shift`` and ``auc_usual`` / ``auc_unusual`` (``shift_figures``).

A row's figures are one ``RowFigures``, read by attribute: a figure renamed here and not where
it is read fails there, instead of printing an empty cell.
"""

import collections
import dataclasses
import math

import numpy as np

from thyroid.stats import decision, metrics, patients
from thyroid.stats.shift import is_unusual

PREDICTION_COLUMNS = ("row_id", "repeat", "fold", "image", "patient_id", "label", "prob",
                      "risk", "spread", "threshold")
EXTERNAL_FOLD = "external"
ENSEMBLE_FOLD = "external_folds"
RATE_NAMES = ("accuracy", "sensitivity", "specificity")
CURVE = "decision_curve"


NAN = float("nan")


def _figure(default=NAN):
    return dataclasses.field(default=default)


@dataclasses.dataclass
class RowFigures:
    """The figures of one row (pooled out of fold, or on an external set). NaN (None for the
    fields that may be absent) where a figure could not be computed; every field has a default,
    so a row without predictions is ``RowFigures()`` and prints empty cells."""
    auc: float = NAN
    auc_ci_low: float = NAN
    auc_ci_high: float = NAN
    accuracy: float = NAN
    accuracy_ci_low: float = NAN
    accuracy_ci_high: float = NAN
    sensitivity: float = NAN
    sensitivity_ci_low: float = NAN
    sensitivity_ci_high: float = NAN
    specificity: float = NAN
    specificity_ci_low: float = NAN
    specificity_ci_high: float = NAN
    accuracy_at_0_5: float = NAN
    accuracy_at_0_5_ci_low: float = NAN
    accuracy_at_0_5_ci_high: float = NAN
    sensitivity_at_0_5: float = NAN
    sensitivity_at_0_5_ci_low: float = NAN
    sensitivity_at_0_5_ci_high: float = NAN
    specificity_at_0_5: float = NAN
    specificity_at_0_5_ci_low: float = NAN
    specificity_at_0_5_ci_high: float = NAN
    brier: float = NAN
    calibration_intercept: float = NAN
    calibration_slope: float = NAN
    brier_recalibrated: float = NAN
    calibration_intercept_recalibrated: float = NAN
    calibration_slope_recalibrated: float = NAN
    patient_auc_mean: float = NAN
    patient_auc_mean_ci_low: float = NAN
    patient_auc_mean_ci_high: float = NAN
    patient_auc_max: float = NAN
    patient_auc_max_ci_low: float = NAN
    patient_auc_max_ci_high: float = NAN
    # The decision curve and its values at decision.TABLE_THRESHOLDS (a test holds the two
    # lists together).
    decision_curve: decision.DecisionCurve | None = None
    net_benefit_at_0_05: float = NAN
    net_benefit_at_0_05_ci_low: float = NAN
    net_benefit_at_0_05_ci_high: float = NAN
    net_benefit_at_0_10: float = NAN
    net_benefit_at_0_10_ci_low: float = NAN
    net_benefit_at_0_10_ci_high: float = NAN
    net_benefit_at_0_20: float = NAN
    net_benefit_at_0_20_ci_low: float = NAN
    net_benefit_at_0_20_ci_high: float = NAN
    net_benefit_at_0_30: float = NAN
    net_benefit_at_0_30_ci_low: float = NAN
    net_benefit_at_0_30_ci_high: float = NAN
    net_benefit_at_0_50: float = NAN
    net_benefit_at_0_50_ci_low: float = NAN
    net_benefit_at_0_50_ci_high: float = NAN
    treat_all_at_0_05: float = NAN
    treat_all_at_0_10: float = NAN
    treat_all_at_0_20: float = NAN
    treat_all_at_0_30: float = NAN
    treat_all_at_0_50: float = NAN
    spread_mean: float | None = None  # fold ensembles only
    threshold: float = NAN
    images: int | None = None
    patients: int | None = None
    # Out of fold only: per repeat, over folds, and against the best row.
    auc_by_repeat: list | None = None
    auc_fold_mean: float | None = None
    auc_fold_sd: float | None = None
    p_vs_best: float | None = None
    best_row: bool = False
    # External sets with a shift score (``shift_figures``): the share of unusual images, the
    # median shift, and the AUC on the usual and the unusual images apart, with each side's
    # images of each class (NaN AUC where a side has fewer than ``MIN_SHIFT_SIDE_CLASS``).
    unusual_share: float | None = None
    median_shift: float | None = None
    auc_usual: float = NAN
    auc_unusual: float = NAN
    usual_benign: int | None = None
    usual_malignant: int | None = None
    unusual_benign: int | None = None
    unusual_malignant: int | None = None

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, saved):
        """The figures saved by ``to_json``; ValueError naming an unknown or malformed field."""
        if not isinstance(saved, dict):
            raise ValueError(f"row figures must be a mapping, not {type(saved).__name__}")
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(saved) - names)
        if unknown:
            raise ValueError(f"unknown row figure(s) {', '.join(unknown)}")
        values = dict(saved)
        curve = values.get("decision_curve")
        if curve is not None:
            try:
                values["decision_curve"] = decision.DecisionCurve(**curve)
            except TypeError as error:
                raise ValueError(f"decision_curve: {error}") from None
        return cls(**values)


def figures_of(table):
    """{row id: RowFigures} from their JSON form (``{str(row id): to_json()}``)."""
    return {row_key(row): RowFigures.from_json(figures) for row, figures in table.items()}


def is_external(fold):
    """Whether a record's fold marks an external image (refitted model or fold ensemble)."""
    return str(fold) in (EXTERNAL_FOLD, ENSEMBLE_FOLD)


def _risk(record):
    """The record's recalibrated risk; its own score where it has none (not recalibrated)."""
    value = record.get("risk")
    return float(record["prob"]) if value in (None, "") else float(value)


def _spread(record):
    value = record.get("spread")
    return float("nan") if value in (None, "") else float(value)


def _arrays(records):
    return {
        "repeat": np.array([int(r["repeat"]) for r in records], dtype=np.int64),
        "fold": np.array([str(r["fold"]) for r in records]),
        "image": np.array([str(r["image"]) for r in records]),
        "patient_id": np.array([str(r["patient_id"]) for r in records]),
        "label": np.array([int(r["label"]) for r in records], dtype=np.int64),
        "prob": np.array([float(r["prob"]) for r in records], dtype=np.float64),
        "risk": np.array([_risk(r) for r in records], dtype=np.float64),
        "spread": np.array([_spread(r) for r in records], dtype=np.float64),
        "threshold": np.array([float(r["threshold"]) for r in records], dtype=np.float64),
    }


def row_key(row_id):
    """Row ids as ints where they are numbers, so CSV text and study ints agree."""
    text = str(row_id).strip()
    return int(text) if text.lstrip("-").isdigit() else row_id


def _select(table, mask):
    return {key: values[mask] for key, values in table.items()}


def _mean(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def _pooled_figures(table, num_samples, seed):
    """Metrics of one repeat's pooled predictions (or of an external set)."""
    labels, probs, patient_ids = table["label"], table["prob"], table["patient_id"]
    figures = {}
    for suffix, threshold in (("", table["threshold"]), ("_at_0_5", 0.5)):
        point = metrics.binary_metrics(labels, probs, threshold)
        ci = metrics.bootstrap_ci(labels, probs, patient_ids, threshold, num_samples, seed=seed)
        names = RATE_NAMES + ("auc",) if not suffix else RATE_NAMES
        for name in names:
            figures[name + suffix] = point[name]
            figures[f"{name}{suffix}_ci_low"], figures[f"{name}{suffix}_ci_high"] = ci[name]
    for suffix, scores in (("", probs), ("_recalibrated", table["risk"])):
        figures["brier" + suffix] = metrics.brier_score(labels, scores)
        (figures["calibration_intercept" + suffix],
         figures["calibration_slope" + suffix]) = metrics.calibration_intercept_slope(labels,
                                                                                      scores)
    for how in patients.AGGREGATES:
        name = f"patient_auc_{how}"
        figures[name], figures[f"{name}_ci_low"], figures[f"{name}_ci_high"] = (
            patients.patient_auc_ci(labels, probs, patient_ids, how, num_samples, seed))
    figures.update(_decision_figures(table, num_samples, seed))
    spread = table["spread"][~np.isnan(table["spread"])]
    if spread.size:
        figures["spread_mean"] = float(np.mean(spread))
    figures["threshold"] = float(np.mean(table["threshold"])) if labels.size else float("nan")
    figures["images"] = int(labels.size)
    figures["patients"] = int(np.unique(patient_ids).size)
    return figures


def _decision_figures(table, num_samples, seed):
    """The decision curve of the risks and its values at the table's thresholds."""
    curve = decision.decision_curve(table["label"], table["risk"], table["patient_id"],
                                    num_samples=num_samples, seed=seed)
    return {CURVE: curve.to_json(), **curve_table_figures(curve)}


def curve_table_figures(curve):
    figures = {}
    for threshold in decision.TABLE_THRESHOLDS:
        name = decision.threshold_name(threshold)
        value, low, high, everyone = curve.at(threshold)
        figures.update({f"net_benefit_at_{name}": value, f"net_benefit_at_{name}_ci_low": low,
                        f"net_benefit_at_{name}_ci_high": high,
                        f"treat_all_at_{name}": everyone})
    return figures


def summarize_predictions(records, num_samples=1000, seed=0, unranked=()):
    """{row_id: RowFigures} over the cross-validation records (external ones are left out).

    Row ids are keyed through ``row_key`` (numbers become ints).
    """
    by_row = collections.defaultdict(list)
    for record in records:
        if not is_external(record["fold"]):
            by_row[row_key(record["row_id"])].append(record)
    summaries = {row_id: _summarize_row(_arrays(rows), num_samples, seed)
                 for row_id, rows in by_row.items()}
    _add_delong_vs_best(summaries, {row_id: _arrays(rows) for row_id, rows in by_row.items()},
                        {row_key(row) for row in unranked})
    return {row_id: _typed(figures) for row_id, figures in summaries.items()}


def _typed(figures):
    curve = figures.get(CURVE)
    return RowFigures(**dict(figures, **{CURVE: None if curve is None
                                          else decision.DecisionCurve(**curve)}))


def _summarize_row(table, num_samples, seed):
    per_repeat = [_pooled_figures(_select(table, table["repeat"] == repeat), num_samples,
                                  seed)
                  for repeat in np.unique(table["repeat"])]
    summary = {key: _mean([figures[key] for figures in per_repeat])
               for key in per_repeat[0] if key not in ("images", "patients", CURVE)}
    curve = decision.mean_curve([decision.DecisionCurve(**figures[CURVE])
                                 for figures in per_repeat])
    summary[CURVE] = curve.to_json()
    summary.update(curve_table_figures(curve))
    summary["images"] = per_repeat[0]["images"]
    summary["patients"] = per_repeat[0]["patients"]
    summary["auc_by_repeat"] = [figures["auc"] for figures in per_repeat]
    fold_aucs = [metrics.auc_score(table["label"][mask], table["prob"][mask])
                 for mask in _fold_masks(table)]
    fold_aucs = [auc for auc in fold_aucs if not math.isnan(auc)]
    summary["auc_fold_mean"] = _mean(fold_aucs)
    summary["auc_fold_sd"] = float(np.std(fold_aucs, ddof=1)) if len(fold_aucs) > 1 \
        else float("nan")
    return summary


def _fold_masks(table):
    keys = set(zip(table["repeat"].tolist(), table["fold"].tolist()))
    return [(table["repeat"] == repeat) & (table["fold"] == fold)
            for repeat, fold in sorted(keys)]


def _mean_prob_by_image(table):
    """{image: (label, probability averaged over repeats)}."""
    sums = collections.defaultdict(lambda: [0, 0.0, 0])
    for image, label, prob in zip(table["image"], table["label"], table["prob"]):
        entry = sums[image]
        entry[0], entry[1], entry[2] = label, entry[1] + prob, entry[2] + 1
    return {image: (label, total / count) for image, (label, total, count) in sums.items()}


def _delong(table_a, table_b):
    """DeLong's test of two rows on the images both scored (probabilities averaged over
    repeats)."""
    scores_a, scores_b = _mean_prob_by_image(table_a), _mean_prob_by_image(table_b)
    shared = sorted(set(scores_a) & set(scores_b))
    labels = [scores_b[image][0] for image in shared]
    result = metrics.delong_test(labels, [scores_a[image][1] for image in shared],
                                 [scores_b[image][1] for image in shared])
    return dict(result, images=len(shared))


def _add_delong_vs_best(summaries, tables, unranked=frozenset()):
    scored = [row for row in summaries if not math.isnan(summaries[row]["auc"])]
    ranked = [row for row in scored if row not in unranked]
    for row in summaries:
        summaries[row]["p_vs_best"] = None
    if not ranked:
        return
    best = max(ranked, key=lambda row: summaries[row]["auc"])
    for row in scored:
        if row != best:
            summaries[row]["p_vs_best"] = _delong(tables[row], tables[best])["p_value"]
    summaries[best]["best_row"] = True


def delong_between(records, row_a, row_b):
    """DeLong's test of row ``row_a`` against ``row_b`` on their cross-validation records:
    {"p_value", "images", ...}, or None when either row has none."""
    tables = {}
    for row in (row_a, row_b):
        rows = [r for r in records if row_key(r["row_id"]) == row_key(row)
                and not is_external(r["fold"])]
        if not rows:
            return None
        tables[row] = _arrays(rows)
    return _delong(tables[row_a], tables[row_b])


def delong_of_records(records_a, records_b):
    """DeLong's test between two sets of records (a row and a variant of it) on the images
    both scored: {"p_value", "images", ...}, or None when either set is empty."""
    if not records_a or not records_b:
        return None
    return _delong(_arrays(records_a), _arrays(records_b))


def summarize_external(records, num_samples=1000, seed=0, fold=EXTERNAL_FOLD, shift=None):
    """{row_id: RowFigures} for the records whose fold is ``fold`` (``EXTERNAL_FOLD``: the
    refitted models; ``ENSEMBLE_FOLD``: the fold ensembles). ``shift``: {image: shift} of the
    external images (``stats.shift``), which adds ``shift_figures``."""
    by_row = collections.defaultdict(list)
    for record in records:
        if str(record["fold"]) == fold:
            by_row[row_key(record["row_id"])].append(record)
    summaries = {}
    for row_id, rows in by_row.items():
        table = _arrays(rows)
        figures = _pooled_figures(table, num_samples, seed)
        if shift is not None:
            figures.update(shift_figures(table, shift))
        summaries[row_id] = _typed(figures)
    return summaries


# A side of the usual / unusual split needs this many images of each class for its AUC.
MIN_SHIFT_SIDE_CLASS = 5


def shift_figures(table, shift):
    """One row's external figures by the shift score (``shift``: {image: shift percent}; one
    score serves every row): the share of its images that are unusual, their median shift,
    and its AUC on the usual and on the unusual images apart, each NaN where that side has
    fewer than ``MIN_SHIFT_SIDE_CLASS`` images of a class (the counts say how many)."""
    scored = np.array([image in shift for image in table["image"]], bool)
    values = np.array([shift[image] for image in table["image"][scored]], np.float64)
    labels, probs = table["label"][scored], table["prob"][scored]
    unusual_mask = is_unusual(values)
    figures = {"unusual_share": float(np.mean(unusual_mask)) if values.size else None,
               "median_shift": float(np.median(values)) if values.size else None}
    for side, mask in (("usual", ~unusual_mask), ("unusual", unusual_mask)):
        counts = [int(np.sum(labels[mask] == label)) for label in (0, 1)]
        figures[f"{side}_benign"], figures[f"{side}_malignant"] = counts
        figures[f"auc_{side}"] = (metrics.auc_score(labels[mask], probs[mask])
                                  if min(counts) >= MIN_SHIFT_SIDE_CLASS else NAN)
    return figures
