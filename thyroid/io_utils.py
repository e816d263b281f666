"""File writing that never leaves a half-written file behind."""

import contextlib
import hashlib
import json
import os
import pickle
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside ``path``; renames it onto ``path`` on success."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + ".", dir=directory)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_pickle(path, obj):
    atomic_write_bytes(path, pickle.dumps(obj))


def read_own_pickle(path, what):
    """Loads a pickle this project wrote (only ever open your own runs: pickle runs code).
    ``what`` names the missing thing in the error."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no trained {what}")
    with open(path, "rb") as f:
        return pickle.load(f)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


_FILE_DIGESTS = {}


def file_sha256(path):
    """sha256 hex digest of a file's bytes, memoised by path, size and mtime (checkpoints and
    shards are hundreds of MB, and cache keys ask for them again and again)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _FILE_DIGESTS[key] = digest.hexdigest()
    return _FILE_DIGESTS[key]
