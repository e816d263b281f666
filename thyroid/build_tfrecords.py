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

from absl import flags, logging

from thyroid import cli

cli.require_research_install("build_tfrecords")  # before the imports that need it

from thyroid.datasets import folders, images, swap
from thyroid.datasets.build import build
from thyroid.datasets.build_config import (MAX_AUGMENT_COPIES, MAX_SEED, MAX_SHARDS, PROTOCOLS,
                                           BuildConfig, BuildError, ConfigError)
from thyroid.datasets.sources import ReaderOptions, named_sources
from thyroid.datasets.workers import MAX_WORKERS, available_cores
from thyroid.output_guard import InputPath, check_output_dir
from thyroid.preprocessing.augmentation_kinds import AUGMENTATIONS

COMMAND = "build_tfrecords"


def define_source_flags(fv):
    flags.DEFINE_string("ddti_dir", None, "DDTI folder (<case>.xml + <case>_<k>.jpg).", flag_values=fv)
    flags.DEFINE_string("local_dir", None, "Local folder (<patient>/report.docx + images).",
                        flag_values=fv)
    flags.DEFINE_string("image_dir", None, "Folder of images per class, at any depth: "
                        "<root>/<class>/... or <root>/<split>/<class>/... (JPEG, PNG, BMP, "
                        "TIFF, DICOM).", flag_values=fv)
    flags.DEFINE_string("csv", None, "CSV with columns path,label and optional patient_id, "
                        "split, tirads; paths relative to the CSV's folder.", flag_values=fv)
    flags.DEFINE_string("class_map", None, "Extra class-folder / CSV label names, "
                        "name:0,name:1,... (benign, malignant, 0, 1 are always known).",
                        flag_values=fv)
    flags.DEFINE_string("patient_id_regex", None, "Regular expression applied to each image's "
                        "path below --image_dir; its 'patient' group (or first group, or the "
                        "match) is the patient id. Without it every image is its own patient.",
                        flag_values=fv)
    flags.DEFINE_bool("suspicious_as_malignant", False, "Label reports that are only suspicious "
                      "for malignancy (suspicious for, Bethesda V) malignant instead of "
                      "excluding them.", flag_values=fv)
    flags.DEFINE_string("diagnosis_table", None,
                        "JSON file {phrase: 0|1} extending the local reader's diagnosis table.",
                        flag_values=fv)
    flags.DEFINE_integer("max_pixels", images.DEFAULT_MAX_PIXELS, "Refuse images whose header "
                         "declares more pixels than this (checked before decoding), and image "
                         "files larger than 8 bytes per pixel of it (at least 16 MiB), checked "
                         "before reading.",
                         lower_bound=1, upper_bound=10**9, flag_values=fv)


def define_flags(fv):
    define_source_flags(fv)
    flags.DEFINE_string("output_dir", None, "Where shards, labels.txt and manifest.json go.",
                        flag_values=fv)
    flags.DEFINE_bool("evaluation_only", False, "Every labelled image to the test split, no "
                      "augmentation (an external validation set).", flag_values=fv)
    flags.DEFINE_enum("protocol", "patient", PROTOCOLS,
                      "patient: split by patient (no leakage); image: the paper's random "
                      "image split after augmentation (leaks patients).", flag_values=fv)
    flags.DEFINE_float("validation_fraction", 0.15, "Share of patients (or images) for validation.",
                       lower_bound=0.0, upper_bound=1.0, flag_values=fv)
    flags.DEFINE_float("test_fraction", 0.2, "Share of patients (or images) for test.",
                       lower_bound=0.0, upper_bound=1.0, flag_values=fv)
    flags.DEFINE_integer("augment_copies", 2, "Augmented copies per (training) image.",
                         lower_bound=0, upper_bound=MAX_AUGMENT_COPIES, flag_values=fv)
    flags.DEFINE_enum("augmentation", "standard", AUGMENTATIONS, "How copies are made: "
                      "standard (flip, rotation, grey noise) or ultrasound (also gain and "
                      "gamma, speckle, blur and resampling, depth-like zoom and shift, "
                      "calipers and text marks).", flag_values=fv)
    flags.DEFINE_enum("crop", "scan", images.CROP_MODES,
                      "scan: ultrasound field without text bands; roi: polygon box + margin; "
                      "none: whole image.", flag_values=fv)
    flags.DEFINE_integer("num_shards", 2, "TFRecord files per split.", lower_bound=1,
                         upper_bound=MAX_SHARDS, flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed for the split and augmentation.", lower_bound=0,
                         upper_bound=MAX_SEED, flag_values=fv)
    flags.DEFINE_integer("num_workers", available_cores(), "Processes that decode, crop, "
                         "augment and encode the images (default: the cores this process may "
                         "use). The shards are the same whatever the number.", lower_bound=1,
                         upper_bound=MAX_WORKERS, flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "Replace an existing dataset in --output_dir "
                      "(built beside it and swapped in when complete).", flag_values=fv)
    flags.mark_flag_as_required("output_dir", flag_values=fv)


def reader_options(fv):
    try:
        class_map = folders.parse_class_map(fv.class_map)
    except folders.ReaderError as error:
        raise cli.UsageError("class_map", fv.class_map, error) from error
    return ReaderOptions(diagnosis_table=fv.diagnosis_table,
                         suspicious_as_malignant=fv.suspicious_as_malignant,
                         class_map=class_map, patient_id_regex=fv.patient_id_regex)


def source_inputs(fv, prefix=""):
    """The source flags as ``InputPath``s (outputs must keep clear of them)."""
    return [InputPath(prefix + name, getattr(fv, prefix + name))
            for name in ("ddti_dir", "local_dir", "image_dir", "csv")]


def check_output(fv):
    """--output_dir resolved, or refused in one line before any work."""
    return check_output_dir("output_dir", fv.output_dir, source_inputs(fv),
                            is_ours=swap.holds_only_dataset_files)


def build_config(fv):
    """The BuildConfig the flags ask for, validated; a bad setting is a usage error naming its
    flag, before any work."""
    config = BuildConfig(
        output_dir=check_output(fv),
        sources=named_sources(ddti_dir=fv.ddti_dir, local_dir=fv.local_dir,
                              image_dir=fv.image_dir, csv=fv.csv),
        protocol=fv.protocol, validation_fraction=fv.validation_fraction,
        test_fraction=fv.test_fraction, augment_copies=fv.augment_copies,
        augmentation=fv.augmentation, crop=fv.crop,
        num_shards=fv.num_shards, seed=fv.seed, overwrite=fv.overwrite,
        evaluation_only=fv.evaluation_only, max_pixels=fv.max_pixels,
        reader_options=reader_options(fv), num_workers=fv.num_workers)
    try:
        return config.validate(check_paths=False)
    except ConfigError as error:
        raise cli.UsageError(error.flag, error.value, error.reason) from error


def run(fv, args):
    del args
    try:
        build(build_config(fv))
    except BuildError as error:
        logging.error("%s", error)
        cli.print_error(COMMAND, error)
        return cli.FAILURE_STATUS
    return 0


def main(argv=None):
    return cli.main(COMMAND, define_flags, run, argv)


if __name__ == "__main__":
    main()
