"""Evaluate a trained run: accuracy, sensitivity, specificity and AUC with 95% intervals.

    python -m thyroid.evaluate --train_dir=runs/inception_ft --split=test

Everything else comes from <train_dir>/run_config.json. Writes
<train_dir>/metrics_<split>.json. Intervals come from a bootstrap over patients. Runs on a
GPU when TensorFlow sees one.
"""

import os

from absl import flags

from thyroid import cli

cli.require_research_install("evaluate")  # before the imports that need it

from thyroid.datasets.shards import SPLITS

COMMAND = "evaluate"
MAX_BOOTSTRAP = 100_000


def define_flags(fv):
    flags.DEFINE_string("train_dir", None, "A directory written by thyroid.train.", flag_values=fv)
    flags.DEFINE_string("dataset_dir", None, "Shards to evaluate on (default: the ones trained on).",
                        flag_values=fv)
    flags.DEFINE_enum("split", "test", SPLITS, "Split to evaluate.", flag_values=fv)
    flags.DEFINE_float("threshold", None, "Decision threshold on P(malignant) (default: the run's).",
                       lower_bound=0.0, upper_bound=1.0, flag_values=fv)
    flags.DEFINE_integer("num_bootstrap", 1000, "Bootstrap resamples (over patients) for the "
                         "intervals.", lower_bound=1, upper_bound=MAX_BOOTSTRAP, flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Bootstrap seed.", lower_bound=0, upper_bound=2**31 - 1,
                         flag_values=fv)
    flags.mark_flag_as_required("train_dir", flag_values=fv)


def run(fv, args):
    del args
    if not os.path.isdir(fv.train_dir):
        raise cli.UsageError("train_dir", fv.train_dir, "no such folder")
    from thyroid.stats import metric_text
    from thyroid.training.scoring import evaluate_run
    result, _, _ = evaluate_run(fv.train_dir, fv.split, fv.dataset_dir, fv.threshold,
                                fv.num_bootstrap, fv.seed)
    print(f"{result['model']} / {result['mode']} on {fv.split} ({result['checkpoint']})")
    print(metric_text.format_metrics_table(result))
    print(f"metrics written to {os.path.join(fv.train_dir, result['file'])}")


def main(argv=None):
    return cli.main(COMMAND, define_flags, run, argv)


if __name__ == "__main__":
    main()
