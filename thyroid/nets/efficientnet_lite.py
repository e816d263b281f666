"""EfficientNet-Lite0, slim style: no squeeze-excite, ReLU6, fixed stem (32) and head (1280),
16 MBConv blocks from the B0 table, batch norm epsilon 1e-3, input (x - 127) / 128.

Variable names (our own; the checkpoint is produced by ``python -m thyroid.checkpoints convert``):
``efficientnet_lite0/stem/{weights,BatchNorm/*}``,
``efficientnet_lite0/blocks_<i>/{expand/weights, depthwise/depthwise_weights, project/weights}``
(+ ``BatchNorm/*`` each; block 0 has no expand conv), ``efficientnet_lite0/conv_head/...``,
classifier ``efficientnet_lite0/Logits/fc/{weights,biases}`` (1000 classes).
"""

from thyroid.compat import tf, tf1, slim
from thyroid.nets import batch_norm
from thyroid.nets.spec import CheckpointInfo, NetworkSpec
from thyroid.nets.net_inputs import efficientnet_lite_preprocess

SCOPE = "efficientnet_lite0"
DEFAULT_IMAGE_SIZE = 224
STEM_FILTERS = 32
HEAD_FILTERS = 1280
CHECKPOINT = CheckpointInfo(url=None, tarball=None, checkpoint_file="model.ckpt",
                            subdir="efficientnet_lite0")

# (expand ratio, kernel, first stride, output filters, repeats): the EfficientNet-B0 stages.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))

# How strided convolutions are padded: "same" = TensorFlow SAME (more padding at the bottom /
# right, what the original TF EfficientNet-Lite was trained with); "symmetric" = PyTorch style.
# The converted weights reproduce the reference ImageNet predictions with "same".
STRIDE2_PADDING = "same"

BATCH_NORM_PARAMS = {"center": True, "scale": True, "decay": 0.99, "epsilon": 0.001}


def block_table():
    """-> list of (expand_ratio, kernel, stride, input_filters, output_filters), one per block."""
    blocks = []
    filters_in = STEM_FILTERS
    for expand, kernel, stride, filters_out, repeats in STAGES:
        for repeat in range(repeats):
            blocks.append((expand, kernel, stride if repeat == 0 else 1, filters_in, filters_out))
            filters_in = filters_out
    return blocks


NUM_BLOCKS = len(block_table())  # 16


def arg_scope(is_training=False, weight_decay=1e-5):
    batch_norm_params = dict(BATCH_NORM_PARAMS, is_training=is_training, **batch_norm.FUSED_BUILD)
    with slim.arg_scope([slim.conv2d, slim.separable_conv2d],
                        weights_initializer=tf1.variance_scaling_initializer(2.0, "fan_out"),
                        activation_fn=tf.nn.relu6, normalizer_fn=slim.batch_norm,
                        padding="SAME"):
        with slim.arg_scope([slim.batch_norm], **batch_norm_params):
            with slim.arg_scope([slim.conv2d],
                                weights_regularizer=slim.l2_regularizer(weight_decay)):
                with slim.arg_scope([slim.dropout], is_training=is_training) as scope:
                    return scope


def _pad_symmetric(net, kernel):
    pad = (kernel - 1) // 2
    return tf.pad(net, [[0, 0], [pad, pad], [pad, pad], [0, 0]])


def _strided(layer, net, kernel, stride, **kwargs):
    if stride > 1 and STRIDE2_PADDING == "symmetric":
        return layer(_pad_symmetric(net, kernel), stride=stride, padding="VALID", **kwargs)
    return layer(net, stride=stride, **kwargs)


def _mbconv(net, expand, kernel, stride, filters_in, filters_out, scope):
    with tf1.variable_scope(scope):
        inputs = net
        if expand != 1:
            net = slim.conv2d(net, filters_in * expand, [1, 1], scope="expand")
        net = _strided(slim.separable_conv2d, net, kernel, stride, num_outputs=None,
                       kernel_size=[kernel, kernel], depth_multiplier=1, scope="depthwise")
        net = slim.conv2d(net, filters_out, [1, 1], activation_fn=None, scope="project")
        if stride == 1 and filters_in == filters_out:
            net = tf.add(net, inputs, name="residual")
    return net


def _prefix(inputs, end_points):
    """stem .. blocks_14: everything below the layers fine-tuning trains."""
    net = _strided(slim.conv2d, inputs, 3, 2, num_outputs=STEM_FILTERS, kernel_size=[3, 3],
                   scope="stem")
    end_points["stem"] = net
    for index, (expand, kernel, stride, filters_in, filters_out) in enumerate(block_table()):
        if index == NUM_BLOCKS - 1:
            break
        name = "blocks_%d" % index
        net = _mbconv(net, expand, kernel, stride, filters_in, filters_out, name)
        end_points[name] = net
    return net


def _suffix(net, end_points):
    """blocks_15, conv_head and the global pool."""
    index = NUM_BLOCKS - 1
    expand, kernel, stride, filters_in, filters_out = block_table()[index]
    name = "blocks_%d" % index
    net = _mbconv(net, expand, kernel, stride, filters_in, filters_out, name)
    end_points[name] = net
    net = slim.conv2d(net, HEAD_FILTERS, [1, 1], scope="conv_head")
    end_points["conv_head"] = net
    net = tf.reduce_mean(net, axis=[1, 2], name="global_pool")
    end_points["global_pool"] = net
    return net


def _backbone(inputs, end_points):
    return _suffix(_prefix(inputs, end_points), end_points)


def features(inputs, is_training=False):
    """-> (global-average-pooled head [N, 1280], end_points)."""
    end_points = {}
    with slim.arg_scope(arg_scope(is_training=is_training)):
        with tf1.variable_scope(SCOPE, values=[inputs]):
            net = _backbone(inputs, end_points)
    return net, end_points


def frozen_prefix(inputs):
    """stem .. blocks_14 in inference mode -> [N, S/32, S/32, 192]; fine-tuning caches it,
    since nothing below blocks_15 is trained and batch norm keeps its ImageNet statistics."""
    with slim.arg_scope(arg_scope(is_training=False)):
        with tf1.variable_scope(SCOPE, values=[inputs]):
            return _prefix(inputs, {})


def prefix_end_points(inputs):
    """stem .. blocks_14 in inference mode -> {end point: tensor}: the frozen encoder a
    segmentation decoder reads (``nets.segmentation``); same variables as ``features``."""
    end_points = {}
    with slim.arg_scope(arg_scope(is_training=False)):
        with tf1.variable_scope(SCOPE, values=[inputs]):
            _prefix(inputs, end_points)
    return end_points


def trainable_suffix(prefix, is_training=False):
    """blocks_15 + conv_head + pool on a ``frozen_prefix`` output -> (pooled [N, 1280],
    end_points)."""
    end_points = {}
    with slim.arg_scope(arg_scope(is_training=is_training)):
        with tf1.variable_scope(SCOPE, values=[prefix]):
            net = _suffix(prefix, end_points)
    return net, end_points


def imagenet_logits(inputs, num_classes=1000):
    """The full EfficientNet-Lite0 with its 1000-class classifier, inference mode."""
    end_points = {}
    with slim.arg_scope(arg_scope(is_training=False)):
        with tf1.variable_scope(SCOPE, values=[inputs]):
            net = _backbone(inputs, end_points)
            with tf1.variable_scope("Logits"):
                logits = slim.fully_connected(net, num_classes, activation_fn=None, scope="fc")
            end_points["Logits"] = logits
            end_points["Predictions"] = tf.nn.softmax(logits, name="Predictions")
    return logits, end_points


def make_spec():
    last = "%s/blocks_%d" % (SCOPE, NUM_BLOCKS - 1)
    return NetworkSpec(
        name="efficientnet_lite0",
        scope=SCOPE,
        default_image_size=DEFAULT_IMAGE_SIZE,
        min_image_size=32,
        preprocess=efficientnet_lite_preprocess,
        features=features,
        bottleneck_endpoint="global_pool",
        bottleneck_shape=(HEAD_FILTERS,),
        head_scope="efficientnet_lite0/Head",
        exclude_scopes=("efficientnet_lite0/Logits", "efficientnet_lite0/Head"),
        trainable_scopes=(last, "efficientnet_lite0/conv_head", "efficientnet_lite0/Head"),
        frozen_prefix=frozen_prefix,
        trainable_suffix=trainable_suffix,
        frozen_prefix_end_point="blocks_%d" % (NUM_BLOCKS - 2),
        imagenet_logits=imagenet_logits,
        imagenet_label_offset=0,
        checkpoint=CHECKPOINT,
        # The end of each resolution stage from the middle of the net on.
        feature_layers=("blocks_4", "blocks_7", "blocks_10", "blocks_14", "blocks_15", "conv_head"),
    )
