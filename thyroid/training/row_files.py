"""Arrays kept on disk one row per record: numpy ``.npy`` files written and read in blocks.

A study's inputs (resized images, frozen activations) grow with the dataset; these files keep
a process's memory to the rows it is using. ``RowFileWriter`` writes a ``.npy`` file block by
block under a temporary name and renames it when complete, so ``np.load`` reads it too and a
half-written file is never seen. ``RowFile`` reads rows back with plain file reads. It is not a
memory map on purpose: every page of a mapped file that has been read counts towards the
process's resident memory while the mapping lives, so a training loop drawing every row once
an epoch would end up holding the whole file; rows read with ``readinto`` pass through the page
cache, which the kernel reclaims as it needs.
"""

import contextlib

import numpy as np

from thyroid.io_utils import atomic_path

FILL_BLOCK_BYTES = 1 << 24  # skipped rows are filled in blocks of about this size


def _header(shape, dtype):
    return {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
            "shape": tuple(int(n) for n in shape)}


class RowFileWriter:
    """Writes ``shape``/``dtype`` rows in increasing order; rows never written hold ``fill``.

    Use as a context manager: the file appears at ``path`` only when the block exits without
    an error (a failed write leaves nothing behind)."""

    def __init__(self, path, shape, dtype, fill=0):
        self.path, self.shape, self.dtype, self.fill = path, tuple(shape), np.dtype(dtype), fill
        self.rows = 0  # rows written (or filled) so far
        self._stack = contextlib.ExitStack()
        self._file = None

    def __enter__(self):
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._file = self._stack.enter_context(open(tmp, "wb"))
        np.lib.format.write_array_header_1_0(self._file, _header(self.shape, self.dtype))
        return self

    def write(self, first_row, values):
        """Writes ``values`` as rows ``first_row, first_row + 1, ...``, filling any gap since
        the previous write."""
        values = np.ascontiguousarray(values, self.dtype)
        if first_row < self.rows or first_row + len(values) > self.shape[0]:
            raise ValueError(f"{self.path}: rows {first_row}..{first_row + len(values)} out of "
                             f"order or beyond {self.shape[0]} (next row {self.rows})")
        if values.shape[1:] != self.shape[1:]:
            raise ValueError(f"{self.path}: rows of shape {values.shape[1:]}, expected "
                             f"{self.shape[1:]}")
        self._fill_to(first_row)
        self._file.write(memoryview(values).cast("B"))
        self.rows = first_row + len(values)

    def _fill_to(self, row):
        row_bytes = max(1, self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64)))
        block = max(1, FILL_BLOCK_BYTES // row_bytes)
        while self.rows < row:
            count = min(block, row - self.rows)
            filled = np.full((count,) + self.shape[1:], self.fill, self.dtype)
            self._file.write(memoryview(filled).cast("B"))
            self.rows += count

    def __exit__(self, *exc_info):
        if exc_info[0] is None:
            self._fill_to(self.shape[0])
        return self._stack.__exit__(*exc_info)


class RowFile:
    """Read-only rows of a ``.npy`` file, indexed like an array along its first axis (an
    integer, a slice, integer or boolean indices, optionally followed by indices into each
    row); every index returns a numpy array read from disk. ``take`` is a view of some rows,
    read only when indexed; ``np.asarray`` reads them all."""

    def __init__(self, path, rows=None, _layout=None):
        self.path = path
        if _layout is None:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran_order, dtype = read_header(f)
                if fortran_order:
                    raise ValueError(f"{path}: a Fortran-ordered array, not one row per record")
                _layout = (tuple(shape), np.dtype(dtype), f.tell())
        self._file_shape, self.dtype, self._offset = _layout
        self._rows = None if rows is None else np.asarray(rows, np.int64)

    @property
    def shape(self):
        count = self._file_shape[0] if self._rows is None else len(self._rows)
        return (count,) + self._file_shape[1:]

    @property
    def ndim(self):
        return len(self._file_shape)

    def __len__(self):
        return self.shape[0]

    def _file_rows(self, key):
        """The file's row numbers for a first-axis index (numpy's rules and bounds checks)."""
        positions = np.arange(len(self))[key]
        return positions if self._rows is None else self._rows[positions]

    def take(self, indices):
        """A view of the rows ``indices`` (nothing is read)."""
        return RowFile(self.path, self._file_rows(np.asarray(indices, np.int64)),
                       (self._file_shape, self.dtype, self._offset))

    def __getitem__(self, key):
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        file_rows = self._file_rows(first)
        if np.ndim(file_rows) == 0:
            return self._read(np.asarray([file_rows]))[0][rest]
        return self._read(file_rows)[(slice(None),) + rest]

    def _read(self, file_rows):
        """Rows in the order asked; consecutive file rows are read with one call."""
        out = np.empty((len(file_rows),) + self._file_shape[1:], self.dtype)
        if not len(file_rows):
            return out
        order = np.argsort(file_rows, kind="stable")
        ordered = np.empty_like(out)
        sorted_rows = file_rows[order]
        row_bytes = out[0].nbytes
        runs = np.split(np.arange(len(sorted_rows)), np.flatnonzero(np.diff(sorted_rows) != 1) + 1)
        with open(self.path, "rb") as f:
            for run in runs:
                f.seek(self._offset + int(sorted_rows[run[0]]) * row_bytes)
                target = memoryview(ordered[run[0]:run[-1] + 1]).cast("B")
                if f.readinto(target) != len(target):
                    raise OSError(f"{self.path}: shorter than its header says")
        out[order] = ordered
        return out

    def __array__(self, dtype=None, copy=None):
        values = self[:]
        return values if dtype is None else values.astype(dtype, copy=False)

    def __repr__(self):
        return f"RowFile({self.path!r}, shape={self.shape}, dtype={self.dtype})"


def concatenate(parts):
    """The rows of ``parts`` one after another: a ``RowFile`` view when they are all views of
    one file (nothing read), else an array."""
    if parts and all(isinstance(p, RowFile) for p in parts) and len({p.path for p in parts}) == 1:
        first = parts[0]
        return RowFile(first.path, np.concatenate([p._file_rows(slice(None)) for p in parts]),
                       (first._file_shape, first.dtype, first._offset))
    return np.concatenate([np.asarray(p) for p in parts])
