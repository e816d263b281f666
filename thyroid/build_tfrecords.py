"""Builds train/validation/test TFRecord shards from DDTI and/or local folders.

    python -m thyroid.build_tfrecords --ddti_dir=D --local_dir=L --output_dir=OUT

``--protocol=patient`` (default) splits by patient, stratified by label, keeps patients that
share a byte-identical image together, and augments training images only.
``--protocol=image`` is the paper's protocol: augment every image, then split images at random;
it leaks patients across splits, and the manifest says so.
"""

import sys

from absl import app, flags, logging

from thyroid.datasets import images
from thyroid.datasets.build import BuildError, PROTOCOLS, build

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("ddti_dir", None, "DDTI folder (<case>.xml + <case>_<k>.jpg).")
    flags.DEFINE_string("local_dir", None, "Local folder (<patient>/report.docx + images).")
    flags.DEFINE_string("output_dir", None, "Where shards, labels.txt and manifest.json go.")
    flags.DEFINE_enum("protocol", "patient", PROTOCOLS,
                      "patient: split by patient (no leakage); image: the paper's random "
                      "image split after augmentation (leaks patients).")
    flags.DEFINE_float("validation_fraction", 0.15, "Share of patients (or images) for validation.")
    flags.DEFINE_float("test_fraction", 0.2, "Share of patients (or images) for test.")
    flags.DEFINE_integer("augment_copies", 2, "Augmented copies per (training) image.")
    flags.DEFINE_enum("crop", "scan", images.CROP_MODES,
                      "scan: ultrasound field without text bands; roi: polygon box + margin; "
                      "none: whole image.")
    flags.DEFINE_integer("num_shards", 2, "TFRecord files per split.")
    flags.DEFINE_integer("seed", 0, "Seed for the split and augmentation.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing dataset in --output_dir.")
    flags.DEFINE_string("diagnosis_table", None,
                        "JSON file {phrase: 0|1} extending the local reader's diagnosis table.")
    flags.mark_flag_as_required("output_dir")


def main(argv):
    del argv
    try:
        build(output_dir=FLAGS.output_dir, ddti_dir=FLAGS.ddti_dir, local_dir=FLAGS.local_dir,
              protocol=FLAGS.protocol, validation_fraction=FLAGS.validation_fraction,
              test_fraction=FLAGS.test_fraction, augment_copies=FLAGS.augment_copies,
              crop=FLAGS.crop, num_shards=FLAGS.num_shards, seed=FLAGS.seed,
              overwrite=FLAGS.overwrite, diagnosis_table=FLAGS.diagnosis_table)
    except BuildError as error:
        logging.error("%s", error)
        print(f"build_tfrecords: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
