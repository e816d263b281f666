"""Classifier heads put on top of a backbone's bottleneck (or on images, for the small CNN)."""

from thyroid.compat import tf, tf1, slim
from thyroid.nets import step_random

# Explicit op-level seeds: with the graph seed they fix each head's initial weights and (with
# the global step) its dropout masks however many backbone ops come before it (so the VGG
# prefix-cache graph and the whole-network graph start from the same head).


def _init(seed):
    return tf1.glorot_uniform_initializer(seed=seed)


def _flatten_if_spatial(features):
    if features.shape.ndims is not None and features.shape.ndims > 2:
        return slim.flatten(features, scope="flatten")
    return features


def fc_head(features, num_classes, is_training, scope, dropout_keep_prob=0.5, hidden_units=256):
    """Flatten (if spatial) -> FC ``hidden_units`` (ReLU) -> dropout -> FC ``num_classes`` logits.

    Variables live under ``scope`` (``<scope>/fc1``, ``<scope>/logits``). Returns logits
    [N, num_classes].
    """
    with tf1.variable_scope(scope, values=[features]):
        with slim.arg_scope([slim.fully_connected],
                            weights_regularizer=slim.l2_regularizer(1e-4)):
            net = _flatten_if_spatial(features)
            if hidden_units:
                net = slim.fully_connected(net, hidden_units, activation_fn=tf.nn.relu,
                                           weights_initializer=_init(11), scope="fc1")
            net = step_random.dropout(net, dropout_keep_prob, is_training, salt=12, scope="dropout")
            logits = slim.fully_connected(net, num_classes, activation_fn=None,
                                          weights_initializer=_init(13), scope="logits")
    return logits


def _spatial_size(net):
    shape = net.shape.as_list()
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        return None
    return min(shape[1], shape[2])


def small_cnn_head(features, num_classes, is_training, scope, dropout_keep_prob=0.5):
    """The paper's small CNN: 3 x (3x3 conv 32/32/64 + ReLU, 2x2 max pool) -> FC 64 -> dropout
    -> logits. A pooling layer is skipped once the spatial size is below 4 (e.g. on a 7x7
    VGG bottleneck the first pooling gives 3x3 and the rest are skipped). Flat [N, D] features
    go straight to the FC layers. Returns logits [N, num_classes].
    """
    with tf1.variable_scope(scope, values=[features]):
        with slim.arg_scope([slim.conv2d, slim.fully_connected],
                            activation_fn=tf.nn.relu,
                            weights_regularizer=slim.l2_regularizer(1e-4)):
            net = features
            if net.shape.ndims == 4:
                for index, depth in enumerate((32, 32, 64), start=1):
                    net = slim.conv2d(net, depth, [3, 3], padding="SAME",
                                      weights_initializer=_init(index), scope="conv%d" % index)
                    size = _spatial_size(net)
                    if size is None or size >= 4:
                        net = slim.max_pool2d(net, [2, 2], stride=2, padding="VALID",
                                              scope="pool%d" % index)
                net = slim.flatten(net, scope="flatten")
            net = slim.fully_connected(net, 64, weights_initializer=_init(4), scope="fc1")
            net = step_random.dropout(net, dropout_keep_prob, is_training, salt=5, scope="dropout")
            logits = slim.fully_connected(net, num_classes, activation_fn=None,
                                          weights_initializer=_init(6), scope="logits")
    return logits
