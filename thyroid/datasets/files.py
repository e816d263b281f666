"""Opening input files safely: regular files only, sizes checked before reading.

Every file a reader or the build opens (images, DDTI case XML, report.docx) goes through here.
A FIFO blocks its reader forever and a device (a ``z.jpg`` symlink to ``/dev/zero``) never
ends, so only regular files are opened; symlinks are followed and their target checked.
A file's size is compared with the caller's limit before any of it is read, and hashing
streams in blocks, stopping at the limit, so no input can exhaust memory.
"""

import contextlib
import hashlib
import os
import stat

BLOCK_BYTES = 1 << 20


class FileError(Exception):
    """A file that cannot or must not be read. ``reason`` is a short category (what skip
    summaries count), ``detail`` the specifics of this file."""

    def __init__(self, reason, detail=""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


def printable(path):
    """``path`` as text any file or log can hold: bytes of a name that are not UTF-8 are shown
    as ``\\xNN`` escapes (Python keeps them as lone surrogates, which UTF-8 cannot encode), and
    a NUL byte as ``\\x00``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace").replace("\0", "\\x00")


def check_name(name):
    """FileError when ``name`` is not UTF-8: it could not be written into the shards' patient
    ids and keys, nor the manifest."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as error:
        raise FileError("file name is not UTF-8") from error


def check_path(path):
    """FileError for a path the system cannot name: a NUL byte (a CSV cell or a report can
    hold one; ``os`` raises ValueError on it, which would end the whole read)."""
    if "\0" in os.fsdecode(path):
        raise FileError("invalid path", "holds a NUL byte")


def _kind(mode):
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISDIR, "folder")):
        if test(mode):
            return name
    return "special file"


def _check_stat(info, max_bytes):
    if not stat.S_ISREG(info.st_mode):
        raise FileError("not a regular file", _kind(info.st_mode))
    if max_bytes is not None and info.st_size > max_bytes:
        raise FileError("file too large",
                        f"{info.st_size} bytes, above the limit of {max_bytes} bytes")
    return info.st_size


def check_regular_file(path, max_bytes=None):
    """Size of ``path`` (symlinks followed) when it is a regular file of at most ``max_bytes``;
    FileError otherwise. Reads nothing, so it is safe on a FIFO or a device."""
    check_path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError as error:
        detail = "broken symbolic link" if os.path.islink(path) else ""
        raise FileError("no such file", detail) from error
    except OSError as error:
        raise FileError("cannot read", error.strerror or str(error)) from error
    return _check_stat(info, max_bytes)


@contextlib.contextmanager
def open_regular(path, max_bytes=None):
    """A binary file object for ``path``, checked on the open descriptor itself: opening
    non-blocking never waits on a FIFO, and the check cannot be raced by a file swapped in
    after an earlier ``check_regular_file``."""
    check_path(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as error:
        raise FileError("no such file") from error
    except OSError as error:
        raise FileError("cannot read", error.strerror or str(error)) from error
    with os.fdopen(descriptor, "rb") as f:
        _check_stat(os.fstat(descriptor), max_bytes)
        yield f


def read_prefix(path, limit):
    """At most the first ``limit`` bytes of a regular file (headers of files of any size)."""
    with open_regular(path) as f:
        return f.read(limit)


def sha256(path, max_bytes):
    """Hex sha256 of a regular file of at most ``max_bytes``, read in blocks (a file that grows
    past the limit while being read is refused too)."""
    digest, total = hashlib.sha256(), 0
    with open_regular(path, max_bytes) as f:
        try:
            for block in iter(lambda: f.read(BLOCK_BYTES), b""):
                total += len(block)
                if total > max_bytes:
                    raise FileError("file too large", f"above the limit of {max_bytes} bytes")
                digest.update(block)
        except OSError as error:
            raise FileError("cannot read", error.strerror or str(error)) from error
    return digest.hexdigest()
