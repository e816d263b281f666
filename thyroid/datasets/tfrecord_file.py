"""TFRecord files written without TensorFlow.

A TFRecord file is a sequence of frames: the record's length (uint64, little-endian), the
masked CRC-32C of those 8 bytes, the record, the masked CRC-32C of the record. The build writes
its shards through ``RecordFile`` so that neither its parent process nor its workers load
TensorFlow (importing it costs seconds, which on a small build was a third of the time and all
of it serial). The bytes are those ``tf.io.TFRecordWriter`` writes (tested).
"""

import struct

import google_crc32c

_MASK_DELTA = 0xA282EAD8


def masked_crc(data):
    """CRC-32C of ``data``, rotated right by 15 bits plus a constant (TFRecord's masking)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record):
    """The bytes of one record in a TFRecord file."""
    length = struct.pack("<Q", len(record))
    return b"".join((length, struct.pack("<I", masked_crc(length)), record,
                     struct.pack("<I", masked_crc(record))))


class RecordFile:
    """``with RecordFile(path) as f: f.write(record)``: an uncompressed TFRecord file."""

    def __init__(self, path):
        self.path = path
        self._file = None

    def __enter__(self):
        self._file = open(self.path, "wb")
        return self

    def write(self, record):
        self._file.write(frame(bytes(record)))

    def __exit__(self, *exc_info):
        self._file.close()
        return False
