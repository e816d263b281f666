"""Synthetic DDTI-style and local-style data, for tests and a default study without real data
(the library behind ``python -m thyroid.synth``).

``generate`` writes ``DIR/ddti/`` (``<case>.xml`` + ``<case>_<k>.jpg``) and ``DIR/local/``
(``<patient>/report.docx`` + images). Images imitate B-mode ultrasound
(``synthetic_scans``: the nodules' appearance model, label noise and the frame): Rayleigh
speckle, log compression, a scan field with a scale bar, scanner text and a bottom text band
that repeats the TIRADS (as DDTI burns it in, so the scan crop must remove it).

The XML/report text describes the appearance (what a radiologist would see), while the
label is the recorded one. Same seed, same bytes. ``draw_labelled_images`` and
``write_class_folders`` give one-view cases of either look for the folders reader.
"""

import io
import json
import os
import zipfile

import numpy as np
from absl import logging
from PIL import Image

from thyroid.datasets.synthetic_scans import (DEFAULT_HEIGHT, DEFAULT_WIDTH, looks_irregular,
                                              render_image, render_scanner_image, sample_nodule)

BENIGN_TIRADS = ("2", "3")
MALIGNANT_TIRADS = ("4a", "4b", "4c", "5")
FIXED_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def _jpeg_bytes(rgb):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def _image_bytes(rgb, file_format):
    if file_format == "JPEG":
        return _jpeg_bytes(rgb)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=file_format)
    return buffer.getvalue()


def _views_per_case(rng):
    return int(rng.choice([1, 2, 3], p=[0.7, 0.2, 0.1]))


# ----------------------------------------------------------------------------- DDTI

def _ddti_fields(rng, nodule, tirads):
    """The radiologist's description follows what the image shows, not the recorded label."""
    irregular = looks_irregular(nodule)
    micro = nodule["calcifications"] > 0 and nodule["calcification_size"] < 2
    echo_word = {"solid": "hypoechogenicity", "iso": "isoechogenicity",
                 "hyper": "hyperechogenicity", "cystic": ""}[nodule["kind"]]
    return {
        "age": str(int(rng.integers(20, 85))) if rng.random() < 0.8 else "",
        "sex": str(rng.choice(["F", "F", "F", "M", "u", ""])),
        "composition": "cystic" if nodule["kind"] == "cystic" else str(rng.choice(["solid", "dense", ""])),
        "echogenicity": echo_word,
        "margins": str(rng.choice(["ill- defined", "ill defined", "spiculated"]) if irregular
                       else rng.choice(["well defined", "well defined smooth"])),
        "calcifications": str(rng.choice(["microcalcification", "microcalcifications"])
                              if micro else rng.choice(["non", ""])),
        "tirads": tirads,
        "reportbacaf": "", "reporteco": "",
    }


def _svg_json(polygon):
    points = [{"x": int(round(x)), "y": int(round(y))} for x, y in polygon]
    return json.dumps([{"points": points, "annotation": {}, "regionType": "freehand"}])


def _case_xml(number, fields, marks):
    from xml.sax.saxutils import escape
    parts = [f"<case><number>{number}</number>"]
    for name in ("age", "sex", "composition", "echogenicity", "margins", "calcifications",
                 "tirads", "reportbacaf", "reporteco"):
        parts.append(f"<{name}>{escape(fields[name])}</{name}>")
    for index, svg in marks:
        parts.append(f"<mark><image>{index}</image><svg>{escape(svg)}</svg></mark>")
    parts.append("</case>")
    return "".join(parts).encode("utf-8")


def write_ddti(directory, num_cases, rng, width, height):
    """Writes DDTI-style cases; returns a summary dict."""
    os.makedirs(directory, exist_ok=True)
    summary = {"cases": 0, "images": 0, "unlabelled_cases": 0, "broken_svg": 0, "duplicates": []}
    first_labelled = None  # (image name, bytes, label, tirads, nodule)
    copied_into_unlabelled = False
    labelled_copy_case = max(3, num_cases // 2)
    for number in range(1, num_cases + 1):
        unlabelled = rng.random() < 0.12
        label = int(rng.random() < 0.5)
        nodule = sample_nodule(rng, label)
        tirads = "" if unlabelled else str(rng.choice(MALIGNANT_TIRADS if label else BENIGN_TIRADS))
        copies_labelled = number == labelled_copy_case and first_labelled is not None
        if copies_labelled:  # a second patient with a byte-identical image (DDTI: 353_2 = 396_1)
            unlabelled, label, tirads, nodule = False, first_labelled[2], first_labelled[3], first_labelled[4]
        if tirads and rng.random() < 0.3:
            tirads = tirads.upper()
        marks, blobs = [], []
        for k in range(1, _views_per_case(rng) + 1):
            band = f"{'DER' if rng.random() < 0.5 else 'IZQ'}   TIRADS {tirads.upper() or '?'}"
            rgb, polygon = render_image(rng, nodule, width, height,
                                        band_text=band if rng.random() < 0.7 else "")
            blobs.append((k, _jpeg_bytes(rgb)))
            marks.append((k, _svg_json(polygon)))
        # DDTI quirks: some marks have an empty or truncated <svg>.
        if number % 13 == 4:
            marks[-1] = (marks[-1][0], "")
            summary["broken_svg"] += 1
        elif number % 13 == 7:
            marks[-1] = (marks[-1][0], marks[-1][1][:len(marks[-1][1]) // 2])
            summary["broken_svg"] += 1
        # Like DDTI, an unlabelled placeholder case can repeat a labelled case's image byte for byte.
        copies_into_unlabelled = unlabelled and not copied_into_unlabelled
        if first_labelled is not None and (copies_labelled or copies_into_unlabelled):
            blobs[0] = (blobs[0][0], first_labelled[1])
            summary["duplicates"].append([first_labelled[0], f"{number}_{blobs[0][0]}.jpg"])
            copied_into_unlabelled = copied_into_unlabelled or unlabelled
        if not unlabelled and first_labelled is None:
            first_labelled = (f"{number}_1.jpg", blobs[0][1], label, tirads, nodule)
        for k, data in blobs:
            with open(os.path.join(directory, f"{number}_{k}.jpg"), "wb") as f:
                f.write(data)
        with open(os.path.join(directory, f"{number}.xml"), "wb") as f:
            f.write(_case_xml(number, _ddti_fields(rng, nodule, tirads), marks))
        summary["cases"] += 1
        summary["images"] += len(blobs)
        summary["unlabelled_cases"] += int(unlabelled)
    return summary


# ----------------------------------------------------------------------------- local

BENIGN_DIAGNOSES = ("Multinodular goiter", "Simple goiter", "Toxic goiter",
                    "Hashimoto thyroiditis", "Benign nodule", "Benign nodule, TIRADS 3")
MALIGNANT_DIAGNOSES = ("Papillary carcinoma", "Follicular carcinoma", "Malignant nodule",
                       "Cancerous nodule, TIRADS 5", "Suspicious nodule, TIRADS 4b")
UNRECOGNISED_DIAGNOSIS = "Pending further review"


def docx_bytes(paragraphs, table_rows=()):
    """A .docx with the given paragraphs and an optional 2-column table, byte-reproducible."""
    import datetime
    import docx
    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table_rows:
        table = document.add_table(rows=0, cols=2)
        for key, value in table_rows:
            cells = table.add_row().cells
            cells[0].text, cells[1].text = key, value
    fixed = datetime.datetime(2020, 1, 1)
    properties = document.core_properties
    properties.created = properties.modified = properties.last_printed = fixed
    properties.author = properties.last_modified_by = "thyroid.synth"
    properties.revision = 1
    buffer = io.BytesIO()
    document.save(buffer)
    return _fixed_time_zip(buffer.getvalue())


def _fixed_time_zip(data):
    """Rewrites a zip with fixed member timestamps, so equal content gives equal bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(zipfile.ZipInfo(info.filename, FIXED_ZIP_TIME), source.read(info),
                            compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _findings(nodule):
    """The report's findings describe what the image shows (not the recorded diagnosis)."""
    echo = {"solid": "Solid hypoechoic", "iso": "Isoechoic", "hyper": "Hyperechoic",
            "cystic": "Anechoic cystic"}[nodule["kind"]]
    irregular = looks_irregular(nodule)
    signs = ["irregular margins" if irregular else "smooth margins"]
    if nodule["aspect"] > 1:
        signs.append("taller than wide")
    if nodule["calcifications"] and nodule["calcification_size"] < 2:
        signs.append("echogenic foci")
    if nodule["halo"]:
        signs.append("a thin halo")
    return f"{echo} nodule with {', '.join(signs)}."


def write_local(directory, num_patients, rng, width, height):
    """Writes ``<patient>/report.docx`` + images; returns a summary dict."""
    os.makedirs(directory, exist_ok=True)
    summary = {"patients": 0, "images": 0, "unrecognised": 0}
    formats = (("JPEG", ".jpg"), ("PNG", ".png"), ("BMP", ".bmp"))
    for index in range(1, num_patients + 1):
        patient = f"P{index:04d}"
        folder = os.path.join(directory, patient)
        os.makedirs(folder, exist_ok=True)
        label = int(rng.random() < 0.5)
        nodule = sample_nodule(rng, label)
        diagnosis = str(rng.choice(MALIGNANT_DIAGNOSES if label else BENIGN_DIAGNOSES))
        if index % 17 == 0:  # a report nobody can map to a label
            diagnosis = UNRECOGNISED_DIAGNOSIS
            summary["unrecognised"] += 1
        paragraphs = ["Thyroid ultrasound report", f"Patient ID: {patient}",
                      f"Findings: {_findings(nodule)}"]
        table_rows = ()
        if index % 3 == 0:  # some hospitals put the diagnosis in a table
            table_rows = (("Patient", patient), ("Diagnosis", diagnosis))
        else:
            paragraphs.append(f"Diagnosis: {diagnosis}")
        with open(os.path.join(folder, "report.docx"), "wb") as f:
            f.write(docx_bytes(paragraphs, table_rows))
        for k in range(1, _views_per_case(rng) + 1):
            file_format, extension = formats[(index + k) % len(formats)]
            rgb, _ = render_image(rng, nodule, width, height, band_text="HOSP  " + patient,
                                  side_text=("L12-5", "G 60", "FR 28"))
            with open(os.path.join(folder, f"image_{k}{extension}"), "wb") as f:
                f.write(_image_bytes(rgb, file_format))
            summary["images"] += 1
        summary["patients"] += 1
    return summary


def generate(output_dir, num_cases=100, seed=0, width=DEFAULT_WIDTH, height=DEFAULT_HEIGHT,
             num_local_cases=None):
    """Writes ``output_dir/ddti`` and ``output_dir/local``; returns a summary dict."""
    num_local_cases = num_cases if num_local_cases is None else num_local_cases
    rng = np.random.default_rng(seed)
    ddti_rng, local_rng = (np.random.default_rng(s) for s in rng.integers(0, 2 ** 31, size=2))
    summary = {
        "ddti": write_ddti(os.path.join(output_dir, "ddti"), num_cases, ddti_rng, width, height),
        "local": write_local(os.path.join(output_dir, "local"), num_local_cases, local_rng,
                             width, height),
    }
    logging.info("Synthetic data in %s: %s", output_dir, summary)
    return summary


def draw_labelled_images(count, seed, width=DEFAULT_WIDTH, height=DEFAULT_HEIGHT, look=None):
    """Yields (uint8 HxWx3, label) of ``count`` one-view cases, about half malignant: with
    ``look`` None as ``generate`` draws its DDTI-style images (a TIRADS band on most), else
    as ``look``'s scanner draws the same kind of nodules. Same seed, same images."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        label = int(rng.random() < 0.5)
        nodule = sample_nodule(rng, label)
        if look is None:
            tirads = str(rng.choice(MALIGNANT_TIRADS if label else BENIGN_TIRADS)).upper()
            band = f"{'DER' if rng.random() < 0.5 else 'IZQ'}   TIRADS {tirads}"
            rgb, _ = render_image(rng, nodule, width, height,
                                  band_text=band if rng.random() < 0.7 else "")
        else:
            rgb, _ = render_scanner_image(rng, nodule, width, height, look)
        yield rgb, label


def write_class_folders(directory, count, seed, width=DEFAULT_WIDTH, height=DEFAULT_HEIGHT,
                        look=None):
    """Writes ``draw_labelled_images`` as ``directory/{benign,malignant}/<n>.jpg`` (what the
    folders reader reads; each image its own patient); returns the counts."""
    summary = {"images": 0, "benign": 0, "malignant": 0}
    for number, (rgb, label) in enumerate(draw_labelled_images(count, seed, width, height, look)):
        name = ("benign", "malignant")[label]
        os.makedirs(os.path.join(directory, name), exist_ok=True)
        with open(os.path.join(directory, name, f"{number + 1:05d}.jpg"), "wb") as f:
            f.write(_jpeg_bytes(rgb))
        summary["images"] += 1
        summary[name] += 1
    return summary
