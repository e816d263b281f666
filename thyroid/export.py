"""Exports a fine-tuned classifier to TensorFlow Lite for phones and the web app.

    python -m thyroid.export --train_dir=DIR --output_dir=OUT [--quantize=none|int8]

Rebuilds the image -> P(malignant) graph of a ``finetune`` run (input float32 [1, S, S, 3]
with values 0..255, i.e. the resized scan crop; output ``probability`` [1]), restores the
latest checkpoint of ``--train_dir`` and converts it with ``TFLiteConverter.from_session``.
``--quantize=int8`` applies post-training full-integer quantization calibrated on ~100
training images; that model takes uint8 pixels directly and still outputs a float
probability. Writes ``model.tflite``, ``labels.txt`` and ``metadata.json`` (each atomically).

``--segment_dir=DIR`` (a segmentation model folder: the study's ``train/segment``, or a fold's
``segment``) also writes ``segment.tflite`` and ``segment.json`` beside the classifier;
``predict`` and the web app then return the nodule's outline and measurements.
"""

import dataclasses

from absl import flags

from thyroid import cli

cli.require_research_install("export")  # before the imports that need it

from thyroid.io_utils import json_text
from thyroid.deploy.export import ExportError, QUANTIZE_MODES, REPRESENTATIVE_COUNT, export_model

COMMAND = "export"
MAX_REPRESENTATIVE_COUNT = 10_000


def define_flags(fv):
    flags.DEFINE_string("train_dir", None, "A finetune training directory (run_config.json + "
                        "checkpoints) of mobilenet_v1 or efficientnet_lite0.", flag_values=fv)
    flags.DEFINE_string("output_dir", None, "Where model.tflite, labels.txt and metadata.json go.",
                        flag_values=fv)
    flags.DEFINE_enum("quantize", "none", QUANTIZE_MODES,
                      "none: float32 model; int8: full-integer post-training quantization "
                      "calibrated on training images.", flag_values=fv)
    flags.DEFINE_integer("representative_count", REPRESENTATIVE_COUNT,
                         "Training images used to calibrate int8 quantization.", lower_bound=1,
                         upper_bound=MAX_REPRESENTATIVE_COUNT, flag_values=fv)
    flags.DEFINE_string("segment_dir", None, "A segmentation model folder (segmentation.json + "
                        "decoder.npz) to export beside the classifier as segment.tflite.",
                        flag_values=fv)
    flags.mark_flags_as_required(["train_dir", "output_dir"], flag_values=fv)


def run(fv, args):
    del args
    from thyroid.training.segmentation import is_model_dir
    if fv.segment_dir and not is_model_dir(fv.segment_dir):
        raise cli.UsageError("segment_dir", fv.segment_dir, "not a segmentation model folder "
                             "(no segmentation.json)")
    from thyroid.deploy.segment import SegmentExportError, export_segmentation
    try:
        paths = dataclasses.asdict(export_model(fv.train_dir, fv.output_dir, fv.quantize,
                                                fv.representative_count))
        if fv.segment_dir:
            paths["segment"] = export_segmentation(fv.segment_dir, paths["output_dir"])
    except (ExportError, SegmentExportError) as error:
        cli.print_error(COMMAND, error)
        return cli.FAILURE_STATUS
    print(json_text(paths, indent=2))
    return 0


def main(argv=None):
    return cli.main(COMMAND, define_flags, run, argv)


if __name__ == "__main__":
    main()
