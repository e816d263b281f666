"""The whole study: data, shards, checkpoints, the rows, the report (``thyroid.study``).

``run_study(StudyConfig)`` prepares the data and shards, then ``run_row`` trains and
evaluates one row of ``paper.STUDY_ROWS`` on a dataset folder; that function is the unit a
per-fold study calls. A row whose ImageNet checkpoint is missing is reported as skipped
with the command that fixes it (or runs from random weights with ``allow_random_init``).
"""

import dataclasses
import datetime
import os
import platform
import time
import traceback

from absl import logging

from thyroid.checkpoints.locate import MissingCheckpointError, default_checkpoint_path, fetch_command
from thyroid.datasets import build, synthetic
from thyroid.evaluation import paper, report
from thyroid.evaluation.runs import evaluate_run
from thyroid.nets import get_network
from thyroid.training.run import train
from thyroid.training.run_config import RunConfig

MOBILE_MODELS = ("mobilenet_v1", "efficientnet_lite0")
DEFAULT_SYNTHETIC_CASES = 120  # DDTI-style cases, and as many local-style patients


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    output_dir: str = "results"
    run_name: str | None = None
    ddti_dir: str | None = None
    local_dir: str | None = None
    protocol: str = "patient"
    augment_copies: int = 2
    checkpoint_dir: str = "checkpoints"
    allow_random_init: bool = False
    quick: bool = False
    num_cases: int = 0
    rows: tuple = ()
    download_checkpoints: bool = True
    export: bool = True
    seed: int = 0
    # Cross-validation: None = the default (5 folds, 3 with quick); 0 = one train/validation/
    # test split, as with --protocol=image.
    cv_folds: int | None = None
    cv_repeats: int = 1
    operating_point: str = "youden"
    # External validation sets: ((source kind, path), ...), kinds as datasets.read_sources.
    external: tuple = ()

    @property
    def source(self):
        return "ddti" if self.ddti_dir else ("local" if self.local_dir else "synthetic")

    @property
    def num_folds(self):
        """Folds of the cross-validation, 0 for a single split (always for protocol=image)."""
        if self.protocol != "patient":
            return 0
        if self.cv_folds is None:
            return 3 if self.quick else 5
        return self.cv_folds

    @property
    def external_sources(self):
        return dict(self.external)

    def resolved_run_name(self):
        return self.run_name or (datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
                                 + f"-{self.source}-{self.protocol}" + ("-quick" if self.quick else ""))


@dataclasses.dataclass(frozen=True)
class RowSettings:
    image_size: int
    num_epochs: float
    batch_size: int = 32


# Image sizes and epochs per (model, mode). Full runs use each net's own input size.
FULL_SETTINGS = {
    ("small_cnn", "scratch"): RowSettings(64, 30),
    ("vgg_16", "bottleneck_svm"): RowSettings(224, 1),
    ("vgg_16", "bottleneck_fc"): RowSettings(224, 60),
    ("vgg_16", "finetune"): RowSettings(224, 10),
    ("inception_v3", "bottleneck_svm"): RowSettings(299, 1),
    ("inception_v3", "bottleneck_fc"): RowSettings(299, 60),
    ("inception_v3", "finetune"): RowSettings(299, 3, 16),
    ("efficientnet_lite0", "bottleneck_svm"): RowSettings(224, 1),
    ("efficientnet_lite0", "bottleneck_fc"): RowSettings(224, 60),
    ("efficientnet_lite0", "finetune"): RowSettings(128, 4, 16),
    ("efficientnet_lite0", "bottleneck_logreg"): RowSettings(224, 1),
}
QUICK_SIZES = {"small_cnn": 32, "vgg_16": 32, "inception_v3": 75, "efficientnet_lite0": 64}


# Fold training stops after this many inner-validation evaluations without a better AUC
# (the best checkpoint is kept either way); the epochs above are then only a ceiling.
EARLY_STOPPING_PATIENCE = 4


def row_settings(model, mode, quick):
    settings = FULL_SETTINGS[(model, mode)]
    if quick:
        return RowSettings(QUICK_SIZES[model], min(settings.num_epochs, 2), 16)
    return settings


def row_config(study, model, mode, dataset_dir):
    """The RunConfig of one row of the study on ``dataset_dir``."""
    settings = row_settings(model, mode, study.quick)
    return RunConfig(model=model, mode=mode, dataset_dir=dataset_dir,
                     checkpoint_dir=study.checkpoint_dir, allow_random_init=study.allow_random_init,
                     image_size=settings.image_size, batch_size=settings.batch_size,
                     num_epochs=settings.num_epochs, seed=study.seed,
                     eval_every_n_steps=25, early_stopping_patience=EARLY_STOPPING_PATIENCE)


def prepare_data(study, run_dir):
    """(ddti_dir, local_dir, description): the user's folders or freshly generated synthetic ones."""
    if study.ddti_dir or study.local_dir:
        named = (("DDTI", study.ddti_dir), ("local", study.local_dir))
        return study.ddti_dir, study.local_dir, ", ".join(f"{n} {p}" for n, p in named if p)
    num_cases = study.num_cases or (48 if study.quick else DEFAULT_SYNTHETIC_CASES)
    data_dir = os.path.join(run_dir, "synthetic")
    size = {"width": 280, "height": 180} if study.quick else {}
    synthetic.generate(data_dir, num_cases=num_cases, seed=study.seed, **size)
    return (os.path.join(data_dir, "ddti"), os.path.join(data_dir, "local"),
            f"synthetic ({num_cases} DDTI-style cases + local-style patients, seed {study.seed})")


def prepare_checkpoints(checkpoint_dir, models, try_download):
    """Converts EfficientNet-Lite0 when missing; fetches official checkpoints when online."""
    from thyroid.checkpoints.convert import convert
    from thyroid.checkpoints.download import DownloadError, download
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


def run_row(study, row, dataset_dir, train_root):
    """Trains and evaluates one study row on ``dataset_dir``; -> the report's row entry."""
    row_id, model, mode, label = row
    train_dir = os.path.join(train_root, f"{row_id:02d}_{model}_{mode}")
    entry = {"row_id": row_id, "model": model, "mode": mode, "label": label, "status": "ok",
             "checkpoint": None, "note": "", "train_seconds": None, "metrics": None}
    try:
        trained = train(row_config(study, model, mode, dataset_dir), train_dir)
        result, labels, probs = evaluate_run(train_dir, "test", seed=study.seed,
                                             num_bootstrap=200 if study.quick else 1000)
    except MissingCheckpointError as error:
        logging.warning("row %d skipped: %s", row_id, error)
        entry.update(status="skipped", note=f"no ImageNet checkpoint; run `{fetch_command(model)}` "
                     "(or ./run_all.sh --allow_random_init)")
        return entry
    except Exception as error:  # one failing row must not lose the others
        logging.error("row %d failed:\n%s", row_id, traceback.format_exc())
        entry.update(status="failed", note=f"{type(error).__name__}: {error}")
        return entry
    entry.update(checkpoint=trained.checkpoint_description, train_seconds=trained.seconds,
                 metrics=result, labels=labels, probs=probs, train_dir=train_dir)
    return entry


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


def selected_rows(study):
    return [row for row in paper.STUDY_ROWS if not study.rows or row[0] in study.rows]


def run_study(study):
    """Runs the study into <output_dir>/<run_name>/; returns the summary's path."""
    started = time.monotonic()
    run_name = study.resolved_run_name()
    run_dir = os.path.abspath(os.path.join(study.output_dir, run_name))
    os.makedirs(run_dir, exist_ok=True)
    logging.get_absl_handler().use_absl_log_file("study", run_dir)
    logging.info("study run in %s", run_dir)
    if study.protocol != "patient" and study.cv_folds:
        logging.warning("protocol=%s: cross-validation needs the patient protocol; running the "
                        "single split", study.protocol)
    if study.num_folds:
        from thyroid.evaluation.cv_study import run_cv_study
        return run_cv_study(study, run_dir, started)
    return run_single_split_study(study, run_dir, started)


def run_single_split_study(study, run_dir, started):
    """The single train/validation/test split (``cv_folds=0`` or protocol=image)."""
    run_name = os.path.basename(run_dir)
    ddti_dir, local_dir, data_description = prepare_data(study, run_dir)
    dataset_dir = os.path.join(run_dir, "shards")
    manifest = build.build(build.BuildConfig(
        output_dir=dataset_dir, sources=build.named_sources(ddti_dir=ddti_dir, local_dir=local_dir),
        protocol=study.protocol, augment_copies=study.augment_copies, seed=study.seed,
        overwrite=True))
    study_rows = selected_rows(study)
    prepare_checkpoints(study.checkpoint_dir, sorted({row[1] for row in study_rows}),
                        study.download_checkpoints)
    rows = []
    for row in study_rows:
        logging.info("=== row %d: %s ===", row[0], row[3])
        rows.append(run_row(study, row, dataset_dir, os.path.join(run_dir, "train")))

    mobile = export_best_mobile_model(rows, run_dir) if study.export else None
    run_info = {
        "run_name": run_name, "data": data_description, "protocol": study.protocol,
        "manifest": manifest, "quick": study.quick,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}",
        "total_seconds": time.monotonic() - started,
        "mobile_model": mobile or "not exported (no fine-tuned mobile model in this run)",
    }
    report.write_report(run_dir, rows, run_info)
    logging.info("study finished in %.0fs", time.monotonic() - started)
    return os.path.join(run_dir, "summary.md")
