"""Plain-text rendering of the metrics of ``thyroid.stats.metrics``: a value with its
interval, and the table ``evaluate`` prints."""

from thyroid.stats.metrics import METRIC_NAMES


def format_value(entry, digits=2):
    """'0.83 [0.71, 0.92]' from {"value", "ci95"}; 'n/a' for undefined values."""
    if entry is None or entry.get("value") is None:
        return "n/a"
    text = f"{entry['value']:.{digits}f}"
    ci = entry.get("ci95") or [None, None]
    if ci[0] is not None and ci[1] is not None:
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return text


def format_metrics_table(result):
    """Plain-text table of an ``evaluate_predictions`` result, for printing."""
    labels = {"accuracy": "Accuracy", "sensitivity": "Sensitivity",
              "specificity": "Specificity", "auc": "AUC"}
    lines = [f"{'Metric':<12} {'Value':>6}   95% CI (patient bootstrap)",
             "-" * 50]
    for name in METRIC_NAMES:
        entry = result.get(name) or {}
        value = entry.get("value")
        ci = entry.get("ci95") or [None, None]
        value_text = "n/a" if value is None else f"{value:.3f}"
        ci_text = ("n/a" if ci[0] is None or ci[1] is None
                   else f"[{ci[0]:.3f}, {ci[1]:.3f}]")
        lines.append(f"{labels[name]:<12} {value_text:>6}   {ci_text}")
    (tn, fp), (fn, tp) = result["confusion_matrix"]
    width = max(len(str(v)) for v in (tn, fp, fn, tp, "benign")) + 2
    lines += [
        "",
        f"Confusion matrix (threshold {result.get('threshold', 0.5):g}; "
        "rows = true, columns = predicted)",
        f"{'':<12}{'benign':>{width}}{'malignant':>{width + 3}}",
        f"{'benign':<12}{tn:>{width}}{fp:>{width + 3}}",
        f"{'malignant':<12}{fn:>{width}}{tp:>{width + 3}}",
    ]
    counts = result.get("counts", {})
    if counts:
        lines += ["",
                  f"Images: {counts.get('images')} ({counts.get('benign')} benign, "
                  f"{counts.get('malignant')} malignant); patients: {counts.get('patients')}"]
    return "\n".join(lines)
