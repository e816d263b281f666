""".pth reader hardening: every crafted or corrupted tensor record is either loaded correctly or
refused with the reader's own error, never read out of bounds and never a crash."""

import json
import os
import random
import struct
import subprocess
import sys

import numpy as np
import pytest

import pth_builder
from pth_builder import legacy_pth, sample_state, with_record, zip_pth
from thyroid.checkpoints.pth_reader import (MAX_TENSOR_ELEMENTS, PthReadError, UnsafePickleError,
                                            load_state_dict)

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pth_fuzz_worker.py")
SEED = int(os.environ.get("PTH_FUZZ_SEED", "12"))  # other seeds explore further
CASES_PER_KIND = int(os.environ.get("PTH_FUZZ_CASES", "120"))


def _write(path, data):
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- direct refusals

def _refusal(tmp_path, name, **changes):
    path = _write(tmp_path / "bad.pth", zip_pth(with_record(sample_state(), name, **changes)))
    with pytest.raises(PthReadError) as info:
        load_state_dict(path)
    message = str(info.value)
    assert str(path) in message and "'%s'" % name in message and "\n" not in message
    return message


def test_valid_files_load_exactly(tmp_path):
    state = sample_state()
    for kind, data in (("zip", zip_pth(state)), ("legacy", legacy_pth(state))):
        loaded = load_state_dict(_write(tmp_path / (kind + ".pth"), data))
        assert list(loaded) == list(state.tensors)
        for name, expected in state.expected().items():
            assert loaded[name].dtype == expected.dtype and loaded[name].shape == expected.shape
            np.testing.assert_array_equal(loaded[name], expected)


def test_refuses_negative_stride(tmp_path):
    assert "negative" in _refusal(tmp_path, "conv.bias", stride=(-2,))


def test_refuses_negative_offset(tmp_path):
    # offset -4 with stride 2 would otherwise read the four bytes before the storage.
    assert "offset -4" in _refusal(tmp_path, "conv.bias", offset=-4)


def test_refuses_element_beyond_storage(tmp_path):
    assert "beyond the storage" in _refusal(tmp_path, "conv.bias", offset=6)  # 6 + 2*2 = 10
    assert "beyond the storage" in _refusal(tmp_path, "conv.weight", stride=(1, 5, 60, 21))
    assert "beyond the storage" in _refusal(tmp_path, "bn.num_batches_tracked", offset=1)


def test_accepts_the_last_element_of_the_storage(tmp_path):
    path = _write(tmp_path / "edge.pth", zip_pth(with_record(sample_state(), "conv.bias",
                                                             offset=5)))
    np.testing.assert_array_equal(load_state_dict(path)["conv.bias"], [2005, 2007, 2009])


def test_refuses_unknown_dtype(tmp_path):
    message = _refusal(tmp_path, "fc.weight", storage_type="BFloat16Storage")
    assert "unsupported dtype torch.BFloat16Storage" in message


def test_refuses_huge_sizes(tmp_path):
    huge = MAX_TENSOR_ELEMENTS + 1
    assert "more than the reader accepts" in _refusal(
        tmp_path, "conv.bias", size=(huge,), stride=(0,))  # stride 0 would stay in bounds
    assert "more than the reader accepts" in _refusal(
        tmp_path, "fc.weight", size=(2 ** 40, 2 ** 40), stride=(0, 0))


def test_refuses_ill_typed_records(tmp_path):
    for changes in ({"size": (3.0,)}, {"stride": ("2",)}, {"size": (3, 1), "stride": (2,)},
                    {"size": (1,) * 17, "stride": (1,) * 17}, {"offset": 4.5},
                    {"offset": True}, {"size": 3}):
        assert "'conv.bias'" in _refusal(tmp_path, "conv.bias", **changes)


def test_refuses_missing_or_ragged_storage(tmp_path):
    state = sample_state()
    data = {key: pth_builder.storage_bytes(a) for key, a in state.storages.items()}
    path = tmp_path / "bad.pth"
    for storages in ({k: v for k, v in data.items() if k != "2"}, dict(data, **{"2": b"x" * 7})):
        _write(path, zip_pth(state, storage_data=storages))
        with pytest.raises(PthReadError, match="storage '2'"):
            load_state_dict(path)


def test_refuses_state_rewrites_and_foreign_globals(tmp_path):
    state = sample_state()
    pickle_bytes = pth_builder.state_pickle(state)
    # BUILD on the tensor record: would replace its checked attributes after the rebuild.
    rewrite = pickle_bytes.replace(b"tR", b"tR}X\x04\x00\x00\x00sizeJ\x00\x00\x00\x01sb", 1)
    path = _write(tmp_path / "rewrite.pth", zip_pth(state, data_pkl=rewrite))
    with pytest.raises(UnsafePickleError, match="set the state"):
        load_state_dict(path)
    foreign = pickle_bytes.replace(b"ctorch\nFloatStorage\n", b"cos\nsystem\n", 1)
    _write(path, zip_pth(state, data_pkl=foreign))
    with pytest.raises(UnsafePickleError, match="os.system"):
        load_state_dict(path)


def test_refuses_huge_memo_index(tmp_path):
    # LONG_BINPUT 2**31: the C unpickler would first grow its memo to that length.
    data = b"\x80\x02}r\x00\x00\x00\x80."
    path = _write(tmp_path / "memo.pth", zip_pth(sample_state(), data_pkl=data))
    with pytest.raises(PthReadError, match="memo index"):
        load_state_dict(path)


def test_refuses_legacy_storage_larger_than_the_file(tmp_path):
    data = legacy_pth(sample_state())
    tail = struct.pack("<q", 1) + pth_builder.storage_bytes(np.array([7], np.int64))
    assert data.endswith(tail)
    for numel in (2, -1, 2 ** 62):
        _write(tmp_path / "legacy.pth", data[:-len(tail)] + struct.pack("<q", numel) + tail[8:])
        with pytest.raises(PthReadError, match="claims"):
            load_state_dict(tmp_path / "legacy.pth")


# ---------------------------------------------------------------- seeded fuzzing

def _mutate_bytes(data, rng):
    position = rng.randrange(len(data))
    action = rng.choice(("flip", "flip", "insert", "delete", "truncate"))
    if action == "flip":
        return data[:position] + bytes([rng.randrange(256)]) + data[position + 1:]
    if action == "insert":
        return data[:position] + bytes([rng.randrange(256)]) + data[position:]
    if action == "delete":
        return data[:position] + data[position + 1:]
    return data[:position]


def _targeted_records(rng):
    """(tensor name, changes) crafted to be wrong in one rebuild-call argument."""
    names = list(sample_state().tensors)
    values = (-1, -2 ** 31, -2 ** 63, 2 ** 31, 2 ** 40, 2 ** 63, 2 ** 70)
    cases = []
    for name in names:
        record = sample_state().tensors[name]
        cases.append((name, {"offset": rng.choice(values)}))
        cases.append((name, {"storage_type": rng.choice(("BFloat16Storage", "ComplexStorage",
                                                        "QInt8Storage", "UntypedStorage"))}))
        if record.size:
            axis = rng.randrange(len(record.size))
            for field in ("size", "stride"):
                for value in (-1, rng.choice(values)):
                    changed = list(getattr(record, field))
                    changed[axis] = value
                    cases.append((name, {field: tuple(changed)}))
            cases.append((name, {"size": (2 ** 20,) * 3, "stride": (0, 0, 0)}))
    return cases


def _fuzz_cases(tmp_path):
    """-> [(path, kind)]; kinds: valid, targeted, pickle, storage, raw."""
    rng = random.Random(SEED)
    state = sample_state()
    zip_bytes, legacy_bytes = zip_pth(state), legacy_pth(state)
    pickle_bytes = pth_builder.state_pickle(state)
    storage_data = {key: pth_builder.storage_bytes(a) for key, a in state.storages.items()}
    cases = [(zip_bytes, "valid"), (legacy_bytes, "valid")]
    for name, changes in _targeted_records(rng):
        cases.append((zip_pth(with_record(state, name, **changes)), "targeted:" + name))
    for _ in range(CASES_PER_KIND):
        cases.append((zip_pth(state, data_pkl=_mutate_bytes(pickle_bytes, rng)), "pickle"))
        key = rng.choice(sorted(storage_data))
        storages = dict(storage_data, **{key: _mutate_bytes(storage_data[key], rng)})
        cases.append((zip_pth(state, storage_data=storages), "storage"))
        cases.append((_mutate_bytes(legacy_bytes, rng), "raw"))
        if rng.random() < 0.3:
            cases.append((_mutate_bytes(zip_bytes, rng), "raw"))
    paths = []
    for index, (data, kind) in enumerate(cases):
        paths.append((str(_write(tmp_path / ("case%04d.pth" % index), data)), kind))
    return paths


def _run_worker(paths, command=(sys.executable, WORKER)):
    process = subprocess.run(list(command), input="\n".join(paths) + "\n",
                             capture_output=True, text=True, timeout=120)
    results = [json.loads(line) for line in process.stdout.splitlines()]
    crashed_at = paths[len(results)] if len(results) < len(paths) else None
    assert process.returncode == 0 and crashed_at is None, (
        "worker exited with %d at %s: %s" % (process.returncode, crashed_at,
                                            process.stderr[-2000:]))
    return results


def _check_loaded(result, kind, state):
    for name, tensor in result["tensors"].items():
        assert tensor["type"] == "ndarray" and tensor["dtype"] in ("float32", "int64"), result
        if kind == "pickle":  # storages untouched: every value must come from one of them
            stray = set(tensor["values"]) - pth_builder.allowed_values(state)
            assert not stray, "%s: %s read values outside its storages" % (result["path"], name)


def test_fuzzed_files_load_or_are_refused(tmp_path):
    state = sample_state()
    cases = _fuzz_cases(tmp_path)
    assert len(cases) > 400
    results = _run_worker([path for path, _ in cases])
    counts = {}
    for (path, kind), result in zip(cases, results):
        assert result["path"] == path
        outcome = result["outcome"]
        counts[(kind.split(":")[0], outcome)] = counts.get((kind.split(":")[0], outcome), 0) + 1
        assert outcome in ("ok", "refused"), "%s (%s): %s" % (path, kind, result["message"])
        if kind == "valid":
            assert outcome == "ok"
            for name, expected in state.expected().items():
                assert result["tensors"][name]["values"] == expected.ravel().tolist()
        elif kind.startswith("targeted:"):
            assert outcome == "refused" and "'%s'" % kind.split(":")[1] in result["message"]
        if outcome == "ok":
            _check_loaded(result, kind, state)
        else:
            assert path in result["message"] and "\n" not in result["message"]
    # The mutations must exercise both outcomes, or the test proves little.
    for kind in ("pickle", "storage", "raw"):
        assert counts.get((kind, "refused"), 0) > 10, counts
    assert counts.get(("pickle", "ok"), 0) + counts.get(("storage", "ok"), 0) > 0, counts
    print("fuzz outcomes (seed %d): %s" % (SEED, sorted(counts.items())))


def test_worker_crash_is_detected(tmp_path):
    """The check itself: a worker killed by a signal mid-batch fails and names the case."""
    paths = [str(_write(tmp_path / ("case%d.pth" % i), zip_pth(sample_state()))) for i in (0, 1)]
    crashing = ("import json, os, signal, sys; print(json.dumps({'outcome': 'ok'}), flush=True); "
                "os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(AssertionError, match="worker exited with -11 at %s" % paths[1]):
        _run_worker(paths, command=(sys.executable, "-c", crashing))
    assert [r["outcome"] for r in _run_worker(paths)] == ["ok", "ok"]
