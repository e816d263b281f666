"""Builds train/validation/test TFRecord shards from DDTI and/or local folders.

    python -m thyroid.build_tfrecords --ddti_dir=D --local_dir=L --output_dir=OUT

``--protocol=patient`` (default) splits by patient, stratified by label, keeps patients that
share a byte-identical image together, and augments training images only.
``--protocol=image`` is the paper's protocol: augment every image, then split images at random;
it leaks patients across splits, and the manifest says so.
"""

from absl import flags, logging

from thyroid import cli
from thyroid.datasets import images
from thyroid.datasets.build import BuildError, PROTOCOLS, build

COMMAND = "build_tfrecords"
MAX_AUGMENT_COPIES = 100
MAX_SHARDS = 1000


def define_flags(fv):
    flags.DEFINE_string("ddti_dir", None, "DDTI folder (<case>.xml + <case>_<k>.jpg).", flag_values=fv)
    flags.DEFINE_string("local_dir", None, "Local folder (<patient>/report.docx + images).",
                        flag_values=fv)
    flags.DEFINE_string("output_dir", None, "Where shards, labels.txt and manifest.json go.",
                        flag_values=fv)
    flags.DEFINE_enum("protocol", "patient", PROTOCOLS,
                      "patient: split by patient (no leakage); image: the paper's random "
                      "image split after augmentation (leaks patients).", flag_values=fv)
    flags.DEFINE_float("validation_fraction", 0.15, "Share of patients (or images) for validation.",
                       lower_bound=0.0, upper_bound=0.9, flag_values=fv)
    flags.DEFINE_float("test_fraction", 0.2, "Share of patients (or images) for test.",
                       lower_bound=0.01, upper_bound=0.9, flag_values=fv)
    flags.DEFINE_integer("augment_copies", 2, "Augmented copies per (training) image.",
                         lower_bound=0, upper_bound=MAX_AUGMENT_COPIES, flag_values=fv)
    flags.DEFINE_enum("crop", "scan", images.CROP_MODES,
                      "scan: ultrasound field without text bands; roi: polygon box + margin; "
                      "none: whole image.", flag_values=fv)
    flags.DEFINE_integer("num_shards", 2, "TFRecord files per split.", lower_bound=1,
                         upper_bound=MAX_SHARDS, flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed for the split and augmentation.", lower_bound=0,
                         upper_bound=2**31 - 1, flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "Replace an existing dataset in --output_dir.",
                      flag_values=fv)
    flags.DEFINE_string("diagnosis_table", None,
                        "JSON file {phrase: 0|1} extending the local reader's diagnosis table.",
                        flag_values=fv)
    flags.mark_flag_as_required("output_dir", flag_values=fv)


def run(fv, args):
    del args
    if fv.validation_fraction + fv.test_fraction >= 1.0:
        raise cli.UsageError("test_fraction", fv.test_fraction,
                             "--validation_fraction + --test_fraction must leave images to train on")
    try:
        build(output_dir=fv.output_dir, ddti_dir=fv.ddti_dir, local_dir=fv.local_dir,
              protocol=fv.protocol, validation_fraction=fv.validation_fraction,
              test_fraction=fv.test_fraction, augment_copies=fv.augment_copies,
              crop=fv.crop, num_shards=fv.num_shards, seed=fv.seed,
              overwrite=fv.overwrite, diagnosis_table=fv.diagnosis_table)
    except BuildError as error:
        logging.error("%s", error)
        cli.print_error(COMMAND, error)
        return cli.FAILURE_STATUS
    return 0


def main(argv=None):
    return cli.main(COMMAND, define_flags, run, argv)


if __name__ == "__main__":
    main()
