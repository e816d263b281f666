"""Dataset readers. Each ``read(directory)`` returns a ReadResult; iterate it for the
labelled ``Example`` records."""

from thyroid.datasets import ddti, local
from thyroid.datasets.example import Example, ReadResult

READERS = {"ddti": ddti.read, "local": local.read}

__all__ = ["READERS", "Example", "ReadResult", "ddti", "local"]
