"""One trainer per train_dir: an advisory ``flock`` held for the whole run.

The kernel drops the lock when the holding process exits or is killed, so a lock
file left behind by a dead trainer never blocks the next one. Readers of a
train_dir (evaluation, export) take no lock.
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys

from thyroid.io_utils import json_text

LOCK_FILE = "train.lock"


class TrainDirBusyError(OSError):
    """Another live process holds the train_dir's lock."""


def _holder_record():
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command_line": list(sys.argv)}


def describe_holder(lock_path):
    """'pid P on host H since T' from a lock file, or a placeholder while it is being written."""
    try:
        with open(lock_path) as f:
            holder = json.load(f)
        return f"pid {holder['pid']} on host {holder['host']} since {holder['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its details are not written yet)"


def _write_holder(fd):
    # Written in place, not by rename: the lock belongs to this inode, so replacing the
    # file would let a second trainer lock a fresh one.
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json_text(_holder_record()) + "\n").encode(), 0)


@contextlib.contextmanager
def locked_train_dir(train_dir):
    """Holds ``<train_dir>/train.lock`` exclusively; raises TrainDirBusyError if it is taken."""
    path = os.path.join(train_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TrainDirBusyError(
                f"--train_dir={train_dir}: already being trained by {describe_holder(path)}; "
                "wait for it to finish or choose another --train_dir") from None
        _write_holder(fd)
        yield path
    finally:
        # The file stays: deleting it could race with a trainer that has just opened it.
        os.close(fd)
