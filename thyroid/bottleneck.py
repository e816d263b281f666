"""Dump bottleneck features of every split to the activation cache.

    python -m thyroid.bottleneck --model=vgg_16 --dataset_dir=shards --cache_dir=cache

VGG-16 ``pool5``, Inception-v3 ``PreLogits``, EfficientNet-Lite0's pooled head. A second
run with the same model, checkpoint, shards and image size reuses the cache.
"""

from absl import flags

from thyroid import cli

cli.require_research_install("bottleneck")  # before the imports that need it

from thyroid.training.run_config import INTEGER_RANGES
from thyroid.output_guard import check_output_dir
from thyroid.training.run_config import MAX_BATCH_SIZE

COMMAND = "bottleneck"


def define_flags(fv):
    flags.DEFINE_string("model", "efficientnet_lite0", "Network name from thyroid.nets.", flag_values=fv)
    flags.DEFINE_string("dataset_dir", None, "Directory of TFRecord shards.", flag_values=fv)
    cli.define_checkpoint_flags(fv)
    flags.DEFINE_string("cache_dir", "", "Activation cache (default: <dataset_dir>/activation_cache).",
                        flag_values=fv)
    cli.define_integer("image_size", 0, "Input size; 0 = the network's default.",
                       fv, INTEGER_RANGES)
    flags.DEFINE_integer("batch_size", 0, "Images per forward pass; 0 = the cache's default.",
                         lower_bound=0, upper_bound=MAX_BATCH_SIZE, flag_values=fv)
    cli.define_integer("seed", 0, "Seed of the random weights under --allow_random_init.",
                       fv, INTEGER_RANGES)
    flags.mark_flag_as_required("dataset_dir", flag_values=fv)


def run(fv, args):
    del args
    from thyroid.training.features import dump_bottlenecks
    from thyroid.training.run_config import RunConfig
    if fv.cache_dir:
        check_output_dir("cache_dir", fv.cache_dir)
    config = RunConfig(model=fv.model, mode="bottleneck_fc", dataset_dir=fv.dataset_dir,
                       checkpoint_path=fv.checkpoint_path, checkpoint_dir=fv.checkpoint_dir,
                       allow_random_init=fv.allow_random_init, image_size=fv.image_size,
                       cache_dir=fv.cache_dir, seed=fv.seed).validate()
    for line in dump_bottlenecks(config, fv.batch_size):
        print(line)


def main(argv=None):
    return cli.main(COMMAND, define_flags, run, argv)


if __name__ == "__main__":
    main()
