"""Pre-trained checkpoints: download (official TF-Slim), convert (EfficientNet-Lite0 from
PyTorch), verify (ImageNet top-5 on sample images), inspect. CLI: ``python -m thyroid.checkpoints``.
"""

from thyroid.checkpoints.convert import convert, default_pth_path
from thyroid.checkpoints.download import DOWNLOADABLE, DownloadError, download, verify_variables
from thyroid.checkpoints.verify import imagenet_top_k, load_sample_images

__all__ = ["convert", "default_pth_path", "download", "DownloadError", "DOWNLOADABLE",
           "verify_variables", "imagenet_top_k", "load_sample_images", "inspect_checkpoint"]


def inspect_checkpoint(path):
    """-> sorted [(variable name, shape)] of a checkpoint (prefix or directory)."""
    from thyroid.compat import tf
    from thyroid.checkpoint_paths import literal
    from thyroid.restore import resolve_checkpoint_path
    reader = tf.train.load_checkpoint(literal(resolve_checkpoint_path(path)))
    return sorted((name, tuple(shape)) for name, shape in reader.get_variable_to_shape_map().items())
