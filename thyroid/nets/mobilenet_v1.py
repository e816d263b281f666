"""MobileNet-v1 1.0/224, slim style, with the variable names of the official TF-Slim checkpoint
(mobilenet_v1_2018_08_02/mobilenet_v1_1.0_224):

``MobilenetV1/Conv2d_0/weights`` [3,3,3,32] + ``Conv2d_0/BatchNorm/{gamma,beta,moving_mean,
moving_variance}``, then 13 depthwise-separable blocks ``Conv2d_<i>_depthwise/depthwise_weights``
[3,3,C,1] and ``Conv2d_<i>_pointwise/weights`` [1,1,C,D], each followed by batch norm and ReLU6,
and the classifier ``MobilenetV1/Logits/Conv2d_1c_1x1/{weights,biases}`` [1,1,1024,1001].
"""

from thyroid.compat import tf, tf1, slim
from thyroid.nets import batch_norm
from thyroid.nets.spec import CheckpointInfo, NetworkSpec
from thyroid.nets.net_inputs import inception_preprocess

SCOPE = "MobilenetV1"
DEFAULT_IMAGE_SIZE = 224
NUM_BLOCKS = 13
CHECKPOINT = CheckpointInfo(
    url="http://download.tensorflow.org/models/mobilenet_v1_2018_08_02/mobilenet_v1_1.0_224.tgz",
    tarball="mobilenet_v1_1.0_224.tgz",
    checkpoint_file="mobilenet_v1_1.0_224.ckpt",
    subdir="mobilenet_v1",
)

# (stride, pointwise depth) of the depthwise-separable blocks Conv2d_1 .. Conv2d_13.
BLOCKS = ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
          (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024))

# The official mobilenet_v1_arg_scope uses center=True, scale=True: the 2018_08_02 checkpoint
# holds BatchNorm/gamma for every layer.
BATCH_NORM_PARAMS = {"center": True, "scale": True, "decay": 0.9997, "epsilon": 0.001}


def arg_scope(is_training=False, weight_decay=0.00004, stddev=0.09):
    batch_norm_params = dict(BATCH_NORM_PARAMS, is_training=is_training, **batch_norm.FUSED_BUILD)
    with slim.arg_scope([slim.conv2d, slim.separable_conv2d],
                        weights_initializer=tf1.truncated_normal_initializer(stddev=stddev),
                        activation_fn=tf.nn.relu6, normalizer_fn=slim.batch_norm,
                        padding="SAME"):
        with slim.arg_scope([slim.batch_norm], **batch_norm_params):
            with slim.arg_scope([slim.conv2d],
                                weights_regularizer=slim.l2_regularizer(weight_decay)):
                with slim.arg_scope([slim.separable_conv2d], weights_regularizer=None):
                    with slim.arg_scope([slim.dropout], is_training=is_training) as scope:
                        return scope


def _base(inputs, end_points):
    net = slim.conv2d(inputs, 32, [3, 3], stride=2, scope="Conv2d_0")
    end_points["Conv2d_0"] = net
    for index, (stride, depth) in enumerate(BLOCKS, start=1):
        name = "Conv2d_%d_depthwise" % index
        net = slim.separable_conv2d(net, None, [3, 3], depth_multiplier=1, stride=stride,
                                    scope=name)
        end_points[name] = net
        name = "Conv2d_%d_pointwise" % index
        net = slim.conv2d(net, depth, [1, 1], stride=1, scope=name)
        end_points[name] = net
    return net


def features(inputs, is_training=False):
    """-> (global average pool of Conv2d_13_pointwise [N, 1024], end_points)."""
    end_points = {}
    with slim.arg_scope(arg_scope(is_training=is_training)):
        with tf1.variable_scope(SCOPE, values=[inputs]):
            net = _base(inputs, end_points)
            with tf1.name_scope("GlobalPool"):
                net = tf.reduce_mean(net, axis=[1, 2], keepdims=True, name="AvgPool_1a")
                end_points["AvgPool_1a"] = net
                net = tf.squeeze(net, [1, 2], name="global_pool")
            end_points["global_pool"] = net
    return net, end_points


def imagenet_logits(inputs, num_classes=1001):
    """The full MobileNet-v1 with its 1001-class classifier, inference mode."""
    end_points = {}
    with slim.arg_scope(arg_scope(is_training=False)):
        with tf1.variable_scope(SCOPE, values=[inputs]):
            net = _base(inputs, end_points)
            with tf1.variable_scope("Logits"):
                net = tf.reduce_mean(net, axis=[1, 2], keepdims=True, name="AvgPool_1a")
                end_points["AvgPool_1a"] = net
                logits = slim.conv2d(net, num_classes, [1, 1], activation_fn=None,
                                     normalizer_fn=None, scope="Conv2d_1c_1x1")
                logits = tf.squeeze(logits, [1, 2], name="SpatialSqueeze")
            end_points["Logits"] = logits
            end_points["Predictions"] = tf.nn.softmax(logits, name="Predictions")
    return logits, end_points


def make_spec():
    return NetworkSpec(
        name="mobilenet_v1",
        scope=SCOPE,
        default_image_size=DEFAULT_IMAGE_SIZE,
        min_image_size=32,
        preprocess=inception_preprocess,
        features=features,
        bottleneck_endpoint="global_pool",
        bottleneck_shape=(1024,),
        head_scope="MobilenetV1/Logits",
        exclude_scopes=("MobilenetV1/Logits",),
        trainable_scopes=("MobilenetV1/Conv2d_13_depthwise", "MobilenetV1/Conv2d_13_pointwise",
                          "MobilenetV1/Logits"),
        imagenet_logits=imagenet_logits,
        imagenet_label_offset=1,
        checkpoint=CHECKPOINT,
    )
