"""docs/DESIGN.md's file map ("Where things are") names every module of the package.

The rule, kept simple so that a new module needs only its name added: a module is named when
its path (``thyroid/stats/metrics.py``; ``thyroid/{a,b}.py`` counts for both) appears in the
section, or when its name (``metrics`` or ``metrics.py``) appears as a word in its folder's
entry: the lines from the one starting ``thyroid/stats/`` to the next entry. A folder's
``__init__.py`` is named by its folder's entry."""

import os
import re

import thyroid

PACKAGE_DIR = os.path.dirname(os.path.abspath(thyroid.__file__))
DESIGN = os.path.join(os.path.dirname(PACKAGE_DIR), "docs", "DESIGN.md")
SECTION = "## Where things are"


def map_section(text):
    """The fenced block of the section, with ``{a,b}`` alternatives spelled out."""
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:end if end >= 0 else len(text)]
    return re.sub(r"(\S*)\{([^}]*)\}(\S*)",
                  lambda m: " ".join(m.group(1) + name.strip() + m.group(3)
                                     for name in m.group(2).split(",")), section)


def folder_entries(section):
    """{"thyroid/stats/": the text of its entry} for every line that starts a folder's entry."""
    entries, current = {}, None
    for line in section.splitlines():
        if line and not line[0].isspace():
            match = re.match(r"(thyroid/(?:\w+/)+)\s", line + " ")
            current = match.group(1) if match else None
            if current:
                entries[current] = entries.get(current, "") + line + "\n"
        elif current:
            entries[current] += line + "\n"
    return entries


def package_modules(package_dir=PACKAGE_DIR):
    """Every .py file of the package, as ``thyroid/<folders>/<name>.py``."""
    found = []
    for folder, dirs, files in os.walk(package_dir):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        relative = os.path.relpath(folder, os.path.dirname(package_dir))
        found += [f"{relative}/{name}".replace(os.sep, "/") for name in files
                  if name.endswith(".py")]
    return sorted(found)


def unnamed_modules(modules, section):
    entries = folder_entries(section)
    missing = []
    for path in modules:
        folder, name = path.rsplit("/", 1)
        folder += "/"
        if path in section:
            continue
        entry = entries.get(folder)
        if entry is not None and (name == "__init__.py" or re.search(
                rf"(?<![\w/.]){re.escape(name[:-len('.py')])}(\.py)?(?!\w)", entry)):
            continue
        missing.append(path)
    return missing


def read_design():
    with open(DESIGN, encoding="utf-8") as f:
        return f.read()


def test_every_module_is_named_in_the_design_map():
    assert unnamed_modules(package_modules(), map_section(read_design())) == []


def test_a_module_missing_from_the_map_is_found():
    section = map_section(read_design())
    planted = "thyroid/stats/not_in_the_map.py"
    assert unnamed_modules(package_modules() + [planted], section) == [planted]
    # Taking a name out of its folder's entry makes its module unnamed.
    entry = folder_entries(section)["thyroid/stats/"]
    assert re.search(r"\bgraph_metrics\b", entry)
    without = section.replace(entry, re.sub(r"\bgraph_metrics\b", "", entry))
    assert unnamed_modules(["thyroid/stats/graph_metrics.py"], without) == \
        ["thyroid/stats/graph_metrics.py"]
    # A top-level module is named by its path only (spelled out from a {a,b} list too).
    assert unnamed_modules(["thyroid/train.py", "thyroid/scopes.py"], section) == []
    without = map_section(read_design().replace("bottleneck,train,", "bottleneck,"))
    assert unnamed_modules(["thyroid/train.py"], without) == ["thyroid/train.py"]
