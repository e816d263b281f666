"""Segmentation networks: where the nodule is, as a per-pixel logit.

``efficientnet_lite0_unet``: EfficientNet-Lite0's ImageNet encoder, frozen (its variables keep
the official checkpoint's names, ``efficientnet_lite0/...``), read at three scales (1/8, 1/16
and 1/32 of the input: ``blocks_4``, ``blocks_10``, ``blocks_14``), and a small U-Net-style
decoder under ``segmentation/decoder``: each scale projected to ``DECODER_WIDTH`` channels,
upsampled and added to the next finer one, a 3x3 convolution after each sum, one logit per
pixel at 1/8, upsampled bilinearly to the input size. Only the decoder trains (about 50k
weights), so its training runs on cached encoder activations and fits two CPU cores.
"""

import dataclasses
from typing import Callable, Tuple

from thyroid.compat import tf, tf1, slim
from thyroid.nets import efficientnet_lite
from thyroid.nets.net_inputs import efficientnet_lite_preprocess

DECODER_SCOPE = "segmentation/decoder"
DECODER_WIDTH = 32
WEIGHT_DECAY = 1e-4


@dataclasses.dataclass(frozen=True)
class SegmentationSpec:
    """``encoder``: the registry name of the frozen encoder (its checkpoint and input scaling);
    ``skip_layers``: the encoder end points the decoder reads, finest first;
    ``preprocess``: the encoder's input scaling (images 0..255 -> its input);
    ``encoder_end_points(net_inputs) -> {name: tensor}``; ``decoder(maps, is_training) ->
    logits [N, h, w]`` at the finest skip's resolution; ``scope``: the decoder's variables."""
    name: str
    encoder: str
    skip_layers: Tuple[str, ...]
    preprocess: Callable
    encoder_end_points: Callable
    decoder: Callable
    scope: str
    default_image_size: int
    min_image_size: int


def _initializer(seed):
    # Op-level seeds: with the graph seed they fix the decoder's start whatever comes before.
    return tf1.glorot_uniform_initializer(seed=seed)


def _resize_to(net, like):
    size = like.shape.as_list()[1:3]
    if None in size:
        size = tf.shape(like)[1:3]
    return tf.image.resize(net, size, method="bilinear")


def unet_decoder(maps, is_training=False, width=DECODER_WIDTH, scope=DECODER_SCOPE):
    """maps (finest first) -> logits [N, h, w] at the first map's resolution."""
    del is_training  # no dropout or batch norm: nothing differs between training and use
    with tf1.variable_scope(scope, values=list(maps)):
        with slim.arg_scope([slim.conv2d], activation_fn=tf.nn.relu, padding="SAME",
                            weights_regularizer=slim.l2_regularizer(WEIGHT_DECAY)):
            last = len(maps) - 1
            net = slim.conv2d(maps[last], width, [1, 1], weights_initializer=_initializer(40 + last),
                              scope=f"lateral_{last}")
            for index in reversed(range(last)):
                lateral = slim.conv2d(maps[index], width, [1, 1],
                                      weights_initializer=_initializer(40 + index),
                                      scope=f"lateral_{index}")
                net = _resize_to(net, lateral) + lateral
                net = slim.conv2d(net, width, [3, 3], weights_initializer=_initializer(50 + index),
                                  scope=f"fuse_{index}")
            logits = slim.conv2d(net, 1, [1, 1], activation_fn=None,
                                 weights_initializer=_initializer(60), scope="logits")
    return logits[..., 0]


def full_size_logits(spec, images_0_255, image_size):
    """images (float 0..255) [N, S, S, 3] -> logits [N, S, S]: encoder, decoder, upsampling.
    Built in the current graph (weights come from the caller's getter or restore)."""
    end_points = spec.encoder_end_points(spec.preprocess(images_0_255))
    logits = spec.decoder([end_points[name] for name in spec.skip_layers])
    return upsample_logits(logits, image_size)


def upsample_logits(logits, image_size):
    """[N, h, w] -> [N, S, S], bilinear (the decoder predicts at 1/8 of the input)."""
    return tf.image.resize(logits[..., None], [image_size, image_size], method="bilinear")[..., 0]


def make_efficientnet_lite0_unet():
    return SegmentationSpec(
        name="efficientnet_lite0_unet", encoder="efficientnet_lite0",
        skip_layers=("blocks_4", "blocks_10", "blocks_14"),
        preprocess=efficientnet_lite_preprocess, encoder_end_points=efficientnet_lite.prefix_end_points, decoder=unet_decoder,
        scope=DECODER_SCOPE, default_image_size=224, min_image_size=32)
