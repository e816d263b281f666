"""Rows on disk: .npy files written block by block and read back row by row."""

import os

import numpy as np
import pytest

from thyroid.training.row_files import RowFile, RowFileWriter, concatenate


def values(rows=10):
    return np.random.RandomState(0).rand(rows, 3, 2).astype(np.float32)


def written(tmp_path, array, name="a.npy"):
    path = str(tmp_path / name)
    with RowFileWriter(path, array.shape, array.dtype) as writer:
        writer.write(0, array[:4])
        writer.write(4, array[4:])
    return path


def test_a_written_file_is_numpy_format_and_unwritten_rows_hold_the_fill(tmp_path):
    array = values()
    np.testing.assert_array_equal(np.load(written(tmp_path, array)), array)
    path = str(tmp_path / "gaps.npy")
    with RowFileWriter(path, array.shape, np.float32, fill=np.nan) as writer:
        writer.write(2, array[2:4])
        writer.write(7, array[7:8])
    loaded = np.load(path)
    kept = [2, 3, 7]
    np.testing.assert_array_equal(loaded[kept], array[kept])
    assert np.all(np.isnan(np.delete(loaded, kept, axis=0)))


def test_a_failed_write_leaves_no_file_and_rows_must_come_in_order(tmp_path):
    array = values()
    path = str(tmp_path / "failed.npy")
    with pytest.raises(RuntimeError):
        with RowFileWriter(path, array.shape, np.float32) as writer:
            writer.write(0, array[:2])
            raise RuntimeError("the pass failed")
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="out of order"):
        with RowFileWriter(path, array.shape, np.float32) as writer:
            writer.write(3, array[3:5])
            writer.write(4, array[4:5])
    with pytest.raises(ValueError, match="rows of shape"):
        with RowFileWriter(path, array.shape, np.float32) as writer:
            writer.write(0, array[:2, :1])
    assert os.listdir(tmp_path) == []


def test_indexing_reads_the_rows_numpy_would_give(tmp_path):
    array = values()
    rows = RowFile(written(tmp_path, array))
    assert rows.shape == array.shape and rows.dtype == array.dtype and len(rows) == 10
    picks = np.array([3, 1, 1, 9, 2, 3, -1])  # unordered, repeated, negative
    mask = array[:, 0, 0] > 0.5
    for key in (picks, 2, -1, slice(2, 8, 3), mask, (slice(None), 1), (picks, 0, 1), (4, 2)):
        np.testing.assert_array_equal(rows[key], array[key])
    np.testing.assert_array_equal(np.asarray(rows), array)
    assert rows[[]].shape == (0, 3, 2)
    with pytest.raises(IndexError):
        rows[10]


def test_views_read_nothing_until_indexed_and_concatenate_stays_a_view(tmp_path):
    array = values()
    path = written(tmp_path, array)
    view = RowFile(path).take([7, 2, 5])
    assert view.shape == (3, 3, 2)
    np.testing.assert_array_equal(view[[2, 0]], array[[5, 7]])
    np.testing.assert_array_equal(view.take([1])[0], array[2])
    joined = concatenate([view, RowFile(path).take([0])])
    assert isinstance(joined, RowFile)
    np.testing.assert_array_equal(np.asarray(joined), array[[7, 2, 5, 0]])
    other = concatenate([view, array[:1]])  # not one file: read into an array
    np.testing.assert_array_equal(other, array[[7, 2, 5, 0]])


def test_a_truncated_file_fails_loudly(tmp_path):
    path = written(tmp_path, values())
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 8)
    with pytest.raises(OSError, match="shorter than its header"):
        RowFile(path)[9]
