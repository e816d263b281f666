"""Predicts P(malignant) for ultrasound images with an exported TFLite model.

    python -m thyroid.predict --model=OUT/model.tflite IMAGE_OR_FOLDER... [--json]
        [--gradcam=DIR] [--csv=FILE]

Folders are searched recursively for images.
Each image is cropped to the scan field and resized as in training (the crop is recorded in
metadata.json), then classified with the threshold from metadata.json (on P(malignant)); the
risk beside it is P(malignant) through the recalibration map metadata.json carries, and a
fold ensemble adds the SD of its fold models' risks. A file that cannot be
used gets an error line naming it and the reason; the others are still predicted and the exit
status is 1. ``--gradcam=DIR`` writes ``<name>.gradcam.png`` per image: a Grad-CAM overlay
of the map the exported model draws itself (its ``cam`` output; the export folder is all it
needs, no TensorFlow).
When the export holds a segmentation network (``segment.tflite`` beside ``model.tflite``), each
answer also carries ``outline`` (the nodule's polygon in pixels of the input image), ``outlines``
(every nodule view), ``nodule_box`` and ``measurements`` (pixels; millimetres too where a DICOM
gives its pixel spacing); when nothing is found, ``nodule_found`` is false and ``outline_note``
says that the scan field stands for the nodule. The table's last line and the JSON's
``label_meaning`` and ``threshold_source`` say what the number is (the risk of a TIRADS 4a or
above rating for a model trained on DDTI labels, a probability of malignancy for one trained on
diagnoses, neutral wording for an export that does not record it) and where the threshold
came from (metadata.json).
An export that carries a shift reference (``shift_reference.npz``) adds ``shift`` to every
answer (percent: how many development images lie nearer the development images than this one)
and ``unusual`` (shift above 99: far from the development images, not necessarily wrong; the
table warns); without one both are null (empty in the CSV).
"""

import os

from absl import flags

from thyroid import cli
from thyroid.deploy import NOTICE
from thyroid.deploy.answer_wording import AnswerWording
from thyroid.datasets.images import DEFAULT_MAX_PIXELS
from thyroid.deploy.predict import (check_gradcam, expand_paths, format_table, predict_files,
                                    write_csv)
from thyroid.deploy.segment import TFLiteSegmenter
from thyroid.deploy.tflite_model import ModelError, TFLiteModel
from thyroid.io_utils import json_text

COMMAND = "predict"


def define_flags(fv):
    flags.DEFINE_string("model", None, "model.tflite (metadata.json beside it) or its folder.",
                        flag_values=fv)
    flags.DEFINE_bool("json", False, "Print JSON instead of a table.", flag_values=fv)
    flags.DEFINE_string("gradcam", None, "Folder for Grad-CAM overlay PNGs (one per image).",
                        flag_values=fv)
    flags.DEFINE_string("csv", None, "Also write FILE with one row per image: path, "
                        "probability, risk, spread, label, shift, unusual, error.",
                        flag_values=fv)
    flags.DEFINE_integer("max_pixels", DEFAULT_MAX_PIXELS, "Refuse images whose header declares "
                         "more pixels than this (checked before decoding).", lower_bound=1,
                         upper_bound=10**9, flag_values=fv)
    flags.mark_flag_as_required("model", flag_values=fv)


def run(fv, argv):
    paths = expand_paths(argv[1:])
    if not paths:
        cli.print_error(COMMAND, "give one or more image files or folders")
        return cli.USAGE_STATUS
    try:
        model = TFLiteModel.load(fv.model)
        segmenter = TFLiteSegmenter.beside(model.model_dir)
        if fv.gradcam:
            check_gradcam(model)
            os.makedirs(fv.gradcam, exist_ok=True)
    except ModelError as error:
        cli.print_error(COMMAND, error)
        return cli.USAGE_STATUS
    results = predict_files(model, paths, fv.gradcam, fv.max_pixels, segmenter)
    if fv.csv:
        write_csv(results, fv.csv)
    failed = [r for r in results if "error" in r]
    wording = AnswerWording.from_metadata(model.metadata, model.threshold)
    if fv.json:
        print(json_text({"model": model.model_path, "threshold": model.threshold,
                         "threshold_scale": model.metadata.get("threshold_scale"),
                         **wording.json_fields(),
                         "segmentation": segmenter.model_path if segmenter else None,
                         "shift_reference": model.shift_reference is not None,
                         "notice": NOTICE, "results": results}, indent=2))
    else:
        print(format_table(results))
        print(f"{wording.summary_line(model.is_ensemble)} {NOTICE}")
    for r in failed:
        cli.print_error(COMMAND, f"{r['file']}: {r['error']}")
    return cli.FAILURE_STATUS if failed else 0


def main(argv=None):
    return cli.main(COMMAND, define_flags, run, argv)


if __name__ == "__main__":
    main()
