"""summary.html: the report's markdown as one self-contained page, readable on a phone.

Only the markdown the report writes is understood: headings, tables, bullets, paragraphs,
images on a line of their own, and inline bold, code and links. Images (the report's PNGs)
are inlined as data URIs, so the page is one file that can be mailed or opened offline; wide
tables scroll sideways inside their own box instead of widening the page. The same markdown
and plots give the same bytes (no clock, no randomness), so ``--report_only`` rebuilds it
identically.
"""

import base64
import html
import os
import re

# The report's markdown and the page made from it, in the run folder.
SUMMARY_MD = "summary.md"
SUMMARY_HTML = "summary.html"

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       line-height: 1.45; margin: 0 auto; padding: 0.8rem; max-width: 72rem; color: #1b1b1b; }
h1 { font-size: 1.45rem; } h2 { font-size: 1.2rem; margin-top: 1.8rem; }
h3 { font-size: 1.05rem; }
.table { overflow-x: auto; -webkit-overflow-scrolling: touch; margin: 0.6rem 0; }
table { border-collapse: collapse; font-size: 0.82rem; }
th, td { border: 1px solid #c8c8c8; padding: 0.25rem 0.45rem; text-align: left;
         vertical-align: top; }
th { background: #f0f0f0; } tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; display: block; margin: 0.5rem 0; }
code { background: #f3f3f3; padding: 0 0.2rem; border-radius: 3px; font-size: 0.9em;
       overflow-wrap: anywhere; }
li, p { overflow-wrap: anywhere; }
details { margin-top: 1.1rem; } summary { cursor: pointer; }
summary h2 { display: inline; margin: 0; }
"""

_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)]+)\)$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


# A backslash-escaped character (``tables.md``) is held as a private-use code point while the
# markup is parsed, then written back as the escaped character itself: it never opens or
# closes markup.
_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")
_HELD = 0xF0000
# Link targets the page keeps: the web, an anchor in the page, or a file of the run folder
# beside the page (the report's own links). Anything else stays text.
_SAFE_HREF = re.compile(r"^(https?://[^\s\"'<>]+|#[\w-]+|[\w][\w.-]*)$")


def _hold(text):
    return _ESCAPED.sub(lambda m: chr(_HELD + ord(m.group(1))), text)


def _release(text):
    return re.sub("[\U000F0021-\U000F007E]", lambda m: html.escape(chr(ord(m.group(0)) - _HELD)),
                  text)


def _link(match):
    label, href = match.group(1), html.unescape(match.group(2))
    if not _SAFE_HREF.match(href):
        return match.group(0)
    return f'<a href="{html.escape(href)}">{label}</a>'


def inline(text):
    """Escaped text with **bold**, `code` and [links](href); backslash escapes stay text."""
    parts = re.split(r"(`[^`]*`)", _hold(text))
    out = []
    for part in parts:
        if len(part) >= 2 and part.startswith("`") and part.endswith("`"):
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        escaped = html.escape(part)
        escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
        escaped = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", _link, escaped)
        out.append(escaped)
    return _release("".join(out))


def _cells(line):
    cells = _CELL_SPLIT.split(line.strip())[1:-1]
    return [inline(cell.strip().replace("\\|", "|")) for cell in cells]


def _table(lines):
    head, body = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    rows = ["<tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"]
    rows += ["<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>" for cells in body]
    return '<div class="table"><table>\n' + "\n".join(rows) + "\n</table></div>"


def _image(alt, source, run_dir):
    path = os.path.join(run_dir, source)
    if os.path.dirname(source) or not os.path.isfile(path):
        return f"<p>{html.escape(alt)} ({html.escape(source)} not found)</p>"
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def _blocks(lines):
    """Groups lines into (kind, lines) blocks: heading, table, list, image, paragraph."""
    blocks, index = [], 0
    while index < len(lines):
        line = lines[index]
        kind = ("blank" if not line.strip() else "heading" if line.startswith("#")
                else "table" if line.startswith("|") else "list" if line.startswith("- ")
                else "image" if _IMAGE.match(line.strip()) else "paragraph")
        if kind in ("heading", "image", "blank"):
            blocks.append((kind, [line]))
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].strip() and (
                (kind == "table" and lines[end].startswith("|"))
                or (kind == "list" and lines[end].startswith("- "))
                or (kind == "paragraph" and not lines[end].startswith(("#", "|", "- ")))):
            end += 1
        blocks.append((kind, lines[index:end]))
        index = end
    return blocks


def section_id(heading):
    """The id of a ``##`` section (its heading's words, lower case, joined by ``-``): the
    target of an in-page link ``[text](#id)``."""
    return "-".join(re.findall(r"[a-z0-9]+", heading.lower())) or "section"


def _section_start(heading, open_sections, folding):
    """A ``##`` heading: folded into ``<details>`` (open when listed in ``open_sections``),
    or a plain heading with its id when the page does not fold."""
    text = heading.lstrip("#").strip()
    anchor = f'id="{section_id(text)}"'
    if not folding:
        return f"<h2 {anchor}>{inline(text)}</h2>"
    shown = " open" if text in open_sections else ""
    return f"<details {anchor}{shown}><summary><h2>{inline(text)}</h2></summary>"


def body_html(markdown, run_dir, open_sections=None):
    """The page's body. ``open_sections``: None for a page that does not fold; else every
    ``##`` section folds into a ``<details>`` element, open only for the headings listed."""
    out, folding, in_section = [], open_sections is not None, False
    for kind, lines in _blocks(markdown.splitlines()):
        level = len(lines[0]) - len(lines[0].lstrip("#")) if kind == "heading" else 0
        if level == 2:
            if folding and in_section:
                out.append("</details>")
            out.append(_section_start(lines[0], open_sections or (), folding))
            in_section = folding
        elif level == 1 and folding and in_section:
            out.append("</details>")
            in_section = False
        if level and level != 2:
            level = min(level, 4)
            out.append(f"<h{level}>{inline(lines[0].lstrip('#').strip())}</h{level}>")
        elif kind == "table":
            out.append(_table(lines))
        elif kind == "list":
            out.append("<ul>\n" + "\n".join(f"<li>{inline(line[2:])}</li>" for line in lines)
                       + "\n</ul>")
        elif kind == "image":
            alt, source = _IMAGE.match(lines[0].strip()).groups()
            out.append(_image(alt, source, run_dir))
        elif kind == "paragraph":
            out.append(f"<p>{inline(' '.join(line.strip() for line in lines))}</p>")
    if in_section:
        out.append("</details>")
    return "\n".join(out)


def markdown_page(markdown, run_dir, title, open_sections=None):
    """The whole page: the report's markdown as HTML, its images inlined from ``run_dir``;
    with ``open_sections`` (headings), each ``##`` section folds, open only for those."""
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"{body_html(markdown, run_dir, open_sections)}\n</body>\n</html>\n")
