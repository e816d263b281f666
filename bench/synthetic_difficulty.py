"""How hard the synthetic default is: quick test AUCs of two cheap methods on it.

    python -m bench.synthetic_difficulty [--num_cases=200] [--cnn_epochs=10]

Generates the study's default set (``--num_cases`` DDTI-style cases + as many local-style
patients, seed 0, full-size frames), builds shards by patient (no augmented copies, to keep
this quick), then reports the test AUC of
  - EfficientNet-Lite0 bottleneck (224 px, converted ImageNet weights) + logistic regression,
    its C chosen on the validation split;
  - the small CNN from scratch at 128 px for ``--cnn_epochs`` epochs (the study's own rows: ``bench/learning_curve.py``).
It also reports the AUC of the generator's latent suspicion score against the recorded label
over many sampled nodules: the ceiling that label noise and class overlap leave.
The aim is rows between about 0.65 and 0.95 that differ, not 1.00 everywhere.
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


def latent_ceiling(num_nodules=20000, seed=0):
    """AUC of the latent suspicion score for the recorded label (what pixels can at best give)."""
    from sklearn.metrics import roc_auc_score
    from thyroid.datasets import synthetic_scans
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, num_nodules)
    suspicion = [synthetic_scans.sample_nodule(rng, int(label))["suspicion"] for label in labels]
    return float(roc_auc_score(labels, suspicion))


def build_default_set(work_dir, num_cases):
    from thyroid.datasets import build, synthetic
    data_dir = os.path.join(work_dir, "synthetic")
    synthetic.generate(data_dir, num_cases=num_cases, seed=0)
    shard_dir = os.path.join(work_dir, "shards")
    build.build(build.BuildConfig(
        output_dir=shard_dir, sources={"ddti": os.path.join(data_dir, "ddti"),
                                       "local": os.path.join(data_dir, "local")},
        augment_copies=0, seed=0, overwrite=True))
    return shard_dir


def bottleneck_logistic_auc(shard_dir, work_dir):
    """Test AUC of logistic regression on frozen EfficientNet-Lite0 features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from thyroid.checkpoints.convert import convert
    from thyroid.nets import get_network
    from thyroid.training.features import load_or_compute
    from thyroid.training.frozen_network import BOTTLENECK
    spec = get_network("efficientnet_lite0")
    checkpoint = convert("efficientnet_lite0", os.path.join(work_dir, "checkpoints"))
    sets = {split: load_or_compute(spec, shard_dir, split, BOTTLENECK, checkpoint, 224,
                                   os.path.join(work_dir, "cache"))
            for split in ("train", "validation", "test")}

    def fitted(c):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        return model.fit(sets["train"].values, sets["train"].labels)

    def auc(model, split):
        return float(roc_auc_score(sets[split].labels, model.predict_proba(sets[split].values)[:, 1]))

    candidates = {c: fitted(c) for c in (0.001, 0.01, 0.1, 1.0)}
    best_c = max(candidates, key=lambda c: auc(candidates[c], "validation"))
    return {"C (chosen on validation)": best_c,
            "validation AUC": auc(candidates[best_c], "validation"),
            "test AUC": auc(candidates[best_c], "test"),
            "test images": len(sets["test"].labels)}


def small_cnn_auc(shard_dir, work_dir, epochs):
    from thyroid.training.scoring import evaluate_run
    from thyroid.training.run import TrainOptions, train
    train_dir = os.path.join(work_dir, "small_cnn")
    seconds, _ = common.timed(train, TrainOptions(
        model="small_cnn", mode="scratch", dataset_dir=shard_dir, train_dir=train_dir,
        image_size=128, num_epochs=epochs, batch_size=32))
    metrics, labels, _ = evaluate_run(train_dir, "test", num_bootstrap=200)
    return {"epochs": epochs, "train seconds": seconds, "test AUC": metrics["auc"]["value"],
            "test AUC 95% CI": metrics["auc"].get("ci95"), "test images": len(labels)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_cases", type=int, default=200)
    parser.add_argument("--cnn_epochs", type=int, default=10)
    parser.add_argument("--no_write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    common.quiet_tf()
    work_dir = tempfile.mkdtemp(prefix="bench-difficulty-")
    try:
        ceiling = latent_ceiling()
        seconds, shard_dir = common.timed(build_default_set, work_dir, args.num_cases)
        logistic = bottleneck_logistic_auc(shard_dir, work_dir)
        print("EfficientNet-Lite0 + logistic regression:", logistic, flush=True)
        cnn = small_cnn_auc(shard_dir, work_dir, args.cnn_epochs)
        print("small CNN:", cnn, flush=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    rows = [["latent suspicion score (ceiling, 20000 sampled nodules)", "", ceiling],
            ["EfficientNet-Lite0 bottleneck + logistic regression",
             logistic["validation AUC"], logistic["test AUC"]],
            [f"small CNN from scratch, 128 px, {args.cnn_epochs} epochs", "", cnn["test AUC"]]]
    markdown = (f"Synthetic default: {args.num_cases} DDTI-style cases + {args.num_cases} "
                f"local-style patients, seed 0, shards split by patient, no augmented copies "
                f"(data + shards {seconds:.0f} s). Test split: {logistic['test images']} images; "
                f"small CNN test AUC 95% CI {cnn['test AUC 95% CI']}.\n\n"
                + common.format_table(["method", "validation AUC", "test AUC"], rows))
    print(markdown)
    if not args.no_write:
        common.write_results("synthetic_difficulty", {"ceiling": ceiling, "logistic": logistic,
                                                      "small_cnn": cnn}, markdown)


if __name__ == "__main__":
    main()
