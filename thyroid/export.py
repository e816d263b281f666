"""Exports a fine-tuned classifier to TensorFlow Lite for phones and the web app.

    python -m thyroid.export --train_dir=DIR --output_dir=OUT [--quantize=none|int8]

Rebuilds the image -> P(malignant) graph of a ``finetune`` run (input float32 [1, S, S, 3]
with values 0..255, i.e. the resized scan crop; output ``probability`` [1]), restores the
latest checkpoint of ``--train_dir`` and converts it with ``TFLiteConverter.from_session``.
``--quantize=int8`` applies post-training full-integer quantization calibrated on ~100
training images; that model takes uint8 pixels directly and still outputs a float
probability. Writes ``model.tflite``, ``labels.txt`` and ``metadata.json`` (each atomically).
"""

import dataclasses
import json
import sys

from absl import app, flags

from thyroid.deploy.export import ExportError, QUANTIZE_MODES, REPRESENTATIVE_COUNT, export_model

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("train_dir", None, "A finetune training directory (run_config.json + "
                        "checkpoints) of mobilenet_v1 or efficientnet_lite0.")
    flags.DEFINE_string("output_dir", None, "Where model.tflite, labels.txt and metadata.json go.")
    flags.DEFINE_enum("quantize", "none", QUANTIZE_MODES,
                      "none: float32 model; int8: full-integer post-training quantization "
                      "calibrated on training images.")
    flags.DEFINE_integer("representative_count", REPRESENTATIVE_COUNT,
                         "Training images used to calibrate int8 quantization.")
    flags.mark_flag_as_required("train_dir")
    flags.mark_flag_as_required("output_dir")


def main(argv):
    del argv
    try:
        paths = export_model(FLAGS.train_dir, FLAGS.output_dir, FLAGS.quantize,
                             FLAGS.representative_count)
    except (ExportError, FileNotFoundError, ValueError) as error:
        print(f"export: error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(dataclasses.asdict(paths), indent=2))
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
