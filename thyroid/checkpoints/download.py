"""Downloads, extracts and checks the official TF-Slim ImageNet checkpoints.

The tarball is fetched over https and streamed into a temporary file beside its destination,
hashed on the way, and renamed only when complete and, where a sha256 is published, matching it;
extraction goes through a temporary folder too, so an interrupted or refused run leaves no half
file. The tarball's sha256 is recorded beside the checkpoint (``<tarball>.sha256``). Without
network access it fails within ``timeout`` seconds and says how to place the files by hand.
"""

import hashlib
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
from thyroid.io_utils import atomic_path, atomic_write_text
from thyroid.nets import get_network
from thyroid.checkpoints.locate import default_checkpoint_path, fetch_command
from thyroid.restore import build_restore_fn

DOWNLOADABLE = ("vgg_16", "inception_v3", "mobilenet_v1")
DEFAULT_TIMEOUT_S = 10.0

# The official tarballs are served over https from the storage behind download.tensorflow.org.
_PLAIN_HOST = "http://download.tensorflow.org/"
_HTTPS_HOST = "https://storage.googleapis.com/download.tensorflow.org/"

# sha256 of the tarballs whose hash TensorFlow publishes; the others are only recorded.
PUBLISHED_SHA256 = {
    "mobilenet_v1_1.0_224.tgz":
        "2fadeabb9968ec6833bee903900dda6e61b3947200535874ce2fe42a8493abc0",
}

# What each official tarball holds: VGG-16 and Inception-v3 are single-file V1 checkpoints
# (no .index), MobileNet-v1 2018_08_02 a V2 checkpoint (.index + .data; .meta not needed).
CHECKPOINT_SUFFIXES = {
    "vgg_16": ("",),
    "inception_v3": ("",),
    "mobilenet_v1": (".index", ".data-00000-of-00001"),
}


class DownloadError(RuntimeError):
    """A checkpoint could not be fetched; the message says how to place it by hand."""


class ChecksumError(DownloadError):
    """A tarball's sha256 differs from the published one."""


def official_url(url):
    """-> ``url`` with the official plain-http host replaced by its https address."""
    if url and url.startswith(_PLAIN_HOST):
        return _HTTPS_HOST + url[len(_PLAIN_HOST):]
    return url


def checkpoint_files(spec):
    """-> the file names the extracted checkpoint consists of (what restore looks for)."""
    return [spec.checkpoint.checkpoint_file + suffix
            for suffix in CHECKPOINT_SUFFIXES.get(spec.name, (".index", ".data-00000-of-00001"))]


def manual_instructions(spec, checkpoint_dir, url=None):
    info = spec.checkpoint
    path, _ = default_checkpoint_path(spec, checkpoint_dir)
    target = os.path.abspath(os.path.dirname(path))
    return (
        "To install it by hand: on a machine with internet access download %s, then either "
        "put the tarball %s into %s/ and rerun `python -m thyroid.checkpoints download "
        "--models=%s --checkpoint_dir=%s` (it is extracted without downloading), or extract "
        "it and put %s into %s/."
        % (url or official_url(info.url), info.tarball, os.path.abspath(checkpoint_dir),
           spec.name, checkpoint_dir, " and ".join(checkpoint_files(spec)), target))


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


def _check_sha256(digest, tarball, what):
    published = PUBLISHED_SHA256.get(os.path.basename(tarball))
    if published is not None and digest != published:
        raise ChecksumError("%s has sha256 %s, not the published %s for %s; refused"
                            % (what, digest, published, os.path.basename(tarball)))


def file_sha256(path, chunk_size=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url, destination, timeout=DEFAULT_TIMEOUT_S, progress=True, chunk_size=1 << 20):
    """Streams ``url`` into ``destination`` atomically; -> its sha256 (hex).

    Network errors propagate; a sha256 differing from ``PUBLISHED_SHA256`` for the tarball's
    name raises ``ChecksumError`` and leaves nothing behind.
    """
    stream = sys.stderr
    digest = hashlib.sha256()
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
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        _progress(done, total, start, stream)
            if progress:
                stream.write("\n")
            if total and done != total:
                raise IOError("Incomplete download of %s: %d of %d bytes" % (url, done, total))
            _check_sha256(digest.hexdigest(), destination, "the download from %s" % url)
    return digest.hexdigest()


def extract(tarball, target_dir, checkpoint_file, required=()):
    """Extracts the members named ``<checkpoint_file>*`` (flattened) into ``target_dir``;
    refuses a tarball lacking one of the ``required`` file names (nothing is extracted)."""
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
        missing = [name for name in required if name not in extracted]
        if not extracted or missing:
            raise DownloadError("%s holds no %s" % (
                tarball, " or ".join(missing) if missing else checkpoint_file + "* file"))
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


def _obtain_tarball(spec, checkpoint_dir, url, timeout, progress):
    """-> (path, sha256) of the tarball: one placed by hand, else downloaded."""
    tarball = os.path.join(checkpoint_dir, spec.checkpoint.tarball)
    if os.path.exists(tarball):
        digest = file_sha256(tarball)
        _check_sha256(digest, tarball, tarball)
        return tarball, digest
    logging.info("Downloading %s", url)
    try:
        return tarball, fetch(url, tarball, timeout=timeout, progress=progress)
    except (urllib.error.URLError, socket.timeout, socket.error, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError("Could not download the %s checkpoint from %s: %s. %s" % (
            spec.name, url, reason, manual_instructions(spec, checkpoint_dir, url))) from error


def _fetch_and_extract(spec, checkpoint_dir, url, timeout, progress):
    """Gets the tarball, extracts the checkpoint files and records the tarball's sha256."""
    info = spec.checkpoint
    tarball, digest = _obtain_tarball(spec, checkpoint_dir, url, timeout, progress)
    target_dir = os.path.dirname(default_checkpoint_path(spec, checkpoint_dir)[0])
    try:
        extract(tarball, target_dir, info.checkpoint_file, checkpoint_files(spec))
    except (tarfile.TarError, EOFError) as error:
        raise DownloadError("%s is not a valid tarball (%s); delete it and retry. %s" % (
            tarball, error, manual_instructions(spec, checkpoint_dir, url))) from error
    atomic_write_text(os.path.join(target_dir, info.tarball + ".sha256"),
                      "%s  %s\n" % (digest, info.tarball))
    os.remove(tarball)


def download(model, checkpoint_dir="checkpoints", url=None, timeout=DEFAULT_TIMEOUT_S,
             progress=True, force=False):
    """Fetches, extracts and checks ``model``'s official checkpoint; returns its path prefix."""
    spec = get_network(model)
    if spec.checkpoint is None or spec.checkpoint.url is None:
        raise DownloadError("%s has no downloadable checkpoint%s" % (
            model, " (use `%s`)" % fetch_command(model)
            if spec.checkpoint is not None else ""))
    info = spec.checkpoint
    url = url or official_url(info.url)
    path, exists = default_checkpoint_path(spec, checkpoint_dir)
    if exists and not force:
        logging.info("%s already present at %s", model, path)
    else:
        _fetch_and_extract(spec, checkpoint_dir, url, timeout, progress)
    count = verify_variables(model, path)
    logging.info("%s: %d variables match %s", model, count, path)
    return path
