"""Reads a PyTorch ``state_dict`` file (.pth) into numpy arrays without PyTorch and without
unrestricted pickle.

Both PyTorch serialisations are handled:
- the zip format (torch >= 1.6): ``<archive>/data.pkl`` + ``<archive>/data/<key>`` raw storages;
- the legacy format: magic-number, protocol and system-info pickles, the state-dict pickle,
  a pickle with the storage keys, then each storage as an int64 element count + raw bytes.

The file is untrusted input, so:
- every pickle is first walked opcode by opcode without executing it (``pickletools``), which
  refuses memo indices a well-formed pickle cannot have (the C unpickler would allocate a memo
  as long as the largest index);
- the unpickler's ``find_class`` allows only ``torch._utils._rebuild_tensor_v2``,
  ``collections.OrderedDict`` and the ``torch.*Storage`` types (which only appear as persistent
  ids); anything else raises ``UnsafePickleError`` before it can be called;
- each tensor record (dtype, sizes, strides, storage offset) is checked against its storage's
  bytes before any element is read, and arrays are built by bounds-checked indexing;
- anything malformed raises ``PthReadError`` (or its subclass ``UnsafePickleError``) naming the
  file and, where it concerns one, the tensor.
"""

import collections
import io
import math
import pickle
import pickletools
import struct
import zipfile
import zlib

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}

MAX_DIMS = 16
MAX_TENSOR_ELEMENTS = 1 << 30
MAX_TENSOR_BYTES = 1 << 32
MAX_PICKLE_BYTES = 256 << 20
MAX_STORAGE_BYTES = 1 << 34

_MEMO_OPCODES = ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET", "MEMOIZE")

# What malformed bytes raise inside pickle, pickletools, zipfile, zlib or numpy.
_MALFORMED = (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
              AttributeError, struct.error, zipfile.BadZipFile, zlib.error, NotImplementedError,
              OverflowError, RecursionError)


class PthReadError(pickle.UnpicklingError):
    """The file is not a well-formed PyTorch state dict."""


class UnsafePickleError(PthReadError):
    """The pickle asks for a callable the reader does not allow."""


class _Record:
    """Base of the objects the unpickler creates: a pickle may not rewrite their attributes."""

    __slots__ = ()

    def __setstate__(self, state):
        raise UnsafePickleError("The pickle tries to set the state of a %s"
                                % type(self).__name__.lstrip("_"))


class _StorageType(_Record):
    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self.name = name
        dtype = STORAGE_DTYPES.get(name)
        self.dtype = None if dtype is None else np.dtype(dtype).newbyteorder("<")


class _StorageRef(_Record):
    """A storage named by a persistent id; its elements are attached as a flat array."""

    __slots__ = ("storage_type", "key", "array", "loader")

    def __init__(self, storage_type, key, loader=None):
        self.storage_type = storage_type
        self.key = key
        self.array = None
        self.loader = loader  # reads the bytes when a tensor first needs them (zip format)


class _TensorRef(_Record):
    """The unvalidated arguments of one tensor-rebuild call."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    del requires_grad, backward_hooks, metadata
    return _TensorRef(storage, storage_offset, size, stride)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _int_tuple(value):
    if not isinstance(value, (tuple, list)) or not all(_is_int(v) for v in value):
        return None
    return tuple(value)


def _check_layout(ref, what):
    """-> (flat storage array, offset, size, stride), or PthReadError saying what is wrong."""
    storage = ref.storage
    if not isinstance(storage, _StorageRef):
        raise PthReadError("%s: its storage is not a tensor storage" % what)
    what = "%s (storage %r)" % (what, storage.key)
    if storage.storage_type.dtype is None:
        raise PthReadError("%s: unsupported dtype torch.%s" % (what, storage.storage_type.name))
    if storage.array is None and storage.loader is not None:
        try:
            storage.array = storage.loader(storage)
        except PthReadError as error:
            raise PthReadError("%s: %s" % (what, error)) from None
    if storage.array is None:
        raise PthReadError("%s: the storage has no data" % what)
    size, stride, offset = _int_tuple(ref.size), _int_tuple(ref.stride), ref.offset
    if size is None or stride is None or len(size) != len(stride) or len(size) > MAX_DIMS:
        raise PthReadError("%s: sizes and strides must be two lists of at most %d integers of "
                           "equal length, got %r and %r" % (what, MAX_DIMS, ref.size, ref.stride))
    if any(n < 0 for n in size) or any(s < 0 for s in stride):
        raise PthReadError("%s: negative size or stride %r / %r" % (what, size, stride))
    if not _is_int(offset) or offset < 0:
        raise PthReadError("%s: storage offset %r is not a non-negative integer" % (what, offset))
    numel = math.prod(size)
    if numel > MAX_TENSOR_ELEMENTS or numel * storage.array.itemsize > MAX_TENSOR_BYTES:
        raise PthReadError("%s: %d elements is more than the reader accepts" % (what, numel))
    furthest = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if numel and furthest >= storage.array.size:
        raise PthReadError("%s: element %d is beyond the storage's %d elements"
                           % (what, furthest, storage.array.size))
    return storage.array, offset, size, stride


def _is_contiguous(size, stride):
    expected = 1
    for n, s in zip(reversed(size), reversed(stride)):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def _gather(flat, offset, size, stride):
    """Copies the validated view out of ``flat`` (row-major); indexing is bounds-checked."""
    numel = math.prod(size)
    if numel == 0:
        return np.zeros(size, flat.dtype.newbyteorder("="))
    if _is_contiguous(size, stride):
        view = flat[offset:offset + numel].reshape(size)
    else:
        index = np.asarray(offset, np.int64)
        for n, s in zip(size, stride):
            steps = np.arange(n, dtype=np.int64) * s if n > 1 else np.zeros(1, np.int64)
            index = index[..., None] + steps
        view = flat[index]
    return view.astype(flat.dtype.newbyteorder("="), copy=True)


def tensor_to_numpy(ref, name):
    """Validates one tensor record and returns its elements; ``name`` names it in errors."""
    return _gather(*_check_layout(ref, "tensor %r" % (name,)))


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
        if module == "torch" and isinstance(name, str) and name.endswith("Storage"):
            return _StorageType(name)  # an unsupported dtype is refused per tensor
        raise UnsafePickleError(
            "Refusing to load %s.%s from the checkpoint: only tensor rebuilds, OrderedDict and "
            "torch storages are allowed (the file is not a plain PyTorch state dict, or it is "
            "malicious)" % (module, name))

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage":
            raise UnsafePickleError("Unexpected persistent id %.100r" % (pid,))
        storage_type, key = pid[1], pid[2]
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError("Persistent id names no storage type: %.100r" % (pid,))
        if not isinstance(key, str) and not _is_int(key):
            raise PthReadError("Storage key %.100r is not a string" % (key,))
        if len(pid) == 6 and pid[5] is not None:
            raise UnsafePickleError("Storage views are not supported: %.100r" % (pid,))
        key = str(key)
        known = self.storages.get(key)
        if known is None:
            known = self.storages[key] = _StorageRef(storage_type, key, self._storage_loader)
        elif known.storage_type.name != storage_type.name:
            return _StorageRef(storage_type, key)  # no data: the tensor using it is refused
        return known


def _scan_pickle(buffer):
    """Walks one pickle's opcodes from ``buffer`` (up to STOP) without executing them."""
    count = 0
    for opcode, arg, _ in pickletools.genops(buffer):
        count += 1
        if opcode.name in _MEMO_OPCODES and arg is not None and not 0 <= int(arg) < count:
            raise PthReadError("Pickle memo index %s at opcode %d is out of range" % (arg, count))


def _unpickle(data, storage_loader=None):
    _scan_pickle(io.BytesIO(data))
    unpickler = RestrictedUnpickler(io.BytesIO(data), storage_loader)
    return unpickler.load(), unpickler


def _convert(obj, name):
    if isinstance(obj, _TensorRef):
        return tensor_to_numpy(obj, name)
    if isinstance(obj, dict):
        return collections.OrderedDict(
            (k, _convert(v, k if not name else "%s.%s" % (name, k))) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_convert(v, "%s[%d]" % (name, i)) for i, v in enumerate(obj))
    if isinstance(obj, _Record):
        raise PthReadError("%r holds a bare %s" % (name, type(obj).__name__.lstrip("_")))
    return obj


def _read_member(archive, name, limit):
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise PthReadError("the archive has no member %s" % name) from None
    if info.file_size > limit:
        raise PthReadError("member %s is %d bytes, more than the reader accepts"
                           % (name, info.file_size))
    try:
        with archive.open(info) as member:
            raw = member.read(info.file_size + 1)  # never more than the header announces
    except (OSError, RuntimeError) as error:  # a corrupt header offset, an "encrypted" flag
        raise PthReadError("cannot read member %s: %s" % (name, error)) from None
    if len(raw) != info.file_size:
        raise PthReadError("member %s does not have the %d bytes its header announces"
                           % (name, info.file_size))
    return raw


def _as_storage(raw, ref):
    itemsize = ref.storage_type.dtype.itemsize
    if len(raw) % itemsize:
        raise PthReadError("storage %r: %d bytes is not a whole number of %s elements"
                           % (ref.key, len(raw), ref.storage_type.name))
    return np.frombuffer(raw, dtype=ref.storage_type.dtype)


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise PthReadError("expected one data.pkl in the zip, found %d" % len(pickles))
        prefix = pickles[0][:-len("data.pkl")]

        def load_storage(ref):
            raw = _read_member(archive, "%sdata/%s" % (prefix, ref.key), MAX_STORAGE_BYTES)
            return _as_storage(raw, ref)

        state, _ = _unpickle(_read_member(archive, pickles[0], MAX_PICKLE_BYTES), load_storage)
        return _convert(state, "")


def _next_pickle(buffer, data):
    start = buffer.tell()
    _scan_pickle(buffer)
    return data[start:buffer.tell()]


def _read_legacy_storages(buffer, storages, keys):
    if not isinstance(keys, (list, tuple)):
        raise PthReadError("the storage key list is a %s" % type(keys).__name__)
    for key in keys:
        ref = storages.get(str(key)) if isinstance(key, str) or _is_int(key) else None
        if ref is None or ref.array is not None or ref.storage_type.dtype is None:
            raise PthReadError("storage %.100r is unknown, repeated or of unsupported dtype"
                               % (key,))
        header = buffer.read(8)
        if len(header) != 8:
            raise PthReadError("truncated before storage %r" % ref.key)
        (numel,) = struct.unpack("<q", header)
        nbytes = numel * ref.storage_type.dtype.itemsize
        remaining = len(buffer.getbuffer()) - buffer.tell()
        if numel < 0 or nbytes > remaining:
            raise PthReadError("storage %r claims %d elements; %d bytes remain in the file"
                               % (ref.key, numel, remaining))
        ref.array = _as_storage(buffer.read(nbytes), ref)


def _load_legacy(path):
    with open(path, "rb") as f:
        data = f.read()
    buffer = io.BytesIO(data)
    magic, _ = _unpickle(_next_pickle(buffer, data))
    if magic != LEGACY_MAGIC_NUMBER:
        raise PthReadError("not a PyTorch checkpoint (no zip, no legacy magic number)")
    _unpickle(_next_pickle(buffer, data))  # protocol version
    _unpickle(_next_pickle(buffer, data))  # system info (endianness, type sizes)
    state, unpickler = _unpickle(_next_pickle(buffer, data))
    keys, _ = _unpickle(_next_pickle(buffer, data))
    _read_legacy_storages(buffer, unpickler.storages, keys)
    return _convert(state, "")


def _check_state_dict(state):
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PthReadError("holds a %s, not a state dict" % type(state).__name__)
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise PthReadError("entry %.100r is a %s, not a named tensor"
                               % (key, type(value).__name__))
    return state


def _one_line(error):
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


def load_state_dict(path):
    """-> OrderedDict name -> numpy array (PyTorch layout) from a .pth file.

    Raises ``PthReadError`` (``UnsafePickleError`` for a disallowed callable) naming ``path``
    for anything that is not a well-formed state dict; OSError when it cannot be read.
    """
    path = str(path)
    try:
        state = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
        return _check_state_dict(state)
    except PthReadError as error:
        raise type(error)("%s: %s" % (path, _one_line(error))) from None
    except _MALFORMED as error:
        raise PthReadError("%s: malformed checkpoint (%s: %s)"
                           % (path, type(error).__name__, _one_line(error))) from error
