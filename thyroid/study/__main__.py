"""The whole study in one command: data, shards, checkpoints, the rows, report.

    python -m thyroid.study            # what ./run_all.sh runs
    python -m thyroid.study --ddti_dir=../shared/data/ddti --protocol=image

With no data flags it generates the synthetic default. Each row is cross-validated
over patient-grouped folds (--cv_folds, default 5; 3 with --quick; 0 = one split); a row whose ImageNet checkpoint is missing is reported
as skipped with the command that fixes it (or runs from random weights with
--allow_random_init, labelled so). Rows 1-11 run by default; the localisation rows 12 and 13
(docs/LOCALISATION.md) run when --rows names them. The log ends with the summary's path.
"""

import os
import signal

from absl import flags, logging

from thyroid import cli

cli.require_research_install("study")  # before the imports that need it

from thyroid.output_guard import InputPath, check_name_component, check_output_dir
from thyroid.preprocessing.augmentation_kinds import AUGMENTATIONS
from thyroid.datasets.build import PROTOCOLS
from thyroid.datasets.sources import check_labelled, check_sources, named_sources, prefixed_flags
from thyroid.stats.operating_point import operating_point_flag_checker
from thyroid.study.config import FINAL_MODELS, RECALIBRATE_CHOICES

COMMAND = "study"
MAX_CASES = 100_000
MAX_AUGMENT_COPIES = 100
MAX_FOLDS = 100
MAX_REPEATS = 100
MAX_CPUS, MAX_GPUS, MAX_RETRIES = 1024, 64, 100
EXECUTORS = ("local", "ray")


def define_data_flags(fv):
    flags.DEFINE_string("ddti_dir", None, "DDTI folder (XML + JPEG); default: synthetic data.",
                        flag_values=fv)
    flags.DEFINE_string("local_dir", None, "Local dataset folder (<patient>/report.docx + images).",
                        flag_values=fv)
    flags.DEFINE_string("image_dir", None, "Folder of images (DICOM too) in one folder per class "
                        "(benign/malignant or 0/1), alone or beside the other data flags.",
                        flag_values=fv)
    flags.DEFINE_string("csv", None, "CSV of path,label[,patient_id] (paths relative to the CSV; "
                        "DICOM too), alone or beside the other data flags.", flag_values=fv)
    flags.DEFINE_enum("protocol", "patient", PROTOCOLS, "patient: leak-free split; image: the "
                      "paper's image-level split (leaks patients).", flag_values=fv)
    flags.DEFINE_integer("augment_copies", 2, "Augmented copies per training image.", lower_bound=0,
                         upper_bound=MAX_AUGMENT_COPIES, flag_values=fv)
    flags.DEFINE_enum("augment", "standard", AUGMENTATIONS, "standard: each training image's "
                      "copies are flipped, rotated and noised; ultrasound: besides, the rows "
                      "that train on copies are fitted again on copies that also change gain, "
                      "speckle, blur, resolution and depth and add calipers and text, on the "
                      "same folds, and the report compares the two row by row.",
                      flag_values=fv)
    flags.DEFINE_boolean("tta", False, "Test-time augmentation: every row's predictions also as "
                         "the mean over the image, its mirror and both at a 0.85 centre zoom, "
                         "reported beside the plain ones (threshold and map chosen on the inner "
                         "validation's TTA scores).", flag_values=fv)
    flags.DEFINE_boolean("quick", False, "Tiny images, few steps, small synthetic set (for CI).",
                         flag_values=fv)
    flags.DEFINE_integer("num_cases", 0, "Synthetic cases (0: 120; 48 with --quick).",
                         lower_bound=0, upper_bound=MAX_CASES, flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed for data, splits and training.", lower_bound=0,
                         upper_bound=2**31 - 1, flag_values=fv)


def define_run_flags(fv):
    flags.DEFINE_string("output_dir", "results", "Runs go to <output_dir>/<run_name>/.",
                        flag_values=fv)
    flags.DEFINE_string("run_name", None, "One folder name (default: a timestamp plus the data "
                        "source). An existing run is never reused without --resume.",
                        flag_values=fv)
    flags.DEFINE_boolean("resume", False, "Continue the run named by --run_name, or the newest "
                         "unfinished run under --output_dir with the same settings: jobs whose "
                         "results are committed are not run again.", flag_values=fv)
    flags.DEFINE_string("report_only", None, "Write the report of this finished run folder "
                        "again from its result files, and nothing else.", flag_values=fv)
    flags.DEFINE_boolean("plan_only", False, "Write the run folder's plan (plan.json: these "
                         "settings and every job) and stop; run its jobs with python -m "
                         "thyroid.study.job (docs/STUDY.md).", flag_values=fv)
    flags.DEFINE_string("checkpoint_dir", "checkpoints", "Where ImageNet checkpoints live.",
                        flag_values=fv)
    flags.DEFINE_boolean("allow_random_init", False, "Run rows without a checkpoint from random "
                         "weights.", flag_values=fv)
    flags.DEFINE_boolean("download_checkpoints", True, "Try to fetch missing official checkpoints "
                         "(skipped quietly when offline).", flag_values=fv)
    flags.DEFINE_boolean("export", True, "Export the best mobile model of the run to TFLite.",
                         flag_values=fv)


def define_validation_flags(fv):
    flags.DEFINE_list("crop_variants", [], "Robustness to the frame: score every fold's test "
                      "images again cut with these crops (band: text band kept; frame: the "
                      "whole frame; fixed: a fixed box instead of the detected field) and "
                      "report how far each row's probability moves.", flag_values=fv)
    flags.DEFINE_list("rows", [], "Comma-separated row ids to run (default: 1-11; the "
                      "localisation rows 12 and 13 run only when named).", flag_values=fv)
    flags.DEFINE_integer("cv_folds", None, "Patient-grouped cross-validation folds (default 5; "
                         "3 with --quick; 0: one train/validation/test split).", lower_bound=0,
                         upper_bound=MAX_FOLDS, flag_values=fv)
    flags.DEFINE_integer("cv_repeats", 1, "Repeats of the cross-validation with fresh folds.",
                         lower_bound=1, upper_bound=MAX_REPEATS, flag_values=fv)
    flags.DEFINE_float("inner_validation_fraction", 0.15, "Share of each fold's training "
                       "patients (per class) held out as its inner validation set, where early "
                       "stopping, the threshold and the recalibration map are chosen.",
                       lower_bound=0.05, upper_bound=0.5, flag_values=fv)
    flags.DEFINE_string("operating_point", "youden", "Threshold rule on each fold's inner "
                        "validation predictions: youden, sensitivity:X, specificity:X or fixed:T.",
                        flag_values=fv)
    flags.register_validator("operating_point", operating_point_flag_checker, flag_values=fv)
    flags.DEFINE_enum("recalibrate", "logistic", RECALIBRATE_CHOICES, "logistic: per fold, map "
                      "each row's score to a risk by a logistic fit on that fold's inner-"
                      "validation predictions (Platt's map for the SVM rows); none: risk = score.",
                      flag_values=fv)
    flags.DEFINE_string("init_from", None, "A previous run folder (its export: one fine-tuned "
                        "EfficientNet-Lite0 model): adds row 14, row 10 started from that model "
                        "instead of ImageNet, beside row 10 on the same folds. Refused when "
                        "this study's images include ones that run was developed on.",
                        flag_values=fv)
    flags.DEFINE_enum("final_model", "refit", FINAL_MODELS, "What scores external sets and is "
                      "exported: refit (one model on all development data) or folds (the mean "
                      "of the fold models' recalibrated risks; both are reported on external "
                      "sets).", flag_values=fv)


def define_external_flags(fv):
    flags.DEFINE_string("external_ddti_dir", None, "External DDTI folder: after cross-validation "
                        "each row is refitted on all development data and scored on it.",
                        flag_values=fv)
    flags.DEFINE_string("external_local_dir", None, "External local-dataset folder (as "
                        "--external_ddti_dir).", flag_values=fv)
    flags.DEFINE_string("external_image_dir", None, "External folder of images per class "
                        "(<root>/[<split>/]<benign|malignant>/..., as build_tfrecords "
                        "--image_dir).", flag_values=fv)
    flags.DEFINE_string("external_csv", None, "External CSV of path,label[,patient_id] (as "
                        "build_tfrecords --csv).", flag_values=fv)


def define_executor_flags(fv):
    flags.DEFINE_enum("executor", "local", EXECUTORS, "local: the jobs one after another in "
                      "this process; ray: each job a Ray task, across the cores, GPUs and "
                      "machines of a Ray cluster (pip install -e '.[ray]').", flag_values=fv)
    flags.DEFINE_string("ray_address", None, "HOST:PORT of an existing Ray cluster's head to "
                        "join (default: $RAY_ADDRESS, else Ray starts here for the study); "
                        "needs --executor=ray.",
                        flag_values=fv)
    flags.DEFINE_float("cpus_per_job", None, "CPU threads per job (default: local: "
                       "TensorFlow's own choice; ray: 1).", lower_bound=0.0,
                       upper_bound=MAX_CPUS, flag_values=fv)
    flags.DEFINE_float("gpus_per_job", 0.0, "GPUs per job under --executor=ray; fractions "
                       "share one (0.5: two jobs per GPU).", lower_bound=0.0, upper_bound=MAX_GPUS,
                       flag_values=fv)
    flags.DEFINE_integer("max_job_retries", 2, "Retries of a Ray task whose worker died.",
                         lower_bound=0, upper_bound=MAX_RETRIES, flag_values=fv)


def define_flags(fv):
    define_executor_flags(fv)
    define_data_flags(fv)
    define_run_flags(fv)
    define_validation_flags(fv)
    define_external_flags(fv)


def parse_rows(values, row_ids):
    try:
        rows = tuple(sorted({int(value) for value in values}))
    except ValueError:
        rows = None
    if rows is None or not set(rows) <= set(row_ids):
        raise cli.UsageError("rows", ",".join(values), "row ids are " + ",".join(map(str, row_ids)))
    return rows


def check_folder(flag, path):
    if path and not os.path.isdir(path):
        raise cli.UsageError(flag, path, "no such folder")


def check_outputs(fv):
    """--output_dir and --run_name before any work: runs go to a new folder of one name."""
    inputs = [InputPath(name, getattr(fv, name)) for name in (
        "ddti_dir", "local_dir", "image_dir", "csv", "external_ddti_dir", "external_local_dir",
        "external_image_dir", "external_csv", "init_from")]
    check_output_dir("output_dir", fv.output_dir, inputs, container=True)
    if fv.run_name is not None:
        check_name_component("run_name", fv.run_name)


def _absolute(path):
    return os.path.abspath(path) if path else path


def external_sources(fv):
    """{source kind: absolute path} of the external flags given."""
    return {kind: os.path.abspath(path) for kind, path in (
        ("ddti", fv.external_ddti_dir), ("local", fv.external_local_dir),
        ("folders", fv.external_image_dir), ("csv", fv.external_csv)) if path}


def check_flags(fv):
    """Every flag the study reads, before any work; errors name the flag typed. -> the
    study's settings, validated (``StudyConfig.validate``: the rules between settings)."""
    for name in ("ddti_dir", "local_dir", "image_dir", "external_ddti_dir", "external_local_dir",
                 "external_image_dir"):
        check_folder(name, getattr(fv, name))
    for name in ("csv", "external_csv"):
        if getattr(fv, name) and not os.path.isfile(getattr(fv, name)):
            raise cli.UsageError(name, getattr(fv, name), "no such file")
    check_outputs(fv)
    external = external_sources(fv)
    study = study_config(fv, external).validate()  # before any source is read
    if study.init_from is not None:
        from thyroid.study.previous_run import previous_run
        previous_run(study.init_from)  # a run whose exported model row 14 can start from
    check_sources(external, prefixed_flags("external_"))
    development = named_sources(ddti_dir=fv.ddti_dir, local_dir=fv.local_dir,
                                image_dir=fv.image_dir, csv=fv.csv)
    check_labelled({kind: os.path.abspath(path) for kind, path in development.items()})
    check_labelled(external, flag_names=prefixed_flags("external_"))
    return study


def study_config(fv, external):
    from thyroid.study.config import StudyConfig
    from thyroid.study.rows import ROW_IDS
    return StudyConfig(
        output_dir=_absolute(fv.output_dir), run_name=fv.run_name,
        ddti_dir=_absolute(fv.ddti_dir), local_dir=_absolute(fv.local_dir),
        image_dir=_absolute(fv.image_dir), csv=_absolute(fv.csv),
        protocol=fv.protocol, augment_copies=fv.augment_copies,
        checkpoint_dir=_absolute(fv.checkpoint_dir), allow_random_init=fv.allow_random_init,
        quick=fv.quick, num_cases=fv.num_cases, rows=parse_rows(fv.rows, ROW_IDS),
        download_checkpoints=fv.download_checkpoints, export=fv.export, seed=fv.seed,
        cv_folds=fv.cv_folds, cv_repeats=fv.cv_repeats, operating_point=fv.operating_point,
        inner_validation_fraction=fv.inner_validation_fraction,
        external=tuple(sorted(external.items())), recalibrate=fv.recalibrate,
        final_model=fv.final_model,
        crop_variants=tuple(dict.fromkeys(fv.crop_variants)), augment=fv.augment, tta=fv.tta,
        init_from=_absolute(fv.init_from))


def check_report_only(fv):
    """--report_only writes a finished run's report from its files, with that run's settings:
    any other study flag given beside it could not be honoured, so it is refused, not ignored."""
    own = flags.FlagValues()
    define_flags(own)
    given = sorted(name for name in own if name != "report_only" and fv[name].present)
    if given:
        raise cli.UsageError(given[0], fv[given[0]].value, (
            "cannot be used with --report_only, which reports a finished run with its own "
            "settings"))


def run(fv, args):
    del args
    from thyroid.study import driver
    if fv.report_only is not None:
        check_report_only(fv)
        print(f"summary: {driver.report_only(fv.report_only)}")
        return 0
    study = check_flags(fv)
    if fv.plan_only:
        if fv.resume:
            raise cli.UsageError("plan_only", "true", "a resumed run has its plan already; "
                                 "drop --resume")
        run_dir = driver.plan_only(study)
        print(f"plan: {os.path.join(run_dir, 'plan.json')}")
        return 0
    if study.protocol != "patient" and study.cv_folds:
        logging.warning("protocol=%s: cross-validation needs the patient protocol; running the "
                        "single split", study.protocol)
    flags.FLAGS.alsologtostderr = True  # progress on the console, the full log in the run folder
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"summary: {driver.run_study(study, make_executor(fv), resume=fv.resume)}")
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def make_executor(fv):
    """The executor the flags ask for (Ray is imported only when asked for)."""
    from thyroid.study.resources import JobResources
    if fv.executor == "local":
        if fv.gpus_per_job:
            raise cli.UsageError("gpus_per_job", fv.gpus_per_job, "needs --executor=ray")
        if fv.ray_address is not None:
            raise cli.UsageError("ray_address", fv.ray_address, "needs --executor=ray")
        from thyroid.study.executor import LocalExecutor
        return LocalExecutor(JobResources(fv.cpus_per_job) if fv.cpus_per_job else None)
    from thyroid.study.ray_executor import RayExecutor, RayOptions
    return RayExecutor(RayOptions(address=fv.ray_address, cpus_per_job=fv.cpus_per_job or 1.0,
                                  gpus_per_job=fv.gpus_per_job,
                                  max_retries=fv.max_job_retries))


def main(argv=None):
    return cli.main(COMMAND, define_flags, run, argv)


if __name__ == "__main__":
    main()
