"""Per-network input scaling: float32 [N,H,W,3] in [0, 255] -> what each network expects.

Images are already resized by ``thyroid.preprocessing.resize``; these functions only rescale.
"""

from thyroid.compat import tf

VGG_MEANS = (123.68, 116.78, 103.94)


def _as_float(images):
    return tf.cast(images, tf.float32)


def vgg_preprocess(images):
    """Subtracts the ImageNet RGB mean (VGG / ResNet-v1 convention)."""
    return _as_float(images) - tf.constant(VGG_MEANS, dtype=tf.float32)


def inception_preprocess(images):
    """Scales [0, 255] to [-1, 1] (Inception, MobileNet)."""
    return _as_float(images) / 127.5 - 1.0


def efficientnet_lite_preprocess(images):
    """(x - 127) / 128 (EfficientNet-Lite)."""
    return (_as_float(images) - 127.0) / 128.0


def unit_preprocess(images):
    """Scales [0, 255] to [0, 1] (the small CNN trained from scratch)."""
    return _as_float(images) / 255.0

