"""Train one model in one mode.

    python -m thyroid.train --model=inception_v3 --mode=finetune \
        --dataset_dir=shards --train_dir=runs/inception_ft

Flag names follow TF-Slim's train_image_classifier.py where one exists. Restarting
with the same --train_dir resumes from its latest checkpoint.
"""

import sys

from absl import app, flags

from thyroid.restore import parse_scopes
from thyroid.training import MODES
from thyroid.training.loop import OPTIMIZERS
from thyroid.training.run import MissingCheckpointError, TrainOptions, train

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "small_cnn", "Network name from thyroid.nets.")
flags.DEFINE_enum("mode", "scratch", MODES, "What to train.")
flags.DEFINE_string("dataset_dir", None, "Directory of TFRecord shards (thyroid.build_tfrecords).")
flags.DEFINE_string("train_dir", None, "Where checkpoints, summaries and run_config.json go.")
flags.DEFINE_string("checkpoint_path", None, "ImageNet checkpoint (file prefix or directory). "
                    "Default: the model's file under --checkpoint_dir.")
flags.DEFINE_string("checkpoint_dir", "checkpoints", "Where downloaded / converted checkpoints live.")
flags.DEFINE_string("checkpoint_exclude_scopes", None, "Comma-separated scopes not restored "
                    "(default: the model's classifier and head scopes).")
flags.DEFINE_string("trainable_scopes", None, "Comma-separated scopes trained in finetune mode "
                    "(default: the model's, e.g. conv5_3 + head for vgg_16).")
flags.DEFINE_boolean("ignore_missing_vars", False, "Skip variables missing from the checkpoint.")
flags.DEFINE_boolean("allow_random_init", False, "Run without an ImageNet checkpoint (random weights).")
flags.DEFINE_boolean("use_prefix_cache", True, "VGG-16 fine-tuning: train from cached conv5_2 "
                     "activations instead of recomputing the frozen layers each step.")
flags.DEFINE_integer("image_size", 0, "Input size; 0 = the network's default.")
flags.DEFINE_enum("optimizer", "adam", OPTIMIZERS, "Optimizer.")
flags.DEFINE_float("learning_rate", 0.0, "0 = the mode's default (1e-3; 1e-4 for finetune).")
flags.DEFINE_integer("batch_size", 32, "Examples per step.")
flags.DEFINE_integer("max_number_of_steps", 0, "Total steps; 0 = derive from --num_epochs.")
flags.DEFINE_float("num_epochs", 10.0, "Epochs over the training split when no step count is given.")
flags.DEFINE_enum("class_weight", "balanced", ["balanced", "none"], "Loss weighting by class.")
flags.DEFINE_boolean("svm_standardize", False, "bottleneck_svm: standardise features first.")
flags.DEFINE_enum("svm_class_weight", None, ["balanced"], "bottleneck_svm: SVC class_weight.")
flags.DEFINE_string("cache_dir", "", "Activation cache (default: <dataset_dir>/activation_cache).")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_integer("log_every_n_steps", 10, "Summary interval.")
flags.DEFINE_integer("save_interval_steps", 100, "Checkpoint interval.")
flags.DEFINE_integer("eval_every_n_steps", 50, "Validation-metrics interval.")
flags.mark_flags_as_required(["dataset_dir", "train_dir"])


def options_from_flags():
    return TrainOptions(
        model=FLAGS.model, mode=FLAGS.mode, dataset_dir=FLAGS.dataset_dir, train_dir=FLAGS.train_dir,
        checkpoint_path=FLAGS.checkpoint_path, checkpoint_dir=FLAGS.checkpoint_dir,
        checkpoint_exclude_scopes=parse_scopes(FLAGS.checkpoint_exclude_scopes),
        trainable_scopes=parse_scopes(FLAGS.trainable_scopes),
        ignore_missing_vars=FLAGS.ignore_missing_vars, allow_random_init=FLAGS.allow_random_init,
        use_prefix_cache=FLAGS.use_prefix_cache, image_size=FLAGS.image_size,
        optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate, batch_size=FLAGS.batch_size,
        max_number_of_steps=FLAGS.max_number_of_steps, num_epochs=FLAGS.num_epochs,
        class_weight=FLAGS.class_weight, svm_standardize=FLAGS.svm_standardize,
        svm_class_weight=FLAGS.svm_class_weight, cache_dir=FLAGS.cache_dir, seed=FLAGS.seed,
        log_every_n_steps=FLAGS.log_every_n_steps, save_interval_steps=FLAGS.save_interval_steps,
        eval_every_n_steps=FLAGS.eval_every_n_steps)


def main(argv):
    del argv
    try:
        train(options_from_flags())
    except MissingCheckpointError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    app.run(main)
