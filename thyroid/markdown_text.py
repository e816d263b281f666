"""User text inside Markdown: the one escape the study's report and every export's model card
use for a string that came from the user (a file, folder, case, run or source name, a CSV
value, a note naming one)."""

import re

# Characters that make Markdown markup (emphasis, code, links, images, raw HTML, entities,
# tables, strikethrough, headings, e-mail autolinks): a user string shows each as itself.
MARKDOWN_SPECIAL = frozenset("\\`*_[]<>|~&#@")
# A viewer's autolinks of bare web addresses, broken by one escaped character each.
_AUTOLINK = re.compile(r"(?i)(://|www\.)")


def plain(text):
    """``text`` as plain text in Markdown: every Markdown character backslash-escaped, line
    breaks as spaces, so it can never become a link, emphasis, a heading or a table cell
    boundary (summary.html reads it back as text); None as a dash."""
    if text is None:
        return "—"
    flat = " ".join(str(text).replace("\0", " ").splitlines())
    escaped = "".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in flat)
    return _AUTOLINK.sub(lambda m: m.group(1)[:-1] + "\\" + m.group(1)[-1], escaped)
