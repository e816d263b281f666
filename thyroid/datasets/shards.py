"""TFRecord shards: writing them (TF-Slim's standard keys plus ours) and reading a split back."""

import dataclasses
import contextlib
import hashlib
import os
import re
from typing import List

import numpy as np

from thyroid import LABEL_NAMES
from thyroid.datasets.images import decode_image_bytes
from thyroid.datasets.records import JPEG_QUALITY, encode_jpeg, example_bytes  # noqa: F401
from thyroid.io_utils import atomic_path, atomic_write_text, file_sha256, read_json
from thyroid.datasets.tfrecord_file import RecordFile

SPLITS = ("train", "validation", "test")
MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.txt"


def shard_name(split, index, num_shards):
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def shard_paths(dataset_dir, split):
    """The split's shard files, by listing the folder: a folder or run name may hold ``[``,
    ``*`` or ``?``, which a glob pattern would read as wildcards (and match other folders)."""
    pattern = re.compile(re.escape(split) + r"-[0-9]{5}-of-[0-9]{5}\.tfrecord")
    try:
        names = os.listdir(dataset_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(os.path.join(dataset_dir, n) for n in names if pattern.fullmatch(n))


def make_tf_example(encoded_jpeg, height, width, label, patient_id, source, tirads, augmented,
                    key=""):
    """The tf.train.Example of ``records.example_bytes`` (the build's workers write those
    bytes without TensorFlow); ``key`` names the original image."""
    from thyroid.compat import tf
    return tf.train.Example.FromString(example_bytes(
        encoded_jpeg, height, width, label, patient_id, source, tirads, augmented, key))


def write_split(records, dataset_dir, split, num_shards):
    """Writes serialized tf.train.Examples round-robin over ``num_shards`` files.

    Each shard is written under a temporary name and renamed only when complete.
    Returns the shard paths.
    """
    paths = [os.path.join(dataset_dir, shard_name(split, i, num_shards)) for i in range(num_shards)]
    for index, path in enumerate(paths):
        with atomic_path(path) as tmp:
            with RecordFile(tmp) as writer:
                for record in records[index::num_shards]:
                    writer.write(record)
    return paths


class ShardWriters:
    """Writes a stream of records into every split's shards at once: the records of a split go
    round-robin over its ``num_shards`` files, in the order they come. Every shard file of every
    split is written, empty ones too, each under a temporary name renamed when complete.
    Use as a context manager; ``paths`` lists each split's shard files."""

    def __init__(self, dataset_dir, num_shards, splits=SPLITS):
        self.num_shards = num_shards
        self.paths = {split: [os.path.join(dataset_dir, shard_name(split, i, num_shards))
                              for i in range(num_shards)] for split in splits}
        self.counts = dict.fromkeys(splits, 0)
        self._stack = contextlib.ExitStack()
        self._writers = {}

    def __enter__(self):
        with self._stack as stack:
            for split, paths in self.paths.items():
                self._writers[split] = [
                    stack.enter_context(RecordFile(stack.enter_context(atomic_path(p))))
                    for p in paths]
            self._stack = stack.pop_all()
        return self

    def write(self, split, record):
        writers = self._writers[split]
        writers[self.counts[split] % self.num_shards].write(record)
        self.counts[split] += 1

    def __exit__(self, *exc_info):
        # Writers close before their temporary files are renamed (or removed on an error).
        return self._stack.__exit__(*exc_info)


def describe_shards(paths):
    """[{name, bytes}] of written shards, recorded in the manifest and checked on loading."""
    return [{"name": os.path.basename(p), "bytes": os.path.getsize(p)} for p in paths]


class DatasetError(ValueError):
    """A dataset folder whose manifest and shard files disagree (or that has no manifest)."""


def check_split_files(dataset_dir, split, check_sizes=True):
    """Raises DatasetError unless the split's shard files are exactly those the manifest lists,
    with the listed sizes (manifests without a listing: the shard count must match)."""
    manifest_path = os.path.join(dataset_dir, MANIFEST_NAME)
    if not os.path.isfile(manifest_path):
        raise DatasetError(f"{dataset_dir}: no {MANIFEST_NAME}; not a complete dataset "
                           "(rebuild with python -m thyroid.build_tfrecords)")
    manifest = read_json(manifest_path)
    on_disk = {os.path.basename(p): os.path.getsize(p) for p in shard_paths(dataset_dir, split)}
    listed = manifest.get("shards", {}).get(split)
    if listed is None and "num_shards" not in manifest:
        problem = ""  # a hand-written manifest without a listing: nothing to compare
    elif listed is None:
        expected = {shard_name(split, i, manifest["num_shards"])
                    for i in range(manifest["num_shards"])}
        problem = "" if set(on_disk) == expected else \
            f"has {len(on_disk)} {split} shard(s), manifest says {manifest['num_shards']}"
    else:
        expected = {item["name"]: item["bytes"] for item in listed}
        if not check_sizes:
            on_disk = {name: expected.get(name) for name in on_disk}
        problem = _listing_problem(split, expected, on_disk)
    if problem:
        raise DatasetError(f"{dataset_dir}: {problem}; the dataset is incomplete or mixed "
                           "(rebuild with python -m thyroid.build_tfrecords --overwrite)")
    return manifest


def _listing_problem(split, expected, on_disk):
    missing = sorted(set(expected) - set(on_disk))
    extra = sorted(set(on_disk) - set(expected))
    resized = sorted(n for n in set(expected) & set(on_disk) if expected[n] != on_disk[n])
    for what, names in (("missing", missing), ("not in the manifest", extra),
                        ("of another size than the manifest says", resized)):
        if names:
            return f"{split} shard(s) {what}: {', '.join(names)}"
    return ""


def write_labels_file(dataset_dir):
    text = "".join(f"{i}:{name}\n" for i, name in enumerate(LABEL_NAMES))
    atomic_write_text(os.path.join(dataset_dir, LABELS_NAME), text)


def read_manifest(dataset_dir):
    return read_json(os.path.join(dataset_dir, MANIFEST_NAME))


@dataclasses.dataclass
class SplitData:
    images: List[np.ndarray]  # None from load_split_metadata
    labels: np.ndarray
    patient_ids: np.ndarray
    augmented: np.ndarray
    tirads: List[str]
    keys: np.ndarray  # original image of each record ("" in shards built before keys existed)

    def __len__(self):
        return len(self.labels)


@dataclasses.dataclass
class Record:
    """One record of a split: the encoded image and what describes it."""
    encoded: bytes
    label: int
    patient_id: str
    augmented: bool
    tirads: str
    key: str


def iter_records(dataset_dir, split):
    """Yields the serialized records of a split, shard by shard."""
    from thyroid.compat import tf
    for path in shard_paths(dataset_dir, split):
        for record in tf.data.TFRecordDataset(path):
            yield record.numpy()


def parse_record(serialized):
    from thyroid.compat import tf
    feature = tf.train.Example.FromString(serialized).features.feature
    key = feature["image/key"].bytes_list.value if "image/key" in feature else []
    return Record(encoded=feature["image/encoded"].bytes_list.value[0],
                  label=int(feature["image/class/label"].int64_list.value[0]),
                  patient_id=feature["image/patient_id"].bytes_list.value[0].decode("utf-8"),
                  augmented=bool(feature["image/augmented"].int64_list.value[0]),
                  tirads=feature["image/tirads"].bytes_list.value[0].decode("utf-8"),
                  key=key[0].decode("utf-8") if key else "")


def iter_split(dataset_dir, split):
    """Yields the split's ``Record``s one at a time, in the order ``load_split`` lists them,
    so that a caller holds one encoded image at a time however large the split. The shard
    files are checked against the manifest first, and the record count at the end."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    manifest = check_split_files(dataset_dir, split)
    count = 0
    for serialized in iter_records(dataset_dir, split):
        count += 1
        yield parse_record(serialized)
    expected = manifest.get("splits", {}).get(split, {}).get("images")
    if expected is not None and expected != count:
        raise DatasetError(f"{dataset_dir}: {split} shards hold {count} records, "
                           f"manifest says {expected}; the dataset is incomplete or mixed")


def decode_image(encoded):
    """JPEG/PNG bytes of a record -> uint8 HxWx3."""
    return decode_image_bytes(encoded)


def load_split(dataset_dir, split, decode=True, images=True):
    """Reads every record of ``split``; images are uint8 HxWx3, or the encoded bytes when
    ``decode`` is False, or not kept at all when ``images`` is False (``load_split_metadata``).
    Holding a whole split's images suits small splits only; large passes stream ``iter_split``."""
    kept, labels, patients, augmented, tirads, keys = [], [], [], [], [], []
    for record in iter_split(dataset_dir, split):
        if images:
            kept.append(decode_image(record.encoded) if decode else record.encoded)
        labels.append(record.label)
        patients.append(record.patient_id)
        augmented.append(record.augmented)
        tirads.append(record.tirads)
        keys.append(record.key)
    return SplitData(images=kept if images else None, labels=np.asarray(labels, dtype=np.int64),
                     patient_ids=np.asarray(patients, dtype=str),
                     augmented=np.asarray(augmented, dtype=bool), tirads=tirads,
                     keys=np.asarray(keys, dtype=str))


def load_split_metadata(dataset_dir, split):
    """``load_split`` without the images (``images`` is None): labels, patients, keys..."""
    return load_split(dataset_dir, split, images=False)


def split_fingerprint(dataset_dir, split):
    """sha256 over the split's shard names and contents (each file's hash memoised).
    The shard names must agree with the manifest; sizes are checked when the split is loaded."""
    check_split_files(dataset_dir, split, check_sizes=False)
    digest = hashlib.sha256()
    for path in shard_paths(dataset_dir, split):
        digest.update(os.path.basename(path).encode("utf-8"))
        digest.update(file_sha256(path).encode("ascii"))
    return digest.hexdigest()


def slim_keys_to_features():
    from thyroid.compat import tf
    return {
        "image/encoded": tf.io.FixedLenFeature((), tf.string, default_value=""),
        "image/format": tf.io.FixedLenFeature((), tf.string, default_value="jpeg"),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "image/patient_id": tf.io.FixedLenFeature((), tf.string, default_value=""),
        "image/source": tf.io.FixedLenFeature((), tf.string, default_value=""),
        "image/tirads": tf.io.FixedLenFeature((), tf.string, default_value=""),
        "image/augmented": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "image/key": tf.io.FixedLenFeature((), tf.string, default_value=""),
    }


def slim_decoder():
    """A standard ``slim.tfexample_decoder.TFExampleDecoder`` for our shards (graph mode).

    Items: image (uint8 HxWx3), label, height, width, patient_id, source, tirads, augmented, key.
    """
    from thyroid.compat import slim
    decoders = slim.tfexample_decoder
    handlers = {"image": decoders.Image(channels=3),
                "label": decoders.Tensor("image/class/label")}
    for name in ("height", "width", "patient_id", "source", "tirads", "augmented", "key"):
        handlers[name] = decoders.Tensor(f"image/{name}")
    return decoders.TFExampleDecoder(slim_keys_to_features(), handlers)
