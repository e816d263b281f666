"""Network registry: ``get_network(name) -> NetworkSpec`` (see docs/DESIGN.md)."""

from thyroid.nets import efficientnet_lite, inception, mobilenet_v1, small_cnn, vgg
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


__all__ = ["get_network", "NETWORK_NAMES", "NetworkSpec", "CheckpointInfo"]
