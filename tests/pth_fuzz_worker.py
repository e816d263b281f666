"""Loads each .pth named on stdin (one path a line) and prints one JSON outcome a line.

Run as a subprocess by test_pth_reader_fuzz.py so that a crash (a signal) shows as the
process's exit status instead of killing the test run. The reader is loaded from its file so
that TensorFlow (imported by the ``thyroid.checkpoints`` package) is not needed here.
"""

import importlib.util
import json
import os
import resource
import sys

import numpy as np

READER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "thyroid", "checkpoints", "pth_reader.py")
MEMORY_LIMIT_BYTES = 4 << 30  # an unchecked huge allocation fails here instead of swapping


def _load_reader():
    spec = importlib.util.spec_from_file_location("pth_reader_under_test", READER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _outcome(reader, path):
    try:
        state = reader.load_state_dict(path)
    except reader.PthReadError as error:
        return {"outcome": "refused", "message": str(error)}
    except Exception as error:  # noqa: BLE001 - any other exception is what the test looks for
        return {"outcome": "other", "message": "%s: %s" % (type(error).__name__, error)}
    tensors = {}
    for name, value in state.items():
        array = np.asarray(value)
        tensors[str(name)] = {"type": type(value).__name__, "dtype": str(array.dtype),
                              "shape": list(array.shape),
                              "values": array.astype(np.float64).ravel().tolist()}
    return {"outcome": "ok", "tensors": tensors}


def main():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    reader = _load_reader()
    for line in sys.stdin:
        path = line.strip()
        if path:
            result = _outcome(reader, path)
            result["path"] = path
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
