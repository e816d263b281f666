"""Writes small PyTorch-format state dicts (.pth) opcode by opcode, without PyTorch.

Every argument of every tensor-rebuild call is explicit, so tests can write both valid files and
records crafted to be wrong (negative strides, offsets past the storage, unknown dtypes...).
"""

import dataclasses
import io
import struct
import zipfile
from typing import Any

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
STORAGE_TYPES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}


@dataclasses.dataclass
class TensorRecord:
    """One ``_rebuild_tensor_v2(storage, offset, size, stride)`` call; any field may be bad."""

    storage_key: Any
    offset: Any
    size: Any
    stride: Any
    storage_type: str = "FloatStorage"


@dataclasses.dataclass
class StateDict:
    storages: dict  # key -> 1-D numpy array (float32 or int64)
    tensors: dict  # name -> TensorRecord

    def expected(self):
        """-> name -> the array PyTorch would load (row-major copy of the view)."""
        result = {}
        for name, record in self.tensors.items():
            flat = self.storages[record.storage_key]
            index = np.full(record.size, record.offset, np.int64)
            for axis, stride in enumerate(record.stride):
                shape = [1] * len(record.size)
                shape[axis] = record.size[axis]
                index = index + np.arange(record.size[axis]).reshape(shape) * stride
            result[name] = flat[index]
        return result


def sample_state():
    """A state dict with a permuted conv weight, a strided bias, a view sharing a storage,
    a contiguous matrix and an int64 scalar."""
    hwio = (1000 + np.arange(120)).astype(np.float32)
    storages = {"0": hwio, "1": (2000 + np.arange(10)).astype(np.float32),
                "2": (3000 + np.arange(12)).astype(np.float32), "3": np.array([7], np.int64)}
    tensors = {
        "conv.weight": TensorRecord("0", 0, (5, 4, 2, 3), (1, 5, 60, 20)),
        "conv.bias": TensorRecord("1", 4, (3,), (2,)),
        "conv.tail": TensorRecord("0", 100, (2, 2), (10, 1)),
        "fc.weight": TensorRecord("2", 0, (3, 4), (4, 1)),
        "bn.num_batches_tracked": TensorRecord("3", 0, (), (), "LongStorage"),
    }
    return StateDict(storages, tensors)


def allowed_values(state):
    return set(float(v) for array in state.storages.values() for v in array)


# ---------------------------------------------------------------- pickle opcodes (protocol 2)

def _int(value):
    if -2 ** 31 <= value < 2 ** 31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data  # LONG1


def _str(value):
    data = value.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def _obj(value):
    if value is None:
        return b"N"
    if isinstance(value, bool):
        return b"\x88" if value else b"\x89"
    if isinstance(value, int):
        return _int(value)
    if isinstance(value, float):
        return b"G" + struct.pack(">d", value)
    if isinstance(value, str):
        return _str(value)
    if isinstance(value, tuple):
        return b"(" + b"".join(_obj(v) for v in value) + b"t"
    if isinstance(value, list):
        return b"](" + b"".join(_obj(v) for v in value) + b"e"
    raise TypeError("cannot write %r" % (value,))


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _tensor(record, numel, legacy):
    pid = (b"(" + _str("storage") + _global("torch", record.storage_type)
           + _obj(record.storage_key) + _str("cpu") + _int(numel) + (b"N" if legacy else b"")
           + b"tQ")  # BINPERSID
    arguments = (pid + _obj(record.offset) + _obj(record.size) + _obj(record.stride) + b"\x89"
                 + _global("collections", "OrderedDict") + b")R")
    return _global("torch._utils", "_rebuild_tensor_v2") + b"(" + arguments + b"tR"


def state_pickle(state, legacy=False):
    items = b"".join(
        _str(name) + _tensor(record, _numel(state, record), legacy)
        for name, record in state.tensors.items())
    return (b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + items + b"u.")


def _numel(state, record):
    array = state.storages.get(record.storage_key)
    return 0 if array is None else int(array.size)


def storage_bytes(array):
    return array.astype(array.dtype.newbyteorder("<")).tobytes()


def zip_pth(state, data_pkl=None, storage_data=None):
    """-> bytes of a zip-format .pth; ``data_pkl`` / ``storage_data`` override the parts."""
    data_pkl = state_pickle(state) if data_pkl is None else data_pkl
    if storage_data is None:
        storage_data = {key: storage_bytes(a) for key, a in state.storages.items()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        for key, data in storage_data.items():
            archive.writestr("archive/data/%s" % key, data)
    return buffer.getvalue()


def legacy_pth(state):
    """-> bytes of a legacy (pre-zip) .pth."""
    parts = [b"\x80\x02" + _int(LEGACY_MAGIC_NUMBER) + b".", b"\x80\x02" + _int(1001) + b".",
             b"\x80\x02}.", state_pickle(state, legacy=True),
             b"\x80\x02" + _obj(list(state.storages)) + b"."]
    for array in state.storages.values():
        parts.append(struct.pack("<q", array.size) + storage_bytes(array))
    return b"".join(parts)


def with_record(state, name, **changes):
    """-> a copy of ``state`` whose tensor ``name`` has ``changes`` applied."""
    tensors = dict(state.tensors)
    tensors[name] = dataclasses.replace(tensors[name], **changes)
    return StateDict(dict(state.storages), tensors)
