"""The build's TFRecord writer gives the bytes TensorFlow's writer gives, and TensorFlow reads
them back (checksums verified)."""

import numpy as np

from thyroid.compat import tf
from thyroid.datasets.tfrecord_file import RecordFile, masked_crc


def _records():
    rng = np.random.default_rng(0)
    return [b"", b"a", bytes(rng.integers(0, 256, 70_000, dtype=np.uint8))] + [
        bytes(rng.integers(0, 256, int(n), dtype=np.uint8)) for n in rng.integers(1, 5000, 20)]


def test_the_same_bytes_as_tensorflows_writer(tmp_path):
    ours, theirs = tmp_path / "ours.tfrecord", tmp_path / "theirs.tfrecord"
    with RecordFile(str(ours)) as f:
        for record in _records():
            f.write(record)
    with tf.io.TFRecordWriter(str(theirs)) as f:
        for record in _records():
            f.write(record)
    assert ours.read_bytes() == theirs.read_bytes()
    read = [r.numpy() for r in tf.data.TFRecordDataset(str(ours))]
    assert read == _records()


def test_a_corrupted_record_is_refused_by_tensorflow(tmp_path):
    path = tmp_path / "x.tfrecord"
    with RecordFile(str(path)) as f:
        f.write(b"hello world")
    data = bytearray(path.read_bytes())
    data[14] ^= 0xFF  # a byte of the record itself: its checksum no longer matches
    path.write_bytes(bytes(data))
    dataset = tf.data.TFRecordDataset(str(path))
    try:
        list(dataset)
    except tf.errors.DataLossError:
        return
    raise AssertionError("a record with a wrong checksum was read")


def test_the_masking_of_a_known_checksum():
    # CRC-32C("123456789") = 0xE3069283 (the standard check value), then TFRecord's mask.
    crc = 0xE3069283
    assert masked_crc(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
