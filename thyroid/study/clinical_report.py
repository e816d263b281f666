"""The report's clinical sections, drawn only from the pooled job's figures and the jobs'
results: calibration before and after recalibration, patient-level AUC, decision curves (a
table and ``decision_curve.png``), the external set's duplicate check, and the refitted model
beside the fold ensemble on the external set."""

import dataclasses
import math

from thyroid.stats import decision
from thyroid.stats.pooled import MIN_SHIFT_SIDE_CLASS, RowFigures
from thyroid.stats.shift import UNUSUAL_ABOVE
from thyroid.stats.recalibration import MIN_IMAGES_PER_CLASS, RecalibrationMap
from thyroid.study.figures import save_figure
from thyroid.study.payloads import ExternalCheckPayload
from thyroid.study.tables import md, method_name, num, plain, row_figures, with_ci

DECISION_PNG = "decision_curve.png"
MODEL_NAMES = {"refit": "refit on all development data", "folds": "fold ensemble (mean risk)"}
TIRADS_NOTE = ("**DDTI labels are TIRADS ratings, not pathology**: on DDTI images (real or "
               "DDTI-style synthetic) label 1 means a TIRADS 4a or above rating, so the risk there "
               "is the risk of a TIRADS 4a or above rating, not of malignancy.")


def _figures(summaries, row):
    """The row's figures, empty ones (every cell blank) where it has none."""
    return row_figures(summaries, row) or RowFigures()


def maps_text(row):
    """The row's fold maps in a few words: slope range and the folds kept at the identity."""
    maps = [RecalibrationMap.from_json(fold.recalibration) for fold in row.folds]
    fitted = [m for m in maps if not m.is_identity]
    if not maps:
        return "—"
    text = (f"slopes {min(m.slope for m in fitted):.2f}–{max(m.slope for m in fitted):.2f}"
            if fitted else "none fitted")
    kept = len(maps) - len(fitted)
    return text + (f"; identity in {kept} of {len(maps)} folds" if kept else "")


def calibration_markdown(rows, summaries, refit_maps):
    """Raw vs recalibrated Brier, intercept and slope of the pooled out-of-fold predictions."""
    lines = ["| # | Method | Brier raw | Brier recalibrated | Intercept / slope raw | "
             "Intercept / slope recalibrated | Fold maps | Refit map |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row.status != "ok":
            continue
        f = _figures(summaries, row)
        refit = refit_maps.get(row.row_id)
        lines.append(
            f"| {row.row_id} | {method_name(row)} | {plain(f, 'brier', 3)} | "
            f"{plain(f, 'brier_recalibrated', 3)} | {plain(f, 'calibration_intercept')} / "
            f"{plain(f, 'calibration_slope')} | {plain(f, 'calibration_intercept_recalibrated')} / "
            f"{plain(f, 'calibration_slope_recalibrated')} | {md(maps_text(row))} | "
            f"{md(RecalibrationMap.from_json(refit).describe()) if refit else '—'} |")
    return lines + [""]


def patient_markdown(rows, summaries):
    """Image-level AUC beside the patient-level AUCs (mean and max of a patient's images)."""
    lines = ["| # | Method | Image AUC | Patient AUC (mean of images) | "
             "Patient AUC (max of images) | Images (patients) |", "|---|---|---|---|---|---|"]
    for row in rows:
        f = row_figures(summaries, row)
        if row.status != "ok" or f is None:
            continue
        lines.append(f"| {row.row_id} | {method_name(row)} | {with_ci(f, 'auc')} | "
                     f"{with_ci(f, 'patient_auc_mean')} | {with_ci(f, 'patient_auc_max')} | "
                     f"{f.images} ({f.patients}) |")
    return lines + [""]


def decision_markdown(rows, summaries):
    """Net benefit at ``decision.TABLE_THRESHOLDS``: treat all, treat none, each row."""
    names = [decision.threshold_name(t) for t in decision.TABLE_THRESHOLDS]
    header = "| # | Strategy | " + " | ".join(f"t = {t:.2f}" for t in
                                               decision.TABLE_THRESHOLDS) + " |"
    lines = [header, "|" + "---|" * (2 + len(names))]
    filled = [row for row in rows if row.status == "ok"
              and row_figures(summaries, row) is not None]
    if filled:
        first = _figures(summaries, filled[0])
        lines.append("| | Treat all | " + " | ".join(
            plain(first, f"treat_all_at_{n}", 3) for n in names) + " |")
        lines.append("| | Treat none | " + " | ".join("0.000" for _ in names) + " |")
    for row in filled:
        f = _figures(summaries, row)
        lines.append(f"| {row.row_id} | {method_name(row)} | " + " | ".join(
            with_ci(f, f"net_benefit_at_{n}", 3) for n in names) + " |")
    return lines + [""]


def best_strategies(rows, summaries):
    """[(threshold, strategy, net benefit)] per threshold of the table: the strategy with the
    highest net benefit ("treat all", "treat none" or "row <id>"; ties go to treating all or
    none, so a row must beat both outright)."""
    best_by_threshold = []
    for threshold in decision.TABLE_THRESHOLDS:
        name = decision.threshold_name(threshold)
        options = {"treat all": None, "treat none": 0.0}
        for row in rows:
            f = _figures(summaries, row)
            options["treat all"] = options["treat all"] or num(getattr(f, f"treat_all_at_{name}"))
            if num(getattr(f, f"net_benefit_at_{name}")) is not None:
                options[f"row {row.row_id}"] = num(getattr(f, f"net_benefit_at_{name}"))
        options = {k: v for k, v in options.items() if v is not None}
        best = "treat none"
        for option, value in options.items():
            if value > options[best] + 1e-9:
                best = option
        best_by_threshold.append((threshold, best, options[best]))
    return best_by_threshold


def best_strategy_lines(rows, summaries):
    """Per threshold of the table, which strategy has the highest net benefit, in words."""
    lines = [f"t = {threshold:.2f}: {best} ({value:.3f})"
             for threshold, best, value in best_strategies(rows, summaries)]
    return ["Highest net benefit by threshold (ties go to treating all or none): "
            + "; ".join(lines) + ".", ""]


def external_markdown(rows, by_model, final_model):
    """The external set scored by the refitted model and by the fold ensemble, row by row;
    ``by_model``: {"refit": figures by row, "folds": figures by row}."""
    lines = ["| # | Method | Model | AUC | Patient AUC mean / max | Sensitivity | Specificity | "
             "Brier raw / recalibrated | Calibration slope raw / recalibrated | "
             "Fold spread (mean SD of risk) | Images (patients) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for model in ("refit", "folds"):
            f = row_figures(by_model.get(model), row)
            if f is None:
                continue
            final = " (final)" if model == final_model else ""
            lines.append(
                f"| {row.row_id} | {method_name(row)} | {MODEL_NAMES[model]}{final} | "
                f"{with_ci(f, 'auc')} | {plain(f, 'patient_auc_mean')} / "
                f"{plain(f, 'patient_auc_max')} | {with_ci(f, 'sensitivity')} | "
                f"{with_ci(f, 'specificity')} | {plain(f, 'brier', 3)} / "
                f"{plain(f, 'brier_recalibrated', 3)} | {plain(f, 'calibration_slope')} / "
                f"{plain(f, 'calibration_slope_recalibrated')} | {plain(f, 'spread_mean', 3)} | "
                f"{f.images} ({f.patients}) |")
    return lines + [""]


def _auc_with_counts(auc, benign, malignant):
    """'0.71 (40 benign, 35 malignant)', or '— (3 benign, 2 malignant)' where the side has
    too few images of a class for an AUC (``pooled.MIN_SHIFT_SIDE_CLASS``)."""
    value = num(auc)
    return f"{'—' if value is None else f'{value:.2f}'} ({benign} benign, {malignant} malignant)"


def shift_markdown(rows, external, problem=None):
    """The external set by the shift score, row by row (``external``: the final model's
    figures by row): the share of unusual images, the median shift, and the AUC on the usual
    and on the unusual images apart. Without shift figures: why (``problem``), or nothing."""
    shifted = [(row, row_figures(external, row)) for row in rows]
    shifted = [(row, f) for row, f in shifted if f is not None and f.unusual_share is not None]
    if not shifted:
        return [f"No shift score of the external images: {md(problem)}.", ""] if problem else []
    lines = [SHIFT_NOTE, "",
             "| # | Method | Unusual images | Median shift | AUC usual | AUC unusual |",
             "|---|---|---|---|---|---|"]
    for row, f in shifted:
        unusual = f.unusual_benign + f.unusual_malignant
        scored = unusual + f.usual_benign + f.usual_malignant
        lines.append(
            f"| {row.row_id} | {method_name(row)} | {100 * f.unusual_share:.0f} % ({unusual} of "
            f"{scored}) | {plain(f, 'median_shift', 1)} | "
            f"{_auc_with_counts(f.auc_usual, f.usual_benign, f.usual_malignant)} | "
            f"{_auc_with_counts(f.auc_unusual, f.unusual_benign, f.unusual_malignant)} |")
    return lines + [""]


SHIFT_NOTE = (
    "Shift score of the external images (`external_unusual_share`, `external_median_shift`, "
    "`external_auc_usual`, `external_auc_unusual` in `summary.csv`): each image's distance "
    "from the development images' features, as the percentage of development images (each "
    "scored by a reference fitted without its fold) that lie nearer; one score serves every "
    f"row. An image is unusual above {UNUSUAL_ABOVE:g}: far from the development images, "
    "which does not make its answer wrong. Each side's AUC needs at least "
    f"{MIN_SHIFT_SIDE_CLASS} images of each class; — otherwise, with the counts.")


def _pairs_text(pairs, extra):
    shown = [f"{p['external']} = {p['development']}{extra(p)}" for p in pairs[:20]]
    more = f" and {len(pairs) - 20} more" if len(pairs) > 20 else ""
    return ", ".join(shown) + more


def _bits(pair):
    return f" ({pair['bits']} bits)"


def external_check_lines(check, name):
    """The design section's line on the external set's duplicates of development images."""
    if not check:
        return []
    exact, near = check.exact, check.near
    line = (f"- **External set checked** ({md(name)}): {len(exact)} of "
            f"{check.external_images} external images byte-identical (SHA-256) to one of "
            f"the {check.development_images} development images"
            + (f", left out of every external figure: {md(_pairs_text(exact, lambda p: ''))}."
               if exact else "."))
    lines = [line]
    if near:
        lines.append(
            f"- **Warning: {len(near)} external images look like development images** (scan-field "
            f"hashes at most {check.near_bits} of 72 bits apart; kept in the figures, check "
            f"them by eye): {md(_pairs_text(near, _bits))}.")
    return lines


def _curve_arrays(curve):
    """A saved curve's lists as float arrays: an undefined point, null in the result file
    (strict JSON), becomes NaN, which the plot leaves out."""
    import numpy as np
    return {name: np.asarray([np.nan if v is None else v for v in values], dtype=float)
            for name, values in curve.items()}


def _finite(values):
    return [float(v) for v in values if math.isfinite(v)]


def plot_decision_curves(rows, panels, path):
    """decision_curve.png: per panel ((title, figures by row)), each row's net benefit with
    its bootstrap band, treat all and treat none. -> the number of curves drawn."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6.5 * len(panels), 5.5))
    drawn = 0
    for index, (title, summaries) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), index + 1)
        everyone, low_y = None, 0.0
        for row in rows:
            curve = _figures(summaries, row).decision_curve
            if row.status != "ok" or not curve:
                continue
            curve = _curve_arrays(dataclasses.asdict(curve))
            line, = ax.plot(curve["thresholds"], curve["net_benefit"], linewidth=1.5,
                            label=row.title)
            ax.fill_between(curve["thresholds"], curve["low"], curve["high"], alpha=0.12,
                            color=line.get_color(), linewidth=0)
            everyone = curve if everyone is None else everyone
            low_y = min([low_y, *_finite(curve["net_benefit"])])
            drawn += 1
        if everyone:
            # Drawn last and on top: a row that flags every image lies exactly on it.
            ax.plot(everyone["thresholds"], everyone["treat_all"], color="black",
                    linestyle=(0, (4, 3)), linewidth=1.6, label="treat all", zorder=5)
            top = max([0.05, *_finite(everyone["treat_all"])])
            ax.set_ylim(max(low_y, -top) - 0.02, top * 1.15 + 0.02)
        else:
            ax.text(0.27, 0.0, "no evaluated rows", ha="center", va="center")
        ax.axhline(0.0, color="0.6", linewidth=1, label="treat none")
        ax.set_xlim(decision.THRESHOLDS[0], decision.THRESHOLDS[-1])
        ax.set_xlabel("threshold probability (risk above which one acts)")
        ax.set_ylabel("net benefit")
        ax.set_title(title, fontsize=9)
        ax.legend(loc="lower left", fontsize=6)
    save_figure(fig, path)
    return drawn


@dataclasses.dataclass
class ClinicalFacts:
    """What the clinical sections need beyond the pooled out-of-fold figures, all read from
    result files: ``refit_maps`` {row id: the refit's map (json)}; ``external_by_model``
    {"refit" | "folds": {row id: external figures}}; ``external_check`` (the check job's
    payload) and ``external_name``; ``tirads_labels``: a DDTI(-style) source is involved;
    ``shift_problem``: why a planned shift job left no score (its status and note), or None."""
    recalibrate: str = "logistic"
    final_model: str = "refit"
    refit_maps: dict = dataclasses.field(default_factory=dict)
    external_by_model: dict = dataclasses.field(default_factory=dict)
    external_check: ExternalCheckPayload | None = None
    external_name: str | None = None
    tirads_labels: bool = False
    shift_problem: str | None = None


def design_lines(clinical):
    """The study design's bullets on recalibration, the final model and the external check."""
    if clinical.recalibrate == "none":
        recalibration = ("- **Recalibration**: none (`--recalibrate=none`): the risk is each "
                         "model's own score.")
    else:
        recalibration = (
            "- **Recalibration** (`--recalibrate=logistic`): per fold, a logistic map from the "
            "row's score to a risk, risk = sigmoid(a + b logit(score)), is fitted on that fold's "
            "inner-validation predictions only (for the SVM rows Platt's map of the decision "
            "value) and applied to its test fold. The slope b is kept positive, so the ranking "
            "(AUC) is the score's; a fold whose inner set has fewer than "
            f"{MIN_IMAGES_PER_CLASS} images of a class keeps the identity map. The refit carries "
            "one map fitted on every fold's inner-validation predictions; the fold ensemble "
            "averages its fold models' risks, each through its own fold's map. Thresholds stay "
            "on the raw score.")
    final = {"refit": "the refit (one model trained on all development images for the median "
                      "over folds of its best epoch, with the median fold threshold)",
             "folds": "the fold ensemble (the mean of repeat 0's fold models' recalibrated "
                      "risks, judged on their mean probability at the median fold threshold; "
                      "the SD of their risks is reported per image as an uncertainty)"}
    lines = [recalibration,
             f"- **Final model** (`--final_model={clinical.final_model}`): "
             f"{final[clinical.final_model]}. It is the model exported for the phone; on an "
             "external set both the refit and the fold ensemble are reported."]
    lines += external_check_lines(clinical.external_check, clinical.external_name)
    if clinical.tirads_labels:
        lines.append(f"- {TIRADS_NOTE}")
    return lines
