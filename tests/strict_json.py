"""Strict JSON parsing for tests: NaN, Infinity and -Infinity, which Python's json module
reads and writes by default, are not JSON and fail here."""

import json


def _refuse(constant):
    raise ValueError(f"{constant} is not JSON")


def loads(text):
    return json.loads(text, parse_constant=_refuse)


def load_file(path):
    with open(path, encoding="utf-8") as f:
        return loads(f.read())
