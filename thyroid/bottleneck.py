"""Dump bottleneck features of every split to the activation cache.

    python -m thyroid.bottleneck --model=vgg_16 --dataset_dir=shards --output_dir=cache

VGG-16 ``pool5``, Inception-v3 ``PreLogits``, EfficientNet-Lite0's pooled head. A second
run with the same model, checkpoint, shards and image size reuses the cache.
"""

import sys

from absl import app, flags, logging

from thyroid.datasets.shards import SPLITS
from thyroid.training.features import BOTTLENECK, FEATURE_BATCH_SIZE, load_or_compute
from thyroid.nets import get_network
from thyroid.training.run import MissingCheckpointError, TrainOptions, resolve_pretrained

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "efficientnet_lite0", "Network name from thyroid.nets.")
flags.DEFINE_string("dataset_dir", None, "Directory of TFRecord shards.")
flags.DEFINE_string("checkpoint_path", None, "ImageNet checkpoint (default: under --checkpoint_dir).")
flags.DEFINE_string("checkpoint_dir", "checkpoints", "Where downloaded / converted checkpoints live.")
flags.DEFINE_boolean("allow_random_init", False, "Run without an ImageNet checkpoint (random weights).")
flags.DEFINE_string("output_dir", None, "Cache directory (default: <dataset_dir>/activation_cache).")
flags.DEFINE_integer("image_size", 0, "Input size; 0 = the network's default.")
flags.DEFINE_integer("batch_size", FEATURE_BATCH_SIZE, "Images per forward pass.")
flags.DEFINE_integer("seed", 0, "Seed of the random weights under --allow_random_init.")
flags.mark_flag_as_required("dataset_dir")


def main(argv):
    del argv
    spec = get_network(FLAGS.model)
    options = TrainOptions(model=spec.name, mode="bottleneck_svm", dataset_dir=FLAGS.dataset_dir,
                           train_dir="", checkpoint_path=FLAGS.checkpoint_path,
                           checkpoint_dir=FLAGS.checkpoint_dir, allow_random_init=FLAGS.allow_random_init)
    try:
        checkpoint_path, description = resolve_pretrained(spec, options)
    except MissingCheckpointError as error:
        sys.exit(f"error: {error}")
    output_dir = FLAGS.output_dir or f"{FLAGS.dataset_dir}/activation_cache"
    for split in SPLITS:
        result = load_or_compute(spec, FLAGS.dataset_dir, split, BOTTLENECK, checkpoint_path,
                                 FLAGS.image_size or spec.default_image_size, output_dir,
                                 FLAGS.batch_size, FLAGS.seed)
        logging.info("%s %s: %s %s (%s)", spec.name, split, result.values.shape,
                     "reused" if result.reused else "computed", description)
        print(f"{split}: {result.values.shape[0]} images, features {result.values.shape[1:]}, "
              f"{'reused' if result.reused else 'computed'}")


if __name__ == "__main__":
    app.run(main)
