"""Pre-trained checkpoints: download (official TF-Slim, ``checkpoints.download.download``),
convert (EfficientNet-Lite0 from PyTorch, ``checkpoints.convert.convert``), verify (ImageNet
top-5 on sample images), inspect. CLI: ``python -m thyroid.checkpoints``.
"""

import importlib

# Loaded on first use: ``python -m thyroid.checkpoints`` imports this package before its
# __main__ can say, in one line, that TensorFlow is not installed. (The functions named like
# their modules, convert and download, are imported from those modules.)
_LAZY = {"default_pth_path": "convert", "DOWNLOADABLE": "download",
         "DownloadError": "download", "verify_variables": "download",
         "imagenet_top_k": "verify", "load_sample_images": "verify"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"thyroid.checkpoints.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'thyroid.checkpoints' has no attribute {name!r}")


__all__ = ["default_pth_path", "DownloadError", "DOWNLOADABLE", "verify_variables",
           "imagenet_top_k", "load_sample_images", "inspect_checkpoint"]


def inspect_checkpoint(path):
    """-> sorted [(variable name, shape)] of a checkpoint (prefix or directory)."""
    from thyroid.compat import tf
    from thyroid.checkpoint_paths import literal
    from thyroid.restore import resolve_checkpoint_path
    reader = tf.train.load_checkpoint(literal(resolve_checkpoint_path(path)))
    return sorted((name, tuple(shape)) for name, shape in reader.get_variable_to_shape_map().items())
