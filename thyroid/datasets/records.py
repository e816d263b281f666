"""The build's per-image work, run in its worker processes: check that an image can be used,
and turn one image into its shard records (the original and its augmented copies).

Nothing here imports TensorFlow: the workers are spawned fresh and would otherwise spend
seconds loading it. ``tf.train.Example`` records are therefore written as protocol-buffer
bytes by hand (``example_bytes``); ``shards.make_tf_example`` parses the same bytes, so both
paths share one definition.

Augmentation draws from a generator seeded by the build seed and the image's key, never from a
stream shared by all images: an image's copies are the same whichever worker makes them, in
whatever order, so the shards are byte-identical for any number of workers.
"""

import dataclasses
import hashlib
import io
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image

from thyroid.datasets import images
from thyroid.preprocessing import augmentation_kinds, tta


@dataclasses.dataclass(frozen=True)
class Inspection:
    """What checking one image file found: its content hash (or why it cannot be read) and,
    when it was decoded, why decoding failed and what it fell back on."""
    path: str
    sha256: Optional[str]
    error: Optional[Tuple[str, str]] = None          # (reason, detail) of the hash or decode
    decoded: bool = False                             # False: hash error, or not decoded
    fallbacks: Tuple[str, ...] = ()


def inspect_image(path, max_pixels, decode):
    """Hashes an image file and, with ``decode``, decodes it once to see that it can be used
    (the pixels are dropped: only the records pass keeps any). -> Inspection."""
    try:
        digest = images.file_sha256(path, max_pixels)
    except images.ImageError as error:
        return Inspection(path, None, (error.reason, error.detail))
    if not decode:
        return Inspection(path, digest)
    notes = []
    try:
        images.load_image(path, max_pixels, fallbacks=notes)
    except images.ImageError as error:
        return Inspection(path, digest, (error.reason, error.detail), True, tuple(notes))
    return Inspection(path, digest, None, True, tuple(notes))


def inspect_many(tasks):
    """``inspect_image`` over [(path, max_pixels, decode)]: one task per worker call keeps the
    per-call overhead small next to a few milliseconds of decoding."""
    return [inspect_image(*task) for task in tasks]


class RecordError(ValueError):
    """An image that decoded when checked failed when its records were made (it changed on
    disk during the build)."""


@dataclasses.dataclass(frozen=True)
class ImageJob:
    """One image's records: the original, then ``copies`` augmented copies."""
    path: str
    max_pixels: int
    crop: str
    polygons: tuple
    copies: int
    seed: int
    label: int
    patient_id: str
    source: str
    tirads: Optional[str]
    key: str
    augmentation: str = "standard"  # augmentation_kinds.AUGMENTATIONS
    view: Optional[str] = None  # a test-time view of the image (tta.VIEW_NAMES) instead of it


def augmentation_rng(seed, key):
    """The generator of one image's copies: the build seed and the image's key, nothing else."""
    words = np.frombuffer(hashlib.sha256(key.encode("utf-8")).digest(), dtype="<u4")
    return np.random.default_rng(np.random.SeedSequence([int(seed)] + [int(w) for w in words]))


def image_records(job: ImageJob) -> List[bytes]:
    """Serialized tf.train.Examples of one image: [original, copy 1, ...]."""
    try:
        rgb = images.load_image(job.path, job.max_pixels)
    except images.ImageError as error:  # a plain message: it crosses back from a worker
        raise RecordError(f"{job.path}: {error} (it decoded when first checked; did it "
                          "change during the build?)") from None
    rgb = images.crop(rgb, job.crop, job.polygons)
    if job.view is not None:
        rgb = tta.named_view(rgb, job.view)
    rng = augmentation_rng(job.seed, job.key)
    pictures = [rgb] + augmentation_kinds.copies_function(job.augmentation)(rgb, job.copies, rng)
    return [example_bytes(encode_jpeg(picture), picture.shape[0], picture.shape[1], job.label,
                          job.patient_id, job.source, job.tirads, index > 0, job.key)
            for index, picture in enumerate(pictures)]


JPEG_QUALITY = 95


def encode_jpeg(rgb):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _varint(value):
    out = bytearray()
    value &= (1 << 64) - 1  # int64 on the wire: two's complement, 10 bytes when negative
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, payload):
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _bytes_feature(value):
    return _field(1, _field(1, value))  # Feature.bytes_list -> BytesList.value


def _int64_feature(value):
    return _field(3, _field(1, _varint(int(value))))  # Feature.int64_list -> packed value


def example_bytes(encoded_jpeg, height, width, label, patient_id, source, tirads, augmented,
                  key=""):
    """A serialized tf.train.Example with TF-Slim's keys plus ours; ``key`` names the original
    image (an augmented copy carries its original's key)."""
    features = {
        "image/encoded": _bytes_feature(encoded_jpeg),
        "image/format": _bytes_feature(b"jpeg"),
        "image/class/label": _int64_feature(label),
        "image/height": _int64_feature(height),
        "image/width": _int64_feature(width),
        "image/patient_id": _bytes_feature(patient_id.encode("utf-8")),
        "image/source": _bytes_feature(source.encode("utf-8")),
        "image/tirads": _bytes_feature((tirads or "").encode("utf-8")),
        "image/augmented": _int64_feature(1 if augmented else 0),
        "image/key": _bytes_feature(key.encode("utf-8")),
    }
    # Example.features -> Features.feature: map entries {key: 1, value: 2}.
    entries = b"".join(_field(1, _field(1, name.encode("utf-8")) + _field(2, value))
                       for name, value in features.items())
    return _field(1, entries)
