"""Reader for DDTI: ``<case>.xml`` plus ``<case>_<k>.jpg`` in one folder.

One example per image. Label from the XML's TIRADS: 2 and 3 benign, 4a/4b/4c/5 malignant.
Cases with an empty TIRADS are kept as unlabelled examples (so duplicates with them are seen)
and counted as excluded.
"""

import json
import os
import re

from absl import logging
from lxml import etree

from thyroid import BENIGN, MALIGNANT
from thyroid.datasets import files, images
from thyroid.datasets.example import (Example, ReadResult, make_image_key, make_patient_id,
                                      path_entry)

SOURCE = "ddti"
REPORT_FIELDS = ("number", "age", "sex", "composition", "echogenicity", "margins",
                 "calcifications", "tirads", "reportbacaf", "reporteco")
TIRADS_LABELS = {"1": BENIGN, "2": BENIGN, "3": BENIGN,
                 "4a": MALIGNANT, "4b": MALIGNANT, "4c": MALIGNANT, "5": MALIGNANT}
# Spelling variants seen in DDTI, mapped to one canonical value.
CANONICAL_VALUES = {
    "sex": {"f": "female", "m": "male", "u": "unknown"},
    "calcifications": {"microcalcification": "microcalcifications",
                       "macrocalcification": "macrocalcifications"},
}
IGNORED_EXTENSIONS = (".md", ".txt")  # documentation that may sit beside the data
IMAGE_NAME = re.compile(r"^(?P<case>[^_]+)_(?P<index>\d+)$")
# A DDTI case file is about 2 kB; anything near this is not one.
MAX_CASE_BYTES = 10_000_000


def _xml_parser():
    # Never expand entities or fetch anything: case files are untrusted input.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False)


def normalise_value(name, value):
    """Lower case, single spaces, ``ill- defined`` == ``ill defined``, singular == plural."""
    text = (value or "").strip().lower()
    if name not in ("reportbacaf", "reporteco"):
        text = text.replace("-", " ")
    text = re.sub(r"\s+", " ", text).strip()
    return CANONICAL_VALUES.get(name, {}).get(text, text)


def tirads_label(tirads):
    """0, 1 or None for an empty / unknown value."""
    return TIRADS_LABELS.get(normalise_value("tirads", tirads).replace(" ", ""))


def parse_polygons(svg_text):
    """Polygons [(x, y), ...] from a mark's JSON; None when empty or unparsable."""
    text = (svg_text or "").strip()
    if not text:
        return None
    try:
        regions = json.loads(text)
    except ValueError:
        return None
    if isinstance(regions, dict):
        regions = [regions]
    polygons = []
    for region in regions if isinstance(regions, list) else []:
        points = region.get("points", []) if isinstance(region, dict) else []
        polygon = [(float(p["x"]), float(p["y"])) for p in points
                   if isinstance(p, dict) and "x" in p and "y" in p]
        if polygon:
            polygons.append(polygon)
    return polygons or None


# Why a mark has no usable outline (DDTI has both kinds: see its SOURCE.md).
EMPTY_OUTLINE = "empty outline"
BROKEN_OUTLINE = "outline not parsable (cut off?)"
NO_POINTS = "outline without points"


def outline_problem(svg_text):
    """Why ``parse_polygons(svg_text)`` gives no polygon ('' when it gives one)."""
    text = (svg_text or "").strip()
    if not text:
        return EMPTY_OUTLINE
    try:
        json.loads(text)
    except ValueError:
        return BROKEN_OUTLINE
    return "" if parse_polygons(text) else NO_POINTS


def _element_text(element):
    # Only real text nodes: an unexpanded entity reference contributes nothing.
    return "".join(t for t in element.xpath("text()")) if element is not None else ""


def parse_case(path):
    """(fields dict, [(image index, svg text), ...]); raises on unreadable XML
    (``files.FileError`` for a file that must not be opened)."""
    files.check_regular_file(path, MAX_CASE_BYTES)
    tree = etree.parse(path, _xml_parser())
    root = tree.getroot()
    if root.tag != "case":
        raise ValueError(f"root element is <{root.tag}>, expected <case>")
    fields = {name: normalise_value(name, _element_text(root.find(name))) for name in REPORT_FIELDS}
    marks = [(_element_text(mark.find("image")).strip(), _element_text(mark.find("svg")))
             for mark in root.findall("mark")]
    return fields, marks


def _find_image(directory, case_id, index, files):
    stem = f"{case_id}_{index}"
    for name in files.get(stem, []):
        if images.is_image_file(name):
            return os.path.join(directory, name)
    return None


def _read_case(result, directory, xml_name, files_by_stem, used_images):
    """One case's examples into ``result``; the image names it uses into ``used_images``."""
    path = os.path.join(directory, xml_name)
    case_id = os.path.splitext(xml_name)[0]
    try:
        fields, marks = parse_case(path)
    except files.FileError as error:
        result.skip_error(path, error)
        return
    except Exception as error:  # lxml errors, bad root, unreadable file
        result.skip(path, "unreadable XML", str(error))
        return
    result.cases += 1
    label = tirads_label(fields["tirads"])
    if label is None:
        reason = "empty TIRADS" if not fields["tirads"] else f"unknown TIRADS {fields['tirads']!r}"
        result.excluded.append({"case_id": case_id, "reason": reason})
    for index, svg in marks:
        image_path = _find_image(directory, case_id, index, files_by_stem)
        mark_name = f"{case_id}_{index}"
        if image_path is None:
            result.skip(os.path.join(directory, mark_name + ".jpg"), "image file missing")
            continue
        used_images.add(os.path.basename(image_path))
        try:
            files.check_regular_file(image_path)
        except files.FileError as error:
            result.skip_error(image_path, error)
            continue
        polygons = parse_polygons(svg)
        if polygons is None:
            result.marks_without_polygon.append(mark_name)
            result.broken_outlines.append(path_entry(image_path, outline_problem(svg),
                                                     mark_name))
        result.examples.append(Example(
            source=SOURCE, case_id=case_id, patient_id=make_patient_id(SOURCE, case_id),
            image_path=image_path, label=label, tirads=fields["tirads"],
            polygons=polygons or [], fields=dict(fields),
            key=make_image_key(SOURCE, directory, image_path)))


def _skip_strays(result, directory, names, used_images):
    """Files no case uses (documentation and folders aside) are listed as skipped."""
    for name in names:
        if name in used_images or name.lower().endswith(".xml"):
            continue
        path = os.path.join(directory, name)
        if name.lower().endswith(IGNORED_EXTENSIONS) or os.path.isdir(path):
            continue
        reason = "image without a case mark" if images.is_image_file(name) else "unknown file type"
        result.skip(path, reason)


def read(directory):
    """Reads a DDTI folder into a ReadResult (all examples; iterate it for the labelled ones)."""
    result = ReadResult(source=SOURCE)
    names = result.utf8_names(directory)
    files_by_stem = {}
    for name in names:
        files_by_stem.setdefault(os.path.splitext(name)[0], []).append(name)
    used_images = set()
    xml_names = [n for n in names if n.lower().endswith(".xml")]
    for xml_name in sorted(xml_names, key=_case_sort_key):
        _read_case(result, directory, xml_name, files_by_stem, used_images)
    _skip_strays(result, directory, names, used_images)
    counts = result.counts()
    logging.info("DDTI %s: %d cases (%d labelled), %d images (%d labelled), excluded %s, "
                 "%d marks without polygon, %d files skipped", directory, counts["cases"],
                 counts["labelled_cases"], counts["images"], counts["labelled_images"],
                 counts["excluded_reasons"], counts["marks_without_polygon"], len(result.skipped))
    return result


def _case_sort_key(name):
    stem = os.path.splitext(name)[0]
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)
