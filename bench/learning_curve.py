"""Pooled cross-validated AUC and time of the trained study rows by image size and epochs.

    python -m bench.learning_curve [--num_cases=120] [--variants=1:64:30,10:128:4]

Builds the study's synthetic default once (data, shards, folds, as ``./run_all.sh`` does),
then cross-validates each variant ``row:image_size:epochs`` with the study's own settings
otherwise (early stopping included, so the epochs are a ceiling) and reports the pooled
out-of-fold AUC, the median epoch of the best inner-validation checkpoint and the time. The
study's row settings (``thyroid/study/rows.py``) are chosen from this table: the
smallest image size and epoch ceiling whose AUC is not clearly below the larger ones.
"""

import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common

DEFAULT_VARIANTS = "1:32:30,1:64:30,1:96:30,10:96:4,10:128:4,10:160:4"


def parse_variants(text):
    variants = []
    for item in text.split(","):
        row_id, size, epochs = item.split(":")
        variants.append((int(row_id), int(size), float(epochs)))
    return variants


def build_default_study(work_dir, num_cases):
    """(StudyConfig, shard dir, fold assignment) of the default study on fresh synthetic data."""
    from thyroid.datasets import folds
    from thyroid.study import data
    from thyroid.study.config import StudyConfig
    config = StudyConfig(output_dir=work_dir, num_cases=num_cases, export=False,
                         checkpoint_dir=os.path.join(work_dir, "checkpoints"))
    sources = data.prepare_sources(config, work_dir)
    shard_dir = os.path.join(work_dir, "shards")
    data.build_development_shards(config, sources, shard_dir)
    data.prepare_checkpoints(config.checkpoint_dir, ["efficientnet_lite0"], False)
    return config, shard_dir, folds.load_folds(os.path.join(shard_dir, folds.FOLDS_NAME))


def run_variant(config, shard_dir, assignment, work_dir, variant):
    """Cross-validates one (row, image size, epochs); -> result dict."""
    from sklearn.metrics import roc_auc_score
    from thyroid.datasets import folds
    from thyroid.study import fitting
    from thyroid.study.config import row_config
    from thyroid.study.rows import get_row
    row_id, size, epochs = variant
    row = get_row(row_id)
    model, mode = row.model, row.mode
    run_config = row_config(config, row, shard_dir).replace(
        fold_file=os.path.join(shard_dir, folds.FOLDS_NAME), image_size=size, num_epochs=epochs)
    train_root = os.path.join(work_dir, "train", f"{row_id}_{size}_{epochs:g}")

    def every_fold():
        return [fitting.run_fold(run_config, row_id, repeat, fold,
                                 os.path.join(train_root, f"repeat{repeat}_fold{fold}"),
                                 config.operating_point)
                for repeat in range(assignment["num_repeats"])
                for fold in range(assignment["num_folds"])]
    seconds, results = common.timed(every_fold)
    records = [r for result in results for r in result.records]
    auc = roc_auc_score([r["label"] for r in records], [r["prob"] for r in records])
    fold_aucs = [roc_auc_score([r["label"] for r in res.records], [r["prob"] for r in res.records])
                 for res in results]
    return {"row": row_id, "model": model, "mode": mode, "image_size": size,
            "epoch_ceiling": epochs, "pooled_auc": float(auc),
            "fold_auc_sd": float(np.std(fold_aucs, ddof=1)),
            "median_best_epoch": float(np.median([r.best_epochs for r in results])),
            "seconds": seconds}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_cases", type=int, default=0, help="0: the study's default")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help="row:image_size:epochs,...")
    parser.add_argument("--no_write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    common.quiet_tf()
    from thyroid.study import config as study
    num_cases = args.num_cases or study.DEFAULT_SYNTHETIC_CASES
    work_dir = tempfile.mkdtemp(prefix="bench-learning-curve-")
    try:
        build_seconds, (config, shard_dir, assignment) = common.timed(
            build_default_study, work_dir, num_cases)
        results = []
        for variant in parse_variants(args.variants):
            results.append(run_variant(config, shard_dir, assignment, work_dir, variant))
            print(results[-1], flush=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    eval_epochs = study.EVAL_EVERY_N_EPOCHS
    rows = [[f"{r['row']} {r['model']}/{r['mode']}", r["image_size"], r["epoch_ceiling"],
             r["pooled_auc"], r["fold_auc_sd"], r["median_best_epoch"], r["seconds"]]
            for r in results]
    markdown = (f"Synthetic default ({num_cases} DDTI-style cases + as many local-style "
                f"patients, seed 0), {assignment['num_folds']}-fold patient-grouped "
                f"cross-validation with the study's early stopping (patience "
                f"{study.EARLY_STOPPING_PATIENCE} evaluations every {eval_epochs:g} epochs); data + shards + folds {build_seconds:.0f} s.\n\n"
                + common.format_table(["row", "image px", "epoch ceiling", "pooled AUC",
                                       "fold AUC SD", "median best epoch", "seconds"], rows))
    print(markdown)
    if not args.no_write:
        common.write_results("learning_curve", {"results": results}, markdown)


if __name__ == "__main__":
    main()
