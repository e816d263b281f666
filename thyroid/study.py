"""The whole study in one command: data, shards, checkpoints, ten rows, report.

    python -m thyroid.study            # what ./run_all.sh runs
    python -m thyroid.study --ddti_dir=../shared/data/ddti --protocol=image

With no data flags it generates the synthetic default. Each row trains and is
evaluated on the test split; a row whose ImageNet checkpoint is missing is reported
as skipped with the command that fixes it (or runs from random weights with
--allow_random_init, labelled so). The log ends with the summary's path.
"""

import dataclasses
import datetime
import os
import platform
import time
import traceback

from absl import app, flags, logging

from thyroid.datasets import build, synthetic
from thyroid.evaluation import paper, report
from thyroid.checkpoints.convert import convert
from thyroid.checkpoints.download import DownloadError, download
from thyroid.nets import default_checkpoint_path, get_network
from thyroid.evaluation.runs import evaluate_run
from thyroid.training.run import MissingCheckpointError, TrainOptions, fix_command, train

FLAGS = flags.FLAGS
flags.DEFINE_string("ddti_dir", None, "DDTI folder (XML + JPEG); default: synthetic data.")
flags.DEFINE_string("local_dir", None, "Local dataset folder (<patient>/report.docx + images).")
flags.DEFINE_enum("protocol", "patient", ["patient", "image"],
                  "patient: leak-free split; image: the paper's image-level split (leaks patients).")
flags.DEFINE_integer("augment_copies", 2, "Augmented copies per training image.")
flags.DEFINE_string("output_dir", "results", "Runs go to <output_dir>/<run_name>/.")
flags.DEFINE_string("run_name", None, "Default: a timestamp plus the data source. Re-running "
                    "with an existing run name resumes its rows from their checkpoints.")
flags.DEFINE_string("checkpoint_dir", "checkpoints", "Where ImageNet checkpoints live.")
flags.DEFINE_boolean("allow_random_init", False, "Run rows without a checkpoint from random weights.")
flags.DEFINE_boolean("quick", False, "Tiny images, few steps, small synthetic set (for CI).")
flags.DEFINE_integer("num_cases", 0, "Synthetic cases (default 200; 48 with --quick).")
flags.DEFINE_string("rows", "", "Comma-separated row ids to run (default: all ten).")
flags.DEFINE_boolean("download_checkpoints", True,
                     "Try to fetch missing official checkpoints (skipped quietly when offline).")
flags.DEFINE_boolean("export", True, "Export the best mobile model of the run to TFLite.")
flags.DEFINE_integer("seed", 0, "Seed for data, splits and training.")


@dataclasses.dataclass(frozen=True)
class RowSettings:
    image_size: int
    num_epochs: float
    batch_size: int = 32


# Image sizes and epochs per (model, mode). Full runs use each net's own input size.
FULL_SETTINGS = {
    ("small_cnn", "scratch"): RowSettings(128, 40),
    ("vgg_16", "bottleneck_svm"): RowSettings(224, 1),
    ("vgg_16", "bottleneck_fc"): RowSettings(224, 60),
    ("vgg_16", "finetune"): RowSettings(224, 10),
    ("inception_v3", "bottleneck_svm"): RowSettings(299, 1),
    ("inception_v3", "bottleneck_fc"): RowSettings(299, 60),
    ("inception_v3", "finetune"): RowSettings(299, 3, 16),
    ("efficientnet_lite0", "bottleneck_svm"): RowSettings(224, 1),
    ("efficientnet_lite0", "bottleneck_fc"): RowSettings(224, 60),
    ("efficientnet_lite0", "finetune"): RowSettings(224, 8, 16),
}
QUICK_SIZES = {"small_cnn": 32, "vgg_16": 32, "inception_v3": 75, "efficientnet_lite0": 64}


def row_settings(model, mode, quick):
    settings = FULL_SETTINGS[(model, mode)]
    if quick:
        return RowSettings(QUICK_SIZES[model], min(settings.num_epochs, 2), 16)
    return settings


def prepare_data(run_dir, quick, seed):
    """(ddti_dir, local_dir, description): the user's folders or freshly generated synthetic ones."""
    if FLAGS.ddti_dir or FLAGS.local_dir:
        return FLAGS.ddti_dir, FLAGS.local_dir, ", ".join(
            f"{name} {path}" for name, path in (("DDTI", FLAGS.ddti_dir), ("local", FLAGS.local_dir)) if path)
    num_cases = FLAGS.num_cases or (48 if quick else 200)
    data_dir = os.path.join(run_dir, "synthetic")
    size = {"width": 280, "height": 180} if quick else {}
    synthetic.generate(data_dir, num_cases=num_cases, seed=seed, **size)
    return (os.path.join(data_dir, "ddti"), os.path.join(data_dir, "local"),
            f"synthetic ({num_cases} DDTI-style cases + local-style patients, seed {seed})")


def prepare_checkpoints(checkpoint_dir, models, try_download):
    """Converts EfficientNet-Lite0 when missing; fetches official checkpoints when online."""
    for model in models:
        spec = get_network(model)
        if spec.checkpoint is None or default_checkpoint_path(spec, checkpoint_dir)[1]:
            continue
        if spec.checkpoint.url is None:
            logging.info("converting the %s ImageNet weights into %s", model, checkpoint_dir)
            convert(model, checkpoint_dir)
        elif try_download:
            try:
                download(model, checkpoint_dir, timeout=5)
            except DownloadError as error:
                logging.warning("%s", error)
                logging.warning("no network: rows that need official checkpoints will be skipped")
                try_download = False  # one failure is enough to know we are offline


def run_row(row, dataset_dir, run_dir, quick, seed):
    row_id, model, mode, label = row
    settings = row_settings(model, mode, quick)
    train_dir = os.path.join(run_dir, "train", f"{row_id:02d}_{model}_{mode}")
    entry = {"row_id": row_id, "model": model, "mode": mode, "label": label, "status": "ok",
             "checkpoint": None, "note": "", "train_seconds": None, "metrics": None}
    options = TrainOptions(model=model, mode=mode, dataset_dir=dataset_dir, train_dir=train_dir,
                           checkpoint_dir=FLAGS.checkpoint_dir, allow_random_init=FLAGS.allow_random_init,
                           image_size=settings.image_size, batch_size=settings.batch_size,
                           num_epochs=settings.num_epochs, seed=seed,
                           eval_every_n_steps=25 if quick else 100)
    try:
        trained = train(options)
        result, labels, probs = evaluate_run(train_dir, "test", num_bootstrap=200 if quick else 1000,
                                             seed=seed)
    except MissingCheckpointError as error:
        logging.warning("row %d skipped: %s", row_id, error)
        entry.update(status="skipped", note=f"no ImageNet checkpoint; run `{fix_command(model)}` "
                     "(or ./run_all.sh --allow_random_init)")
        return entry
    except Exception as error:  # one failing row must not lose the others
        logging.error("row %d failed:\n%s", row_id, traceback.format_exc())
        entry.update(status="failed", note=f"{type(error).__name__}: {error}")
        return entry
    entry.update(checkpoint=trained.checkpoint_description, train_seconds=trained.seconds,
                 metrics=result, labels=labels, probs=probs, train_dir=train_dir)
    return entry


MOBILE_MODELS = ("mobilenet_v1", "efficientnet_lite0")


def export_best_mobile_model(rows, run_dir):
    """Exports the fine-tuned mobile network with the best test AUC to <run_dir>/mobile."""
    from thyroid.deploy.export import export_model  # TFLite conversion is only needed here
    candidates = [row for row in rows if row["status"] == "ok" and row["mode"] == "finetune"
                  and row["model"] in MOBILE_MODELS]
    if not candidates:
        logging.info("no fine-tuned mobile model to export")
        return None
    best = max(candidates, key=lambda row: row["metrics"]["auc"]["value"] or 0.0)
    output_dir = os.path.join(run_dir, "mobile")
    try:
        export_model(best["train_dir"], output_dir, quantize="none")
    except Exception:  # the study's table is worth keeping even if export fails
        logging.error("export failed:\n%s", traceback.format_exc())
        return None
    logging.info("exported %s (row %d) to %s", best["model"], best["row_id"], output_dir)
    return f"{best['label']} (row {best['row_id']}) -> {os.path.join(output_dir, 'model.tflite')}"


def main(argv):
    del argv
    started = time.monotonic()
    quick = FLAGS.quick
    source = "ddti" if FLAGS.ddti_dir else ("local" if FLAGS.local_dir else "synthetic")
    run_name = FLAGS.run_name or (datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
                                  + f"-{source}-{FLAGS.protocol}" + ("-quick" if quick else ""))
    run_dir = os.path.abspath(os.path.join(FLAGS.output_dir, run_name))
    os.makedirs(run_dir, exist_ok=True)
    FLAGS.alsologtostderr = True  # progress on the console, the full log in the run folder
    logging.get_absl_handler().use_absl_log_file("study", run_dir)
    logging.info("study run in %s", run_dir)

    ddti_dir, local_dir, data_description = prepare_data(run_dir, quick, FLAGS.seed)
    dataset_dir = os.path.join(run_dir, "shards")
    manifest = build.build(
        ddti_dir=ddti_dir, local_dir=local_dir, output_dir=dataset_dir, protocol=FLAGS.protocol,
        augment_copies=FLAGS.augment_copies, seed=FLAGS.seed, overwrite=True)
    wanted = {int(r) for r in FLAGS.rows.split(",") if r.strip()}
    study_rows = [row for row in paper.STUDY_ROWS if not wanted or row[0] in wanted]
    prepare_checkpoints(FLAGS.checkpoint_dir, sorted({row[1] for row in study_rows}),
                        FLAGS.download_checkpoints)
    rows = []
    for row in study_rows:
        logging.info("=== row %d: %s ===", row[0], row[3])
        rows.append(run_row(row, dataset_dir, run_dir, quick, FLAGS.seed))

    mobile = export_best_mobile_model(rows, run_dir) if FLAGS.export else None
    run_info = {
        "run_name": run_name, "data": data_description, "protocol": FLAGS.protocol,
        "manifest": manifest, "quick": quick, "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}",
        "total_seconds": time.monotonic() - started,
        "mobile_model": mobile or "not exported (no fine-tuned mobile model in this run)",
    }
    report.write_report(run_dir, rows, run_info)
    logging.info("study finished in %.0fs", time.monotonic() - started)
    print(f"summary: {os.path.join(run_dir, 'summary.md')}")


if __name__ == "__main__":
    app.run(main)
