"""Reads a PyTorch ``state_dict`` file (.pth) into numpy arrays without PyTorch and without
unrestricted pickle.

Both PyTorch serialisations are handled:
- the zip format (torch >= 1.6): ``<archive>/data.pkl`` + ``<archive>/data/<key>`` raw storages;
- the legacy format: magic-number, protocol and system-info pickles, the state-dict pickle,
  a pickle with the storage keys, then each storage as an int64 element count + raw bytes.

The unpickler's ``find_class`` allows only ``torch._utils._rebuild_tensor_v2``,
``collections.OrderedDict`` and the ``torch.*Storage`` types (which only appear as persistent
ids); anything else raises ``UnsafePickleError`` before it can be called.
"""

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,  # not supported: numpy has no bfloat16
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for a callable the reader does not allow."""


class _StorageType:
    def __init__(self, name):
        dtype = STORAGE_DTYPES.get(name)
        if dtype is None:
            raise UnsafePickleError("Unsupported tensor storage type torch.%s" % name)
        self.name = name
        self.dtype = np.dtype(dtype)


class _StorageRef:
    """A storage named by a persistent id; its bytes are attached after unpickling (legacy)."""

    def __init__(self, storage_type, key, numel):
        self.storage_type = storage_type
        self.key = key
        self.numel = numel
        self.array = None


class _TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)

    def to_numpy(self):
        flat = self.storage.array
        if flat is None:
            raise pickle.UnpicklingError("Storage %s has no data" % self.storage.key)
        if not self.size:
            return flat[self.offset].copy()
        itemsize = flat.dtype.itemsize
        needed = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, flat.dtype)
        if needed > flat.size:
            raise pickle.UnpicklingError("Tensor view exceeds its storage %s" % self.storage.key)
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size,
            strides=tuple(s * itemsize for s in self.stride), writeable=False)
        return np.array(view, copy=True)  # contiguous, row-major


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    del requires_grad, backward_hooks, metadata
    if not isinstance(storage, _StorageRef):
        raise UnsafePickleError("_rebuild_tensor_v2 called without a tensor storage")
    return _TensorRef(storage, storage_offset, size, stride)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the few globals a state dict needs."""

    def __init__(self, file, storage_loader=None):
        super().__init__(file)
        self.storages = collections.OrderedDict()
        self._storage_loader = storage_loader

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(
            "Refusing to load %s.%s from the checkpoint: only tensor rebuilds, OrderedDict and "
            "torch storages are allowed (the file is not a plain PyTorch state dict, or it is "
            "malicious)" % (module, name))

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise UnsafePickleError("Unexpected persistent id %r" % (pid,))
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError("Persistent id names no allowed storage type: %r" % (pid,))
        if len(pid) > 5 and pid[5] is not None:
            raise UnsafePickleError("Storage views are not supported: %r" % (pid,))
        if key not in self.storages:
            ref = _StorageRef(storage_type, key, int(numel))
            if self._storage_loader is not None:
                ref.array = self._storage_loader(ref)
            self.storages[key] = ref
        return self.storages[key]


def _convert(obj):
    if isinstance(obj, _TensorRef):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _convert(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_convert(v) for v in obj)
    return obj


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise pickle.UnpicklingError("%s: expected one data.pkl in the zip, found %d"
                                         % (path, len(pickles)))
        prefix = pickles[0][:-len("data.pkl")]

        def load_storage(ref):
            raw = archive.read("%sdata/%s" % (prefix, ref.key))
            return np.frombuffer(raw, dtype=ref.storage_type.dtype.newbyteorder("<"))

        unpickler = RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), load_storage)
        return _convert(unpickler.load())


def _load_legacy(path):
    with open(path, "rb") as f:
        magic = RestrictedUnpickler(f).load()
        if magic != LEGACY_MAGIC_NUMBER:
            raise pickle.UnpicklingError("%s is not a PyTorch checkpoint" % path)
        RestrictedUnpickler(f).load()  # protocol version
        RestrictedUnpickler(f).load()  # system info (endianness, type sizes)
        unpickler = RestrictedUnpickler(f)
        state = unpickler.load()
        keys = RestrictedUnpickler(f).load()
        for key in keys:
            ref = unpickler.storages.get(str(key))
            (numel,) = struct.unpack("<q", f.read(8))
            dtype = ref.storage_type.dtype if ref is not None else None
            if dtype is None:
                raise pickle.UnpicklingError("Storage %s is not referenced by the state" % key)
            raw = f.read(numel * dtype.itemsize)
            if len(raw) != numel * dtype.itemsize:
                raise pickle.UnpicklingError("%s is truncated (storage %s)" % (path, key))
            ref.array = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
        return _convert(state)


def load_state_dict(path):
    """-> OrderedDict name -> numpy array (PyTorch layout) from a .pth file."""
    if zipfile.is_zipfile(path):
        state = _load_zip(path)
    else:
        state = _load_legacy(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise pickle.UnpicklingError("%s does not hold a state dict" % path)
    return state
