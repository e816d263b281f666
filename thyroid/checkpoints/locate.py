"""Where a network's ImageNet checkpoint lives, whether it is there, and how to get it.

The one place train, bottleneck, verify, download and the study ask these questions.
"""

import os

from absl import logging

from thyroid.nets import get_network


class MissingCheckpointError(FileNotFoundError):
    """An ImageNet checkpoint a run needs is absent; the message says how to get it."""


def default_checkpoint_path(spec, checkpoint_dir="checkpoints"):
    """-> (path, exists): where ``spec``'s checkpoint prefix is expected under ``checkpoint_dir``.

    ``path`` is a checkpoint prefix (what ``tf.train.load_checkpoint`` takes), or None for a
    network without a pre-trained checkpoint (small_cnn). ``exists`` is True when its
    ``.index`` file (or a V1 single file) is there.
    """
    if spec.checkpoint is None:
        return None, False
    path = os.path.join(checkpoint_dir, spec.checkpoint.subdir, spec.checkpoint.checkpoint_file)
    exists = os.path.exists(path + ".index") or os.path.isfile(path)
    return path, exists


def fetch_command(model):
    """The command that puts ``model``'s checkpoint in place (converted or downloaded)."""
    spec = get_network(model)
    if spec.checkpoint is not None and spec.checkpoint.url is None:
        return f"python -m thyroid.checkpoints convert --models={model}"
    return f"python -m thyroid.checkpoints download --models={model}"


def require_checkpoint(model, checkpoint_dir="checkpoints"):
    """The default checkpoint path of ``model``; MissingCheckpointError naming the fix if absent."""
    path, exists = default_checkpoint_path(get_network(model), checkpoint_dir)
    if not exists:
        raise MissingCheckpointError(
            f"{model}: ImageNet checkpoint not found at {path}. Get it with: {fetch_command(model)}")
    return path


def resolve_pretrained(model, mode, checkpoint_path=None, checkpoint_dir="checkpoints",
                       allow_random_init=False):
    """(checkpoint path or None, description) of the weights a run's frozen part starts from."""
    if mode == "scratch":
        return None, "random init (trained from scratch)"
    if checkpoint_path:
        return checkpoint_path, f"ImageNet ({checkpoint_path})"
    path, exists = default_checkpoint_path(get_network(model), checkpoint_dir)
    if exists:
        return path, f"ImageNet ({path})"
    if allow_random_init:
        logging.warning("%s: no checkpoint at %s; using RANDOM weights (--allow_random_init)",
                        model, path)
        return None, "random init (no ImageNet checkpoint)"
    raise MissingCheckpointError(
        f"{model}: ImageNet checkpoint not found at {path}. Get it with: {fetch_command(model)} "
        "(or pass --checkpoint_path, or --allow_random_init to use random weights)")
