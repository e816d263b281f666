"""The report's plots (PNG): ROC curves and confusion matrices of a single split; the pooled
out-of-fold ROC curves and reliability diagrams of a cross-validated study. Object-oriented
matplotlib on the Agg canvas (no global backend switch), written atomically."""

import dataclasses
import math

import numpy as np

from thyroid import io_utils
from thyroid.stats import metrics, pooled


def save_figure(fig, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    with io_utils.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


ROC_PNG = "roc.png"
CONFUSION_PNG = "confusion_matrices.png"
CALIBRATION_PNG = "calibration.png"


def _roc_arrays(row):
    """(labels, probs) usable for a ROC curve, or None."""
    if row.status != "ok":
        return None
    labels, probs = row.labels, row.probs
    if labels is None or probs is None:
        return None
    labels = np.asarray(labels).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    if labels.size == 0 or labels.size != probs.size or len(np.unique(labels)) < 2:
        return None
    return labels, probs


def _plot_rows(panels, path, diagonal_label, draw_row, axes):
    """One figure of one or more panels ((rows, title)), each with the diagonal and one line
    per row that has both classes (``draw_row(ax, row, arrays)``); ``axes`` = (xlabel, ylabel,
    legend location). Returns the lines drawn in the first panel."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5 * len(panels), 6.0))
    counts = []
    for index, (rows, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), index + 1)
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label=diagonal_label)
        drawn = 0
        for row in rows:
            arrays = _roc_arrays(row)
            if arrays is not None:
                draw_row(ax, row, arrays)
                drawn += 1
        if not drawn:
            ax.text(0.5, 0.5, "no evaluated rows with both classes", ha="center", va="center")
        xlabel, ylabel, legend_location = axes
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.legend(loc=legend_location, fontsize=7)
        counts.append(drawn)
    save_figure(fig, path)
    return counts[0]


def plot_roc(rows, path, title="ROC curves (test set, malignant = positive)"):
    def draw(ax, row, arrays):
        fpr, tpr, _ = metrics.roc_points(*arrays)
        auc = metrics.auc_score(*arrays)
        ax.plot(fpr, tpr, linewidth=1.5, label=f"{row.title} (AUC {auc:.3f})")

    return _plot_rows([(rows, title)], path, "chance", draw, (
        "1 - specificity (false positive rate)", "sensitivity (true positive rate)",
        "lower right"))


def plot_confusion_matrices(rows, path):
    from matplotlib.figure import Figure

    evaluated = [r for r in rows if r.status == "ok"
                 and (r.metrics or {}).get("confusion_matrix") is not None]
    n = max(len(evaluated), 1)
    cols = min(n, 4)
    nrows = int(math.ceil(n / cols))
    fig = Figure(figsize=(3.2 * cols, 3.0 * nrows))
    if not evaluated:
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        ax.text(0.5, 0.5, "no evaluated rows", ha="center", va="center")
    for i, row in enumerate(evaluated):
        ax = fig.add_subplot(nrows, cols, i + 1)
        cm = np.asarray(row.metrics["confusion_matrix"], dtype=np.float64)
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(cm.max(), 1))
        for (r, c), value in np.ndenumerate(cm):
            color = "white" if value > cm.max() / 2 else "black"
            ax.text(c, r, f"{int(value)}", ha="center", va="center", color=color)
        ax.set_xticks([0, 1])
        ax.set_yticks([0, 1])
        ax.set_xticklabels(["benign", "malignant"], fontsize=8)
        ax.set_yticklabels(["benign", "malignant"], fontsize=8)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(row.title, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return len(evaluated)


def _pooled_rows(rows, records, score="prob"):
    """Rows with the labels and scores (``prob`` or ``risk``) of every repeat's out-of-fold
    predictions."""
    by_row = {}
    for record in records:
        if not pooled.is_external(record["fold"]):
            entry = by_row.setdefault(str(record["row_id"]), ([], []))
            entry[0].append(int(record["label"]))
            entry[1].append(float(record.get(score, record["prob"])))
    out = []
    for row in rows:
        labels, probs = by_row.get(str(row.row_id), ([], []))
        out.append(dataclasses.replace(row, labels=np.asarray(labels), probs=np.asarray(probs)))
    return out


def plot_pooled_roc(rows, records, path):
    """roc.png from the pooled out-of-fold predictions (all repeats together)."""
    return plot_roc(_pooled_rows(rows, records), path,
                    title="ROC curves (pooled out-of-fold predictions)")


def plot_calibration(rows, records, path, num_bins=10):
    """calibration.png: observed malignant fraction against the mean score in ``num_bins``
    equal-width bins, one line per row, with the diagonal; left the model's own P(malignant),
    right the recalibrated risk. -> rows drawn."""
    def draw(ax, row, arrays):
        predicted, observed, _ = metrics.calibration_bins(*arrays, num_bins=num_bins)
        ax.plot(predicted, observed, marker="o", markersize=3, linewidth=1.2,
                label=row.title)

    panels = [(_pooled_rows(rows, records, "prob"),
               f"Raw P(malignant) ({num_bins} bins, out of fold)"),
              (_pooled_rows(rows, records, "risk"),
               f"Recalibrated risk ({num_bins} bins, out of fold)")]
    return _plot_rows(panels, path, "perfect calibration", draw, (
        "mean predicted in bin", "observed fraction malignant", "upper left"))
