"""Cell text of the report's tables: numbers, intervals, markdown-safe text."""

import math


def num(value):
    """A finite float or None."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


def md(text):
    """Text safe inside a markdown table cell."""
    if text is None:
        return "—"
    return str(text).replace("|", "\\|").replace("\n", " ")


def with_ci(figures, name, digits=2):
    """'0.83 [0.71, 0.92]' from ``figures[name]`` and its ``_ci_low`` / ``_ci_high``."""
    value = num(figures.get(name))
    if value is None:
        return "—"
    low, high = num(figures.get(f"{name}_ci_low")), num(figures.get(f"{name}_ci_high"))
    text = f"{value:.{digits}f}"
    return text if low is None or high is None else f"{text} [{low:.{digits}f}, {high:.{digits}f}]"


def plain(figures, name, digits=2):
    value = num(figures.get(name))
    return "—" if value is None else f"{value:.{digits}f}"


def method_name(row):
    """The row's label without its number."""
    return md(row.title.split(". ", 1)[-1])
