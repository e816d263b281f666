"""Predicts P(malignant) for ultrasound images with an exported TFLite model.

    python -m thyroid.predict --model=OUT/model.tflite IMAGE_OR_FOLDER... [--json]
        [--gradcam=DIR] [--csv=FILE]

Folders are searched recursively for images.
Each image is cropped to the scan field and resized as in training (the crop is recorded in
metadata.json), then classified with the threshold from metadata.json. A file that cannot be
used gets an error line naming it and the reason; the others are still predicted and the exit
status is 1. ``--gradcam=DIR`` writes ``<name>.gradcam.png`` per image: a Grad-CAM overlay
computed from the TF model (metadata.json's train_dir) the TFLite file was exported from.
"""

import json
import os
import sys

from absl import app, flags

from thyroid.deploy import NOTICE
from thyroid.datasets.images import DEFAULT_MAX_PIXELS
from thyroid.deploy.predict import (expand_paths, format_table, load_gradcam, predict_files,
                                    write_csv)
from thyroid.deploy.tflite_model import ModelError, TFLiteModel

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model", None, "model.tflite (metadata.json beside it) or its folder.")
    flags.DEFINE_bool("json", False, "Print JSON instead of a table.")
    flags.DEFINE_string("gradcam", None, "Folder for Grad-CAM overlay PNGs (one per image).")
    flags.DEFINE_string("csv", None, "Also write FILE with one row per image: path, "
                        "probability, label, error.")
    flags.DEFINE_integer("max_pixels", DEFAULT_MAX_PIXELS, "Refuse images whose header declares "
                         "more pixels than this (checked before decoding).", lower_bound=1)
    flags.mark_flag_as_required("model")


def main(argv):
    paths = expand_paths(argv[1:])
    if not paths:
        print("predict: error: give one or more image files or folders", file=sys.stderr)
        return 2
    try:
        model = TFLiteModel.load(FLAGS.model)
        gradcam = None
        if FLAGS.gradcam:
            gradcam = load_gradcam(model)
            os.makedirs(FLAGS.gradcam, exist_ok=True)
    except ModelError as error:
        print(f"predict: error: {error}", file=sys.stderr)
        return 2
    results = predict_files(model, paths, gradcam, FLAGS.gradcam, FLAGS.max_pixels)
    if FLAGS.csv:
        write_csv(results, FLAGS.csv)
    failed = [r for r in results if "error" in r]
    if FLAGS.json:
        print(json.dumps({"model": model.model_path, "threshold": model.threshold,
                          "notice": NOTICE, "results": results}, indent=2))
    else:
        print(format_table(results))
        print(f"threshold {model.threshold:g}. {NOTICE}")
    for r in failed:
        print(f"predict: error: {r['file']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
