"""Builds train/validation/test TFRecord shards from any mix of sources.

    python -m thyroid.build_tfrecords --ddti_dir=D --local_dir=L --output_dir=OUT
    python -m thyroid.build_tfrecords --image_dir=ROOT --patient_id_regex='^[^/]+/[^/]+/(\\w+)_'
    python -m thyroid.build_tfrecords --csv=list.csv --evaluation_only --output_dir=EXTERNAL

``--protocol=patient`` (default) splits by patient, stratified by label, keeps patients that
share a byte-identical image together, and augments training images only.
``--protocol=image`` is the paper's protocol: augment every image, then split images at random;
it leaks patients across splits, and the manifest says so.
``--evaluation_only`` (or ``--test_fraction=1 --validation_fraction=0``) puts every labelled
image in the test split, unaugmented, for external validation.
"""

import sys

from absl import app, flags, logging

from thyroid.datasets import folders, images
from thyroid.datasets.build import BuildError, PROTOCOLS, build
from thyroid.datasets.sources import ReaderOptions

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("ddti_dir", None, "DDTI folder (<case>.xml + <case>_<k>.jpg).")
    flags.DEFINE_string("local_dir", None, "Local folder (<patient>/report.docx + images).")
    flags.DEFINE_string("image_dir", None, "Folder of images per class, at any depth: "
                        "<root>/<class>/... or <root>/<split>/<class>/... (JPEG, PNG, BMP, "
                        "TIFF, DICOM).")
    flags.DEFINE_string("csv", None, "CSV with columns path,label and optional patient_id, "
                        "split, tirads; paths relative to the CSV's folder.")
    flags.DEFINE_string("class_map", None, "Extra class-folder / CSV label names, "
                        "name:0,name:1,... (benign, malignant, 0, 1 are always known).")
    flags.DEFINE_string("patient_id_regex", None, "Regular expression applied to each image's "
                        "path below --image_dir; its 'patient' group (or first group, or the "
                        "match) is the patient id. Without it every image is its own patient.")
    flags.DEFINE_bool("suspicious_as_malignant", False, "Label reports that are only suspicious "
                      "for malignancy (suspicious for, Bethesda V) malignant instead of "
                      "excluding them.")
    flags.DEFINE_bool("evaluation_only", False, "Every labelled image to the test split, no "
                      "augmentation (an external validation set).")
    flags.DEFINE_integer("max_pixels", images.DEFAULT_MAX_PIXELS, "Refuse images whose header "
                         "declares more pixels than this (checked before decoding).",
                         lower_bound=1)
    flags.DEFINE_string("output_dir", None, "Where shards, labels.txt and manifest.json go.")
    flags.DEFINE_enum("protocol", "patient", PROTOCOLS,
                      "patient: split by patient (no leakage); image: the paper's random "
                      "image split after augmentation (leaks patients).")
    flags.DEFINE_float("validation_fraction", 0.15, "Share of patients (or images) for "
                       "validation.", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_float("test_fraction", 0.2, "Share of patients (or images) for test.",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("augment_copies", 2, "Augmented copies per (training) image.",
                         lower_bound=0)
    flags.DEFINE_enum("crop", "scan", images.CROP_MODES,
                      "scan: ultrasound field without text bands; roi: polygon box + margin; "
                      "none: whole image.")
    flags.DEFINE_integer("num_shards", 2, "TFRecord files per split.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed for the split and augmentation.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing dataset in --output_dir "
                      "(built beside it and swapped in when complete).")
    flags.DEFINE_string("diagnosis_table", None,
                        "JSON file {phrase: 0|1} extending the local reader's diagnosis table.")
    flags.mark_flag_as_required("output_dir")


def reader_options_from_flags():
    try:
        class_map = folders.parse_class_map(FLAGS.class_map)
    except folders.ReaderError as error:
        raise BuildError(str(error)) from error
    return ReaderOptions(diagnosis_table=FLAGS.diagnosis_table,
                         suspicious_as_malignant=FLAGS.suspicious_as_malignant,
                         class_map=class_map, patient_id_regex=FLAGS.patient_id_regex)


def main(argv):
    del argv
    try:
        build(output_dir=FLAGS.output_dir, ddti_dir=FLAGS.ddti_dir, local_dir=FLAGS.local_dir,
              image_dir=FLAGS.image_dir, csv_path=FLAGS.csv,
              reader_options=reader_options_from_flags(), evaluation_only=FLAGS.evaluation_only,
              max_pixels=FLAGS.max_pixels, protocol=FLAGS.protocol,
              validation_fraction=FLAGS.validation_fraction, test_fraction=FLAGS.test_fraction,
              augment_copies=FLAGS.augment_copies, crop=FLAGS.crop, num_shards=FLAGS.num_shards,
              seed=FLAGS.seed, overwrite=FLAGS.overwrite)
    except BuildError as error:
        logging.error("%s", error)
        print(f"build_tfrecords: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
