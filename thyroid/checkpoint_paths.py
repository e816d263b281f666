"""Checkpoint paths as TensorFlow must be given them: free of glob pattern characters.

TensorFlow matches checkpoint paths as glob patterns: in Python (``tf.train.latest_checkpoint``,
a Saver's restore check and its pruning of old checkpoints, which deletes whatever matches) and
in its C++ ops (``RestoreV2`` cannot open a checkpoint under ``r[1]/``). A run folder named
``r[1]`` would then hold checkpoints TensorFlow never finds, and one named ``r*`` could make
it read, or delete, another folder's. So every checkpoint path goes to TensorFlow through
``literal(path)``: the path itself when it holds no pattern character (the usual case), else
the same file reached through ``/proc/self/fd/<n>``, an open descriptor of the deepest folder
whose name holds one, so that what TensorFlow sees has none. ``latest_checkpoint`` replaces
TensorFlow's own and answers with real paths.
"""

import os
import threading

# What TensorFlow's file matching (and Python's glob) reads as pattern syntax.
PATTERN_CHARACTERS = "*?[\\"
_DESCRIPTORS = "/proc/self/fd"

_lock = threading.Lock()
_open = {}  # folder -> (descriptor, (st_dev, st_ino)) held for the life of the process


class CheckpointPathError(ValueError):
    """A checkpoint path TensorFlow cannot be given literally."""


def has_pattern(path):
    return any(c in path for c in PATTERN_CHARACTERS)


def _descriptor(folder):
    """An open descriptor of ``folder``; reopened if the folder was replaced since."""
    info = os.stat(folder)
    identity = (info.st_dev, info.st_ino)
    with _lock:
        held = _open.get(folder)
        if held is not None and held[1] == identity:
            return held[0]
        if held is not None:
            os.close(held[0])
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        _open[folder] = (descriptor, identity)
        return descriptor


def literal(path):
    """``path`` spelt without pattern characters, for TensorFlow (see the module's note).

    The alias is valid in this process only: never write it into a file."""
    if path is None or not has_pattern(path):
        return path
    parts = os.path.abspath(path).split(os.sep)
    last = max(i for i, part in enumerate(parts) if has_pattern(part))
    folder = os.sep.join(parts[:last + 1])
    if last == len(parts) - 1 and not os.path.isdir(folder):  # the file's own name
        raise CheckpointPathError(
            f"{path}: TensorFlow reads checkpoint paths as patterns, so a checkpoint's name "
            f"cannot hold [, *, ? or \\; rename it")
    if not os.path.isdir(_DESCRIPTORS):
        raise CheckpointPathError(
            f"{path}: TensorFlow reads checkpoint paths as patterns and this system cannot "
            f"reach {folder} by another name; rename it without [, *, ? or \\")
    return os.path.join(_DESCRIPTORS, str(_descriptor(folder)), *parts[last + 1:])


def checkpoint_exists(prefix):
    """Whether ``prefix`` names a checkpoint (a V2 index file, or a V1 file)."""
    return os.path.isfile(prefix + ".index") or os.path.isfile(prefix)


def latest_checkpoint(directory):
    """The newest checkpoint prefix of ``directory``'s ``checkpoint`` state file, when its files
    exist, else None (``tf.train.latest_checkpoint`` without the pattern matching)."""
    from thyroid.compat import tf1
    state = tf1.train.get_checkpoint_state(directory)  # reads the one file by name
    if state is None or not state.model_checkpoint_path:
        return None
    prefix = state.model_checkpoint_path
    if not os.path.isabs(prefix):
        prefix = os.path.join(directory, prefix)
    return prefix if checkpoint_exists(prefix) else None
