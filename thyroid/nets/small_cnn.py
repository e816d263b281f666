"""The small CNN trained from scratch: ``small_cnn_head`` applied to preprocessed images."""

from thyroid.nets.heads import small_cnn_head
from thyroid.nets.spec import NetworkSpec
from thyroid.preprocessing.net_inputs import unit_preprocess

SCOPE = "SmallCNN"
DEFAULT_IMAGE_SIZE = 128


def features(inputs, is_training=False):
    """Identity: the whole small CNN is its head."""
    del is_training
    return inputs, {"images": inputs}


def network(images, num_classes=2, is_training=False):
    """The complete small CNN on [0, 1]-scaled images -> logits [N, num_classes]."""
    return small_cnn_head(images, num_classes, is_training, SCOPE)


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
        imagenet_num_classes=0,
        checkpoint=None,
    )
