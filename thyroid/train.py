"""Train one model in one mode.

    python -m thyroid.train --model=inception_v3 --mode=finetune \
        --dataset_dir=shards --train_dir=runs/inception_ft

Flag names follow TF-Slim's train_image_classifier.py where one exists. Every setting,
resolved, goes to <train_dir>/run_config.json. Restarting with the same --train_dir resumes
from its latest checkpoint.
"""

from absl import flags

from thyroid import cli

cli.require_research_install("train")  # before the imports that need it

from thyroid.training.run_config import INTEGER_RANGES
from thyroid.scopes import parse_scopes
from thyroid.output_guard import check_output_dir
from thyroid.training import run_config as rc

COMMAND = "train"


def define_flags(fv):
    flags.DEFINE_string("model", "small_cnn", "Network name from thyroid.nets.", flag_values=fv)
    flags.DEFINE_enum("mode", "scratch", rc.MODES, "What to train.", flag_values=fv)
    flags.DEFINE_string("dataset_dir", None, "Directory of TFRecord shards (thyroid.build_tfrecords).",
                        flag_values=fv)
    flags.DEFINE_string("train_dir", None, "Where checkpoints, summaries and run_config.json go.",
                        flag_values=fv)
    cli.define_checkpoint_flags(fv)
    flags.DEFINE_string("checkpoint_exclude_scopes", None, "Comma-separated scopes not restored "
                        "(default: the model's classifier and head scopes).", flag_values=fv)
    flags.DEFINE_string("trainable_scopes", None, "Comma-separated scopes trained in finetune mode "
                        "(default: the model's, e.g. conv5_3 + head for vgg_16).", flag_values=fv)
    flags.DEFINE_boolean("ignore_missing_vars", False, "Skip variables missing from the checkpoint.",
                         flag_values=fv)
    flags.DEFINE_boolean("use_prefix_cache", True, "Fine-tuning VGG-16 or EfficientNet-Lite0 with the "
                         "default trainable scopes: train from cached activations of the frozen layers "
                         "(VGG-16 conv5_2, EfficientNet-Lite0 blocks_14) instead of recomputing them "
                         "each step.", flag_values=fv)
    cli.define_integer("image_size", 0, "Input size; 0 = the network's default.",
                       fv, INTEGER_RANGES)
    flags.DEFINE_enum("optimizer", "adam", rc.OPTIMIZERS, "Optimizer.", flag_values=fv)
    flags.DEFINE_float("learning_rate", 0.0, "0 = the mode's default (1e-3; 1e-4 for finetune).",
                       lower_bound=0.0, upper_bound=rc.MAX_LEARNING_RATE, flag_values=fv)
    cli.define_integer("batch_size", 32, "Examples per step.", fv, INTEGER_RANGES)
    cli.define_integer("max_number_of_steps", 0, "Total steps; 0 = derive from --num_epochs.",
                       fv, INTEGER_RANGES)
    flags.DEFINE_float("num_epochs", 10.0, "Epochs over the training split when no step count is "
                       "given (> 0).", lower_bound=0.0, upper_bound=rc.MAX_EPOCHS, flag_values=fv)
    flags.DEFINE_enum("class_weight", "balanced", rc.CLASS_WEIGHTS, "Loss weighting by class.",
                      flag_values=fv)
    flags.DEFINE_boolean("svm_standardize", False, "bottleneck_svm: standardise features first.",
                         flag_values=fv)
    flags.DEFINE_enum("svm_class_weight", None, ["balanced"], "bottleneck_svm: SVC class_weight.",
                      flag_values=fv)
    flags.DEFINE_string("feature_layers", None, "bottleneck_logreg: comma-separated end points "
                        "whose mean and SD over space form the features (default: the network's, "
                        "e.g. blocks_4,blocks_7,blocks_10,blocks_14,blocks_15,conv_head for "
                        "efficientnet_lite0).", flag_values=fv)
    flags.DEFINE_string("cache_dir", "", "Activation cache (default: <dataset_dir>/activation_cache).",
                        flag_values=fv)
    cli.define_integer("seed", 0, "Random seed.", fv, INTEGER_RANGES)
    cli.define_integer("log_every_n_steps", 10, "Summary interval.", fv, INTEGER_RANGES)
    cli.define_integer("save_interval_steps", 100, "Checkpoint interval.", fv, INTEGER_RANGES)
    cli.define_integer("eval_every_n_steps", 50, "Validation-metrics interval in steps (used "
                       "when --eval_every_n_epochs is 0).", fv, INTEGER_RANGES)
    flags.DEFINE_float("eval_every_n_epochs", 0.0, "Validation-metrics interval in epochs of the "
                       "training split (fractions allowed), so that it grows with the data; "
                       "0 = --eval_every_n_steps.", lower_bound=0.0, upper_bound=rc.MAX_EPOCHS,
                       flag_values=fv)
    flags.mark_flags_as_required(["dataset_dir", "train_dir"], flag_values=fv)


def config_from_flags(fv):
    return rc.RunConfig(
        model=fv.model, mode=fv.mode, dataset_dir=fv.dataset_dir,
        checkpoint_path=fv.checkpoint_path, checkpoint_dir=fv.checkpoint_dir,
        checkpoint_exclude_scopes=parse_scopes(fv.checkpoint_exclude_scopes),
        trainable_scopes=parse_scopes(fv.trainable_scopes),
        ignore_missing_vars=fv.ignore_missing_vars, allow_random_init=fv.allow_random_init,
        use_prefix_cache=fv.use_prefix_cache, image_size=fv.image_size,
        optimizer=fv.optimizer, learning_rate=fv.learning_rate, batch_size=fv.batch_size,
        max_number_of_steps=fv.max_number_of_steps, num_epochs=fv.num_epochs,
        class_weight=fv.class_weight, svm_standardize=fv.svm_standardize,
        svm_class_weight=fv.svm_class_weight, feature_layers=parse_scopes(fv.feature_layers),
        cache_dir=fv.cache_dir, seed=fv.seed,
        log_every_n_steps=fv.log_every_n_steps, save_interval_steps=fv.save_interval_steps,
        eval_every_n_steps=fv.eval_every_n_steps, eval_every_n_epochs=fv.eval_every_n_epochs)


def run(fv, args):
    del args
    config = config_from_flags(fv).validate()
    if fv.cache_dir:
        check_output_dir("cache_dir", fv.cache_dir)
    from thyroid.training.run import train
    result = train(config, fv.train_dir, cli.command_line())
    print(f"trained {result.steps} steps in {result.seconds:.0f}s -> {result.train_dir}")


def main(argv=None):
    return cli.main(COMMAND, define_flags, run, argv)


if __name__ == "__main__":
    main()
