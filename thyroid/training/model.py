"""The classifier graph of every mode, shared by training, evaluation and export."""

from thyroid.compat import tf
from thyroid.training.frozen_network import BOTTLENECK, FROZEN_PREFIX, POOLED_LAYERS
from thyroid.nets import heads

IMAGES = "images"
NUM_CLASSES = 2  # softmax over benign/malignant; P(malignant) = softmax[:, 1]


def input_kind(mode, uses_frozen_prefix=False):
    """What the graph is fed: raw images or cached frozen activations."""
    if mode in ("bottleneck_fc", "bottleneck_svm"):
        return BOTTLENECK
    if mode == "bottleneck_logreg":
        return POOLED_LAYERS
    if mode == "finetune" and uses_frozen_prefix:
        return FROZEN_PREFIX
    return IMAGES


def build_logits(spec, mode, inputs, is_training, uses_frozen_prefix=False):
    """(logits [N, 2], end_points) for ``inputs`` of the kind ``input_kind`` names.

    ``end_points`` are the backbone's (empty when fed cached bottlenecks) plus ``Logits``,
    as slim's network functions return them; Grad-CAM reads its feature map there.

    Fine-tuning keeps batch norm in inference mode (ImageNet statistics): the small
    batches a CPU affords would give noisy statistics. Dropout in the head still
    follows ``is_training``.
    """
    kind = input_kind(mode, uses_frozen_prefix)
    if kind == BOTTLENECK:
        features, end_points = inputs, {}
    elif kind == FROZEN_PREFIX:
        features, end_points = spec.trainable_suffix(inputs, is_training=False)
    else:
        net_inputs = spec.preprocess(tf.cast(inputs, tf.float32))
        backbone_training = is_training if mode == "scratch" else False
        features, end_points = spec.features(net_inputs, is_training=backbone_training)
    spatial = features.shape.ndims == 4
    if mode == "scratch" or (mode == "bottleneck_fc" and spatial):
        head = heads.small_cnn_head
    else:
        head = heads.fc_head
    logits = head(features, NUM_CLASSES, is_training, scope=spec.head_scope)
    end_points = dict(end_points, Logits=logits)
    return logits, end_points


def malignant_probability(logits):
    return tf.nn.softmax(logits)[:, 1]
