"""Whole-folder replacement of a dataset: build beside it, then swap.

A build writes into ``<output>.tmp-<pid>`` and, once its manifest is written (last), renames the
old folder to ``<output>.old-<pid>``, the new one to ``<output>`` and deletes the old one. A kill
before the first rename leaves the old dataset; after the second, the new one. Between the two
renames (microseconds) ``<output>`` is missing: the next build puts back the complete folder
(the finished temporary one, else the old one) before anything else. Leftovers of builds whose
process is gone are removed.
"""

import glob
import os
import shutil
import time

from absl import logging

from thyroid.datasets import shards

TEMP_TAG, OLD_TAG = ".tmp-", ".old-"
# Tests set this to a stage name ("shards", "swap") to hold a build there and kill it.
STALL_ENV = "THYROID_BUILD_STALL_AT"


def stall_point(stage):
    """Holds the process at ``stage`` when the environment asks for it (kill tests only)."""
    if os.environ.get(STALL_ENV) == stage:
        print(f"stalled at {stage}", flush=True)
        time.sleep(600)


def _base(output_dir):
    return os.path.abspath(output_dir).rstrip(os.sep)


def temporary_dir(output_dir):
    path = f"{_base(output_dir)}{TEMP_TAG}{os.getpid()}"
    if os.path.exists(path):
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(output_dir, tag):
    """[(path, pid)] of ``<output><tag><pid>`` folders whose build process is gone."""
    found = []
    for path in glob.glob(glob.escape(_base(output_dir)) + tag + "*"):
        suffix = path[len(_base(output_dir)) + len(tag):]
        if suffix.isdigit() and (int(suffix) == os.getpid() or not _pid_alive(int(suffix))):
            found.append(path)
    return sorted(found)


def holds_dataset(directory):
    return os.path.isfile(os.path.join(directory, shards.MANIFEST_NAME))


def _recover(output_dir):
    """Puts a complete folder back where a kill between the two renames left none."""
    if os.path.exists(output_dir):
        return
    for tag in (TEMP_TAG, OLD_TAG):
        complete = [p for p in _leftovers(output_dir, tag) if holds_dataset(p)]
        if complete:
            logging.warning("Restoring %s from %s (a build was killed mid-swap)", output_dir,
                            complete[-1])
            os.rename(complete[-1], output_dir)
            return


def remove_stale(output_dir):
    """Recovers an interrupted swap, then deletes temporaries of dead builds."""
    _recover(_base(output_dir))
    for tag in (TEMP_TAG, OLD_TAG):
        for path in _leftovers(output_dir, tag):
            logging.info("Removing %s, left by an interrupted build", path)
            shutil.rmtree(path, ignore_errors=True)


def _dataset_file(name):
    return (name in (shards.MANIFEST_NAME, shards.LABELS_NAME) or name.endswith(".tfrecord")
            or name.startswith(".tmp-"))


def holds_only_dataset_files(directory):
    """Whether every entry of ``directory`` is a file a dataset build writes."""
    return all(_dataset_file(name) for name in os.listdir(directory))


def replace_problem(output_dir):
    """Why ``output_dir`` must not be swapped away ('' when it may): it must hold nothing but
    a dataset's files."""
    if not os.path.isdir(output_dir):
        return f"--output_dir {output_dir} exists and is not a folder" \
            if os.path.exists(output_dir) else ""
    others = sorted(n for n in os.listdir(output_dir) if not _dataset_file(n))
    if others:
        return (f"--output_dir {output_dir} holds files that are not part of a dataset "
                f"({', '.join(others[:5])}); give an empty or dataset-only folder")
    return ""


def swap_in(temporary, output_dir):
    """Replaces ``output_dir`` by the complete ``temporary`` folder."""
    output_dir = _base(output_dir)
    old = None
    if os.path.exists(output_dir):
        old = f"{output_dir}{OLD_TAG}{os.getpid()}"
        os.rename(output_dir, old)
        stall_point("swap")
    os.rename(temporary, output_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)
