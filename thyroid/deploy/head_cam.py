"""Grad-CAM of the classifier head in closed form, as graph ops an export converts to TFLite.

Every exported head is slim's ``fc_head`` on globally mean-pooled feature maps A [N, H, W, C]:
p = mean over space of A, z = p W1 + b1, h = ReLU(z) (dropout is the identity at inference),
logits = h W2 + b2. Grad-CAM explains the logit difference l1 - l0 (P(malignant) is the
sigmoid of it): its gradient with respect to p is W1 (1[z > 0] * w) with w = W2[:, 1] - W2[:, 0],
and with respect to A it is that divided by H W at every position, so the channel weights are
alpha = W1 (1[z > 0] * w) / (H W) and the map is ReLU(sum_c alpha_c A_c) [N, H, W]. Only
matrix products, a comparison, a select, products, a sum and a ReLU: built-in TFLite operations
(float and int8), so the exported model draws its own map and serving needs no TensorFlow.

``scaled_to_peak`` divides a map by its own maximum (all zeros stay zeros): a fold ensemble's
``cam`` is the mean of its members' maps scaled so, each member counting alike.
"""

import dataclasses

from thyroid.compat import tf, tf1

# The smallest peak a map is divided by: a map of zeros stays zeros.
PEAK_FLOOR = 1e-12


@dataclasses.dataclass(frozen=True)
class HeadWeights:
    """The head's two dense layers: ``hidden`` [C, U] and its ``hidden_bias`` [U], ``logits``
    [U, 2]."""
    hidden: object
    hidden_bias: object
    logits: object


def _one_variable(name):
    found = [v for v in tf1.global_variables() if v.op.name == name]
    if len(found) != 1:
        raise ValueError(f"the graph holds {len(found)} variables named {name}, not one: "
                         "not an fc_head with a hidden layer")
    return found[0]


def head_weights(head_scope):
    """The fc_head variables under ``head_scope`` (e.g. ``fold0/efficientnet_lite0/Head``)."""
    return HeadWeights(hidden=_one_variable(f"{head_scope}/fc1/weights"),
                       hidden_bias=_one_variable(f"{head_scope}/fc1/biases"),
                       logits=_one_variable(f"{head_scope}/logits/weights"))


def last_feature_map(end_points):
    """(name, tensor) of the last 4-D end point that is not a pooling output: the maps the
    global mean pool reads (EfficientNet-Lite0 ``conv_head``, MobileNet-v1
    ``Conv2d_13_pointwise``)."""
    candidates = [(name, tensor) for name, tensor in end_points.items()
                  if tensor.shape.ndims == 4 and "pool" not in name.lower()]
    if not candidates:
        raise ValueError("the backbone exposes no spatial end point for Grad-CAM")
    return candidates[-1]


def head_cam(feature_map, pooled, weights):
    """ReLU(sum_c alpha_c A_c) [N, H, W] for maps ``feature_map`` [N, H, W, C] whose spatial
    mean ``pooled`` [N, C] feeds the head with ``weights``."""
    height, width = feature_map.shape.as_list()[1:3]
    if not height or not width:
        raise ValueError("Grad-CAM in the graph needs a static feature-map size")
    hidden = tf.matmul(pooled, weights.hidden) + weights.hidden_bias
    difference = weights.logits[:, 1] - weights.logits[:, 0]
    # The ReLU's gradient: the difference weights where the hidden unit is active, else 0.
    gated = tf.where(hidden > 0.0, hidden * 0.0 + difference, tf.zeros_like(hidden))
    # W1 (1[z > 0] * w) as a product and a sum over the hidden units of W1 transposed, the
    # layout the first dense layer already stores: the converter then keeps one copy of W1
    # (a matrix product by W1 would store a second, transposed one: +1.3 MB per head).
    transposed = tf.transpose(weights.hidden)
    alpha = tf.reduce_sum(transposed[None] * gated[:, :, None], axis=1) / float(height * width)
    return tf.nn.relu(tf.reduce_sum(feature_map * alpha[:, None, None, :], axis=-1))


def scaled_to_peak(cam):
    """Each map [N, H, W] divided by its own maximum."""
    peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
    return cam / tf.maximum(peak, PEAK_FLOOR)
