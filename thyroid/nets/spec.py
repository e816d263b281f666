"""The description of one network: what the registry (`thyroid.nets.get_network`) returns."""

import dataclasses
from typing import Callable, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """Where an official pre-trained checkpoint comes from.

    ``url``: the tarball's download address (None when it is produced locally, e.g. by
    ``python -m thyroid.checkpoints convert``); ``tarball``: the archive's file name;
    ``checkpoint_file``: the checkpoint prefix inside it (``vgg_16.ckpt``);
    ``subdir``: the folder under ``checkpoint_dir`` it is extracted into.
    """

    url: Optional[str]
    tarball: Optional[str]
    checkpoint_file: str
    subdir: str


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    name: str
    scope: str
    default_image_size: int
    min_image_size: int
    preprocess: Callable
    features: Callable
    bottleneck_endpoint: str
    bottleneck_shape: Tuple[int, ...]
    head_scope: str
    exclude_scopes: Tuple[str, ...]
    trainable_scopes: Tuple[str, ...]
    imagenet_logits: Optional[Callable] = None
    imagenet_label_offset: int = 0
    checkpoint: Optional[CheckpointInfo] = None
    frozen_prefix: Optional[Callable] = None
    trainable_suffix: Optional[Callable] = None
    # The end point ``frozen_prefix`` stops at (the last layer fine-tuning never trains).
    frozen_prefix_end_point: Optional[str] = None
    # End points pooled (mean and SD over space) into the bottleneck_logreg features.
    feature_layers: Tuple[str, ...] = ()

