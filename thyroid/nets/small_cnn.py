"""The small CNN trained from scratch: ``heads.small_cnn_head`` on [0, 1]-scaled images."""

from thyroid.nets.spec import NetworkSpec
from thyroid.nets.net_inputs import unit_preprocess

SCOPE = "SmallCNN"
DEFAULT_IMAGE_SIZE = 128


def features(inputs, is_training=False):
    """Identity: the whole small CNN is its head."""
    del is_training
    return inputs, {"images": inputs}


def make_spec():
    return NetworkSpec(
        name="small_cnn",
        scope=SCOPE,
        default_image_size=DEFAULT_IMAGE_SIZE,
        min_image_size=8,
        preprocess=unit_preprocess,
        features=features,
        bottleneck_endpoint="images",
        bottleneck_shape=(DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE, 3),
        head_scope=SCOPE,
        exclude_scopes=(SCOPE,),
        trainable_scopes=(SCOPE,),
        imagenet_logits=None,
        imagenet_label_offset=0,
        checkpoint=None,
    )
