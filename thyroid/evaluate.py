"""Evaluate a trained run: accuracy, sensitivity, specificity and AUC with 95% intervals.

    python -m thyroid.evaluate --train_dir=runs/inception_ft --dataset_dir=shards --split=test

Intervals come from a bootstrap over patients. Runs on a GPU when TensorFlow sees one.
"""

import os

from absl import app, flags

from thyroid.evaluation import metrics
from thyroid.evaluation.runs import evaluate_run

FLAGS = flags.FLAGS
flags.DEFINE_string("train_dir", None, "A directory written by thyroid.train.")
flags.DEFINE_string("dataset_dir", None, "Shards to evaluate on (default: the ones trained on).")
flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "Split to evaluate.")
flags.DEFINE_float("threshold", None, "Decision threshold on P(malignant) (default: the run's, 0.5).")
flags.DEFINE_integer("num_bootstrap", 1000, "Bootstrap resamples (over patients) for the intervals.")
flags.DEFINE_integer("seed", 0, "Bootstrap seed.")
flags.DEFINE_string("metrics_path", None, "Where metrics.json goes (default: <train_dir>/metrics.json).")
flags.mark_flag_as_required("train_dir")


def main(argv):
    del argv
    output = FLAGS.metrics_path or os.path.join(FLAGS.train_dir, "metrics.json")
    result, _, _ = evaluate_run(FLAGS.train_dir, FLAGS.split, FLAGS.dataset_dir, FLAGS.threshold,
                                FLAGS.num_bootstrap, output, FLAGS.seed)
    print(f"{result['model']} / {result['mode']} on {FLAGS.split} ({result['checkpoint']})")
    print(metrics.format_metrics_table(result))
    print(f"metrics written to {output}")


if __name__ == "__main__":
    app.run(main)
