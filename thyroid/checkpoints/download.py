"""Downloads, extracts and checks the official TF-Slim ImageNet checkpoints.

The tarball is streamed into a temporary file beside its destination and renamed only when
complete; extraction goes through a temporary folder too, so an interrupted run leaves no half
file. Without network access it fails within ``timeout`` seconds and says how to place the files
by hand.
"""

import os
import shutil
import socket
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request

from absl import logging

from thyroid.compat import tf, tf1
from thyroid.io_utils import atomic_path
from thyroid.nets import get_network
from thyroid.checkpoints.locate import default_checkpoint_path, fetch_command
from thyroid.restore import build_restore_fn

DOWNLOADABLE = ("vgg_16", "inception_v3", "mobilenet_v1")
DEFAULT_TIMEOUT_S = 10.0


class DownloadError(RuntimeError):
    """A checkpoint could not be fetched; the message says how to place it by hand."""


def manual_instructions(spec, checkpoint_dir, url=None):
    info = spec.checkpoint
    path, _ = default_checkpoint_path(spec, checkpoint_dir)
    return (
        "To install it by hand: on a machine with internet access download %s, then either "
        "put the tarball %s into %s/ and rerun `python -m thyroid.checkpoints download "
        "--models=%s --checkpoint_dir=%s` (it is extracted without downloading), or extract "
        "the files %s* from it into %s/ so that %s exists."
        % (url or info.url, info.tarball, os.path.abspath(checkpoint_dir), spec.name,
           checkpoint_dir, info.checkpoint_file, os.path.abspath(os.path.dirname(path)),
           os.path.abspath(path) + (".index" if spec.name != "vgg_16" else "")))


def _progress(done, total, start, stream):
    elapsed = max(time.time() - start, 1e-6)
    rate = done / elapsed / 1e6
    if total:
        fraction = done / total
        bar = "#" * int(30 * fraction)
        stream.write("\r  [%-30s] %5.1f%% %7.1f/%.1f MB %5.1f MB/s"
                     % (bar, 100 * fraction, done / 1e6, total / 1e6, rate))
    else:
        stream.write("\r  %7.1f MB %5.1f MB/s" % (done / 1e6, rate))
    stream.flush()


def fetch(url, destination, timeout=DEFAULT_TIMEOUT_S, progress=True, chunk_size=1 << 20):
    """Streams ``url`` into ``destination`` atomically. Network errors propagate."""
    stream = sys.stderr
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0)
        with atomic_path(destination) as tmp:
            done, start = 0, time.time()
            with open(tmp, "wb") as f:
                while True:
                    chunk = response.read(chunk_size)
                    if not chunk:
                        break
                    f.write(chunk)
                    done += len(chunk)
                    if progress:
                        _progress(done, total, start, stream)
            if progress:
                stream.write("\n")
            if total and done != total:
                raise IOError("Incomplete download of %s: %d of %d bytes" % (url, done, total))
    return destination


def extract(tarball, target_dir, checkpoint_file):
    """Extracts the members named ``<checkpoint_file>*`` (flattened) into ``target_dir``."""
    os.makedirs(os.path.dirname(os.path.abspath(target_dir)), exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=".tmp-extract-",
                               dir=os.path.dirname(os.path.abspath(target_dir)))
    try:
        extracted = []
        with tarfile.open(tarball) as archive:
            for member in archive.getmembers():
                base = os.path.basename(member.name)
                if not member.isfile() or not base.startswith(checkpoint_file):
                    continue
                source = archive.extractfile(member)
                with open(os.path.join(tmp_dir, base), "wb") as out:
                    shutil.copyfileobj(source, out)
                extracted.append(base)
        if not extracted:
            raise DownloadError("%s holds no %s* file" % (tarball, checkpoint_file))
        os.makedirs(target_dir, exist_ok=True)
        for base in extracted:
            os.replace(os.path.join(tmp_dir, base), os.path.join(target_dir, base))
        return extracted
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def verify_variables(model, checkpoint_path):
    """Builds ``model`` with its ImageNet classifier and checks every variable's name and shape
    against the checkpoint (raises ``CheckpointMismatchError``); returns the number checked."""
    spec = get_network(model)
    with tf.Graph().as_default():
        size = spec.default_image_size
        spec.imagenet_logits(tf1.placeholder(tf.float32, [1, size, size, 3]))
        restore = build_restore_fn(checkpoint_path)
        return len(restore.restored_names)


def download(model, checkpoint_dir="checkpoints", url=None, timeout=DEFAULT_TIMEOUT_S,
             progress=True, force=False):
    """Fetches, extracts and checks ``model``'s official checkpoint; returns its path prefix."""
    spec = get_network(model)
    if spec.checkpoint is None or spec.checkpoint.url is None:
        raise DownloadError("%s has no downloadable checkpoint%s" % (
            model, " (use `%s`)" % fetch_command(model)
            if spec.checkpoint is not None else ""))
    info = spec.checkpoint
    url = url or info.url
    path, exists = default_checkpoint_path(spec, checkpoint_dir)
    if exists and not force:
        logging.info("%s already present at %s", model, path)
    else:
        tarball = os.path.join(checkpoint_dir, info.tarball)
        if not os.path.exists(tarball):
            logging.info("Downloading %s", url)
            try:
                fetch(url, tarball, timeout=timeout, progress=progress)
            except (urllib.error.URLError, socket.timeout, socket.error, OSError) as error:
                reason = getattr(error, "reason", error)
                raise DownloadError("Could not download the %s checkpoint from %s: %s. %s" % (
                    model, url, reason, manual_instructions(spec, checkpoint_dir, url))) from error
        try:
            extract(tarball, os.path.dirname(path), info.checkpoint_file)
        except (tarfile.TarError, EOFError) as error:
            raise DownloadError("%s is not a valid tarball (%s); delete it and retry. %s" % (
                tarball, error, manual_instructions(spec, checkpoint_dir, url))) from error
        os.remove(tarball)
    count = verify_variables(model, path)
    logging.info("%s: %d variables match %s", model, count, path)
    return path
