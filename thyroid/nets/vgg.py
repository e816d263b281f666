"""VGG-16 backbone with the official TF-Slim variable names (``vgg_16/conv1/conv1_1/...``).

``features`` stops at ``vgg_16/pool5``; ``frozen_prefix`` (conv1 .. conv5_2) and
``trainable_suffix`` (conv5_3 + pool5) split it so training can cache conv5_2 activations.
All builders open ``vgg_16`` with AUTO_REUSE, so they share variables within one graph.
"""

from tf_slim.nets import vgg as slim_vgg

from thyroid.compat import tf1, slim
from thyroid.nets.spec import CheckpointInfo, NetworkSpec
from thyroid.nets.net_inputs import vgg_preprocess

SCOPE = "vgg_16"
DEFAULT_IMAGE_SIZE = 224
CHECKPOINT = CheckpointInfo(
    url="http://download.tensorflow.org/models/vgg_16_2016_08_28.tar.gz",
    tarball="vgg_16_2016_08_28.tar.gz",
    checkpoint_file="vgg_16.ckpt",
    subdir="vgg_16",
)

# (block, number of convs, depth)
_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


def _scope():
    return tf1.variable_scope(SCOPE, reuse=tf1.AUTO_REUSE)


def _conv(net, depth, block, index, end_points):
    name = "conv%d/conv%d_%d" % (block, block, index)
    net = slim.conv2d(net, depth, [3, 3], scope=name)
    end_points["%s/%s" % (SCOPE, name)] = net
    return net


def _prefix(inputs, end_points):
    net = inputs
    for block, count, depth in _BLOCKS:
        last = count - 1 if block == 5 else count  # conv5_3 belongs to the suffix
        for index in range(1, last + 1):
            net = _conv(net, depth, block, index, end_points)
        if block < 5:
            net = slim.max_pool2d(net, [2, 2], scope="pool%d" % block)
            end_points["%s/pool%d" % (SCOPE, block)] = net
    return net


def _suffix(prefix, end_points):
    net = _conv(prefix, 512, 5, 3, end_points)
    net = slim.max_pool2d(net, [2, 2], scope="pool5")
    end_points["%s/pool5" % SCOPE] = net
    return net


def frozen_prefix(inputs):
    """conv1_1 .. conv5_2 -> [N, 14, 14, 512] at 224."""
    end_points = {}
    with slim.arg_scope(slim_vgg.vgg_arg_scope()):
        with _scope():
            return _prefix(inputs, end_points)


def trainable_suffix(prefix, is_training=False):
    """conv5_3 + pool5 on a ``frozen_prefix`` output -> (pool5 [N,7,7,512], end_points)."""
    del is_training  # VGG-16 has neither batch norm nor dropout before pool5
    end_points = {}
    with slim.arg_scope(slim_vgg.vgg_arg_scope()):
        with _scope():
            net = _suffix(prefix, end_points)
    return net, end_points


def features(inputs, is_training=False):
    """-> (``vgg_16/pool5`` [N, 7, 7, 512] at 224, end_points)."""
    del is_training
    end_points = {}
    with slim.arg_scope(slim_vgg.vgg_arg_scope()):
        with _scope():
            net = _prefix(inputs, end_points)
            net = _suffix(net, end_points)
    return net, end_points


def imagenet_logits(inputs):
    """The full VGG-16 with its 1000-class classifier (inference mode; needs 224 x 224)."""
    with slim.arg_scope(slim_vgg.vgg_arg_scope()), \
            tf1.variable_scope(tf1.get_variable_scope(), reuse=tf1.AUTO_REUSE):
        logits, end_points = slim_vgg.vgg_16(inputs, num_classes=1000, is_training=False,
                                             scope=SCOPE)
    return logits, end_points


def make_spec():
    return NetworkSpec(
        name="vgg_16",
        scope=SCOPE,
        default_image_size=DEFAULT_IMAGE_SIZE,
        min_image_size=32,
        preprocess=vgg_preprocess,
        features=features,
        bottleneck_endpoint="vgg_16/pool5",
        bottleneck_shape=(7, 7, 512),
        head_scope="vgg_16/Head",
        exclude_scopes=("vgg_16/fc6", "vgg_16/fc7", "vgg_16/fc8", "vgg_16/Head"),
        trainable_scopes=("vgg_16/conv5/conv5_3", "vgg_16/Head"),
        imagenet_logits=imagenet_logits,
        imagenet_label_offset=0,
        checkpoint=CHECKPOINT,
        frozen_prefix=frozen_prefix,
        trainable_suffix=trainable_suffix,
        frozen_prefix_end_point="vgg_16/conv5/conv5_2",
        feature_layers=("vgg_16/conv3/conv3_3", "vgg_16/conv4/conv4_3", "vgg_16/conv5/conv5_3"),
    )
