"""Inception-v3 from tf_slim.nets.inception_v3 (official variable names), cut at PreLogits."""

from tf_slim.nets import inception_v3 as slim_inception

from thyroid.compat import tf, tf1, slim
from thyroid.nets import batch_norm, step_random
from thyroid.nets.spec import CheckpointInfo, NetworkSpec
from thyroid.nets.net_inputs import inception_preprocess

SCOPE = "InceptionV3"
DEFAULT_IMAGE_SIZE = 299
CHECKPOINT = CheckpointInfo(
    url="http://download.tensorflow.org/models/inception_v3_2016_08_28.tar.gz",
    tarball="inception_v3_2016_08_28.tar.gz",
    checkpoint_file="inception_v3.ckpt",
    subdir="inception_v3",
)


def _arg_scope():
    """slim's Inception-v3 scope (fused batch norm already), with batch_norm.FUSED_BUILD's
    update collections."""
    updates = batch_norm.FUSED_BUILD.get("updates_collections", tf1.GraphKeys.UPDATE_OPS)
    return slim_inception.inception_v3_arg_scope(updates_collections=updates)


def features(inputs, is_training=False, dropout_keep_prob=0.8):
    """-> (PreLogits [N, 2048]: global average pool of Mixed_7c, dropout only when training)."""
    with slim.arg_scope(_arg_scope()):
        with slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training):
            net, end_points = slim_inception.inception_v3_base(inputs, scope=SCOPE)
            with tf1.name_scope("%s/PreLogitsPool" % SCOPE):
                net = tf.reduce_mean(net, axis=[1, 2], keepdims=True, name="AvgPool_1a")
                end_points["AvgPool_1a"] = net
                net = step_random.dropout(net, dropout_keep_prob, is_training, salt=21,
                                          scope="Dropout_1b")
                net = tf.squeeze(net, [1, 2], name="PreLogits")
            end_points["PreLogits"] = net
    return net, end_points


def imagenet_logits(inputs):
    """The full Inception-v3 with its 1001-class classifier (class 0 = background)."""
    with slim.arg_scope(_arg_scope()):
        logits, end_points = slim_inception.inception_v3(inputs, num_classes=1001,
                                                         is_training=False, scope=SCOPE)
    return logits, end_points


def make_spec():
    return NetworkSpec(
        name="inception_v3",
        scope=SCOPE,
        default_image_size=DEFAULT_IMAGE_SIZE,
        min_image_size=75,
        preprocess=inception_preprocess,
        features=features,
        bottleneck_endpoint="PreLogits",
        bottleneck_shape=(2048,),
        head_scope="InceptionV3/Logits",
        exclude_scopes=("InceptionV3/Logits", "InceptionV3/AuxLogits"),
        trainable_scopes=("InceptionV3/Mixed_7c", "InceptionV3/Logits"),
        imagenet_logits=imagenet_logits,
        imagenet_label_offset=1,
        checkpoint=CHECKPOINT,
        feature_layers=("Mixed_5d", "Mixed_6e", "Mixed_7c"),
    )
