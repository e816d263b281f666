"""File writing that never leaves a half-written file behind."""

import contextlib
import hashlib
import json
import math
import numbers
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


def finite_json(value):
    """``value`` (dicts, lists, tuples, numbers, ...) with every number that is not finite (NaN,
    inf) replaced by None, and numpy numbers made Python ones: JSON has no NaN, and Python's
    json module would write a bare ``NaN`` that strict parsers (browsers, jq, other
    languages) refuse."""
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def json_text(obj, **options):
    """The one way JSON is written: strict (NaN and inf as null), ``options`` as for
    ``json.dumps``. Reading stays lenient (``read_json`` takes the bare NaN older files hold)."""
    return json.dumps(finite_json(obj), allow_nan=False, **options)


def atomic_write_json(path, obj):
    atomic_write_text(path, json_text(obj, indent=2, sort_keys=True) + "\n")


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
