"""Network registry: ``get_network(name) -> NetworkSpec`` (see docs/DESIGN.md)."""

from thyroid.nets import efficientnet_lite, inception, mobilenet_v1, segmentation, small_cnn, vgg
from thyroid.nets.segmentation import SegmentationSpec
from thyroid.nets.spec import CheckpointInfo, NetworkSpec

_FACTORIES = {
    "vgg_16": vgg.make_spec,
    "inception_v3": inception.make_spec,
    "mobilenet_v1": mobilenet_v1.make_spec,
    "efficientnet_lite0": efficientnet_lite.make_spec,
    "small_cnn": small_cnn.make_spec,
}

NETWORK_NAMES = tuple(_FACTORIES)

_CACHE = {}


def get_network(name):
    """-> the ``NetworkSpec`` registered as ``name`` (one of ``NETWORK_NAMES``)."""
    if name not in _FACTORIES:
        raise ValueError("Unknown network %r; choose one of %s" % (name, ", ".join(NETWORK_NAMES)))
    if name not in _CACHE:
        _CACHE[name] = _FACTORIES[name]()
    return _CACHE[name]


_SEGMENTATION_FACTORIES = {
    "efficientnet_lite0_unet": segmentation.make_efficientnet_lite0_unet,
}
SEGMENTATION_NAMES = tuple(_SEGMENTATION_FACTORIES)


def get_segmentation_network(name):
    """-> the ``SegmentationSpec`` registered as ``name`` (one of ``SEGMENTATION_NAMES``)."""
    if name not in _SEGMENTATION_FACTORIES:
        raise ValueError("Unknown segmentation network %r; choose one of %s"
                         % (name, ", ".join(SEGMENTATION_NAMES)))
    if name not in _CACHE:
        _CACHE[name] = _SEGMENTATION_FACTORIES[name]()
    return _CACHE[name]


__all__ = ["get_network", "NETWORK_NAMES", "NetworkSpec", "CheckpointInfo",
           "get_segmentation_network", "SEGMENTATION_NAMES", "SegmentationSpec"]
