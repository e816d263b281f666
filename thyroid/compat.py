"""The one place where TensorFlow and TF-Slim are imported, and where their gaps are bridged.

tf-slim 1.1.0 builds batch norm through ``tensorflow.python.layers.normalization``,
which lazily imports ``tf_keras.legacy_tf_layers.normalization``. tf-keras 2.21 ships
that package only as ``tf_keras.src.legacy_tf_layers``, so we register the old name
before slim is first used. Every module imports ``tf`` and ``slim`` from here.
"""

import importlib
import os
import sys
import warnings

# Quieter TensorFlow start-up; users can still override these.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TF-Slim layers need the Keras 2 implementation, not Keras 3.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def _alias_legacy_tf_layers():
    old_name = "tf_keras.legacy_tf_layers"
    if old_name in sys.modules:
        return
    try:
        importlib.import_module(old_name)
        return
    except ImportError:
        pass
    package = importlib.import_module("tf_keras.src.legacy_tf_layers")
    sys.modules[old_name] = package
    for submodule in ("base", "convolutional", "core", "normalization", "pooling",
                      "variable_scope_shim"):
        try:
            sys.modules[f"{old_name}.{submodule}"] = importlib.import_module(
                f"tf_keras.src.legacy_tf_layers.{submodule}")
        except ImportError:  # only the ones this tf-keras ships
            pass


_alias_legacy_tf_layers()

import tensorflow as tf  # noqa: E402


def _alias_moved_control_flow_ops():
    """tf-slim's image decoder calls ``control_flow_ops.case`` / ``.cond``, which TF 2.21
    moved to their own modules; put the old names back."""
    from tensorflow.python.ops import control_flow_ops
    if not hasattr(control_flow_ops, "case"):
        from tensorflow.python.ops import control_flow_case
        control_flow_ops.case = control_flow_case.case
    if not hasattr(control_flow_ops, "cond"):
        from tensorflow.python.ops import cond
        control_flow_ops.cond = cond.cond


_alias_moved_control_flow_ops()


def _alias_moved_tensor_class():
    """tf-slim's fused batch norm (thyroid/nets/batch_norm.py) checks ``ops.Tensor``, which
    TF 2.21 moved to ``framework.tensor``; put the old name back."""
    from tensorflow.python.framework import ops, tensor
    if not hasattr(ops, "Tensor"):
        ops.Tensor = tensor.Tensor


_alias_moved_tensor_class()

import tf_slim as slim  # noqa: E402

# Slim's layers go through Keras' legacy layer classes, which warn on every call that
# they are deprecated; the warnings say nothing a user can act on.
warnings.filterwarnings("ignore", message=r".*is deprecated and will be removed.*")
tf.get_logger().setLevel("ERROR")

tf1 = tf.compat.v1

__all__ = ["tf", "tf1", "slim"]
