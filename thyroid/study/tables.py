"""Cell text of the report's tables: numbers, intervals, markdown-safe text."""

import math
import re


def num(value):
    """A finite float or None."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


# Characters that make Markdown markup (emphasis, code, links, images, raw HTML, entities,
# tables, strikethrough, headings, e-mail autolinks): a user string shows each as itself.
_MARKDOWN_SPECIAL = frozenset("\\`*_[]<>|~&#@")
# A viewer's autolinks of bare web addresses, broken by one escaped character each.
_AUTOLINK = re.compile(r"(?i)(://|www\.)")


def md(text):
    """A user's string (file, folder, case, run or source name, a CSV value, a note naming
    one) as plain text in Markdown: every Markdown character backslash-escaped, line breaks
    as spaces, so it can never become a link, emphasis, a heading or a table cell boundary.
    The one escape for user strings in the report (summary.html reads it back as text)."""
    if text is None:
        return "—"
    flat = " ".join(str(text).replace("\0", " ").splitlines())
    escaped = "".join("\\" + c if c in _MARKDOWN_SPECIAL else c for c in flat)
    return _AUTOLINK.sub(lambda m: m.group(1)[:-1] + "\\" + m.group(1)[-1], escaped)


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
