"""Predictions for image files with an exported TFLite model, with optional Grad-CAM overlays
drawn from the model's own ``cam`` output (the library behind ``python -m thyroid.predict``).
"""

import csv
import io
import os

from thyroid.datasets.images import DEFAULT_MAX_PIXELS, ImageError, is_image_file
from thyroid.deploy.tflite_model import ModelError, load_image_file
from thyroid.io_utils import atomic_write_text

CSV_COLUMNS = ("path", "probability", "risk", "spread", "label", "shift", "unusual", "error")


def expand_paths(paths):
    """Files as given; folders replaced by the image files below them (recursively, sorted).
    A folder without images stays in the list so that it gets an error row."""
    expanded = []
    for path in paths:
        if not os.path.isdir(path):
            expanded.append(path)
            continue
        found = []
        for folder, subfolders, names in os.walk(path):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            found += [os.path.join(folder, n) for n in sorted(names)
                      if not n.startswith(".") and is_image_file(n)]
        expanded += found or [path]
    return expanded


def _number(row, name):
    value = row.get(name)
    return "" if "error" in row or value is None else f"{value:.6f}"


def _flag(row, name):
    value = row.get(name)
    return "" if "error" in row or value is None else str(int(bool(value)))


def write_csv(results, csv_path):
    """One row per file: path, probability, risk (recalibrated), spread (a fold ensemble's
    SD of risks), label (name), shift (percent) and unusual (1 or 0; both empty for an export
    without a shift reference), error (empty when predicted)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in results:
        writer.writerow([row["file"], _number(row, "probability"), _number(row, "risk"),
                         _number(row, "spread"), row.get("label_name", ""),
                         _number(row, "shift"), _flag(row, "unusual"), row.get("error", "")])
    atomic_write_text(csv_path, buffer.getvalue())


NO_CAM = ("has no cam output (exported before the model drew its own Grad-CAM): export it "
          "again with python -m thyroid.export")


def check_gradcam(model):
    """Raises ModelError when the export cannot draw Grad-CAM maps."""
    if not model.has_cam:
        raise ModelError(f"{model.model_path}: {NO_CAM}")


def _gradcam_name(path, used):
    stem = os.path.splitext(os.path.basename(path))[0] or "image"
    name, index = f"{stem}.gradcam.png", 1
    while name in used:
        index += 1
        name = f"{stem}-{index}.gradcam.png"
    used.add(name)
    return name


def pixel_spacing(path):
    """(row mm, column mm) of a DICOM file whose header gives it, else None."""
    from thyroid.datasets.images import DICOM_EXTENSIONS
    if os.path.splitext(path)[1].lower() not in DICOM_EXTENSIONS:
        return None
    from thyroid.datasets import dicom
    try:
        return dicom.pixel_spacing(path)
    except ImageError:
        return None


def predict_files(model, paths, gradcam_dir=None, max_pixels=DEFAULT_MAX_PIXELS,
                  segmenter=None):
    """-> one dict per path: file, probability, label, label_name (or error); with
    ``gradcam_dir``, the path of the Grad-CAM overlay written there; with a ``segmenter``
    (``deploy.segment``) the nodule's outline and measurements too."""
    from thyroid.deploy.overlay import overlay, png_bytes
    from thyroid.io_utils import atomic_write_bytes
    results, used = [], set()
    for path in paths:
        row = {"file": path}
        try:
            rgb = load_image_file(path, max_pixels)
            prepared = model.prepare(rgb)
            prediction, heat = model.explain_prepared(prepared)
            row.update(prediction.as_dict())
        except ImageError as error:
            row["error"] = str(error)
            results.append(row)
            continue
        if segmenter is not None:
            same_crop = segmenter.crop == ("scan" if model.crop == "roi" else model.crop)
            row.update(segmenter.locate(rgb, prepared.box if same_crop else None,
                                        pixel_spacing(path)))
        if gradcam_dir is not None and heat is not None:
            out_path = os.path.join(gradcam_dir, _gradcam_name(path, used))
            atomic_write_bytes(out_path, png_bytes(overlay(rgb, heat, prepared.box)))
            row["gradcam"] = out_path
        results.append(row)
    return results


def _nodule_text(row):
    """The table's nodule column: its size, or why there is none."""
    if "nodule_found" not in row:
        return ""
    if not row["nodule_found"]:
        return "  no nodule found (scan field)"
    values = row["measurements"]
    if "width_mm" in values:
        return f"  nodule {values['width_mm']:.1f} x {values['height_mm']:.1f} mm"
    return f"  nodule {values['width_px']:.0f} x {values['height_px']:.0f} px"


UNUSUAL_NOTE = ("unusual: far from the development images; the answer is given, but "
                "nothing in the model's evaluation speaks for images like it")
NO_SHIFT_NOTE = ("This export carries no shift reference: nothing here says whether the image "
                 "resembles the images the model was developed on.")


def shift_warning(prediction):
    """The warning the web app shows on an unusual image, else None."""
    if not prediction.unusual:
        return None
    return (f"Unusual image (shift {prediction.shift:.1f} of 100): it lies farther from the "
            "images the model was developed on than almost all of them do. The answer above is "
            "still given, but nothing in the model's evaluation speaks for images like this "
            "one. Unusual does not mean wrong.")


def shift_note(prediction):
    """The line under the answer saying where the image lies (or that nothing says)."""
    if prediction.shift is None:
        return NO_SHIFT_NOTE
    return (f"Shift {prediction.shift:.1f} of 100: the image lies farther from the development "
            f"images than {prediction.shift:.1f} % of them do (unusual above 99).")


def _shift_text(row):
    """The table's shift: its value, and the warning on an unusual image."""
    if row.get("shift") is None:
        return ""
    return f"  shift {row['shift']:.1f}" + (f" ({UNUSUAL_NOTE})" if row.get("unusual") else "")


def format_table(results):
    """file, P(malignant), risk (with the fold ensemble's spread as +-SD), label, and the
    shift (with a warning on an unusual image) when the export carries a reference."""
    width = max([len("file")] + [len(r["file"]) for r in results])
    lines = [f"{'file':<{width}}  {'P(malignant)':>12}  {'risk':>14}  label"]
    for r in results:
        if "error" in r:
            lines.append(f"{r['file']:<{width}}  {'-':>12}  {'-':>14}  ERROR: {r['error']}")
            continue
        risk = f"{r['risk']:.4f}" + ("" if r.get("spread") is None else f"+-{r['spread']:.3f}")
        lines.append(f"{r['file']:<{width}}  {r['probability']:>12.4f}  {risk:>14}  "
                     f"{r['label_name']}" + _nodule_text(r) + _shift_text(r))
    return "\n".join(lines)
