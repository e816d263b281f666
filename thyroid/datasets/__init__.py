"""Dataset readers. Each ``read(path, ...)`` returns a ReadResult; iterate it for the labelled
``Example`` records. ``read_sources({kind: path}, ReaderOptions(...))`` reads several at once.

The readers load on first use (``__getattr__``): the serving install imports
``thyroid.datasets.images`` without lxml or python-docx, which only the readers need.
"""

import importlib

_LAZY = {"READERS": "thyroid.datasets.sources", "Example": "thyroid.datasets.example",
         "ReadResult": "thyroid.datasets.example", "ReaderOptions": "thyroid.datasets.sources",
         "SourceError": "thyroid.datasets.sources", "read_sources": "thyroid.datasets.sources"}
_READER_MODULES = ("csv_list", "ddti", "folders", "word_reports")

__all__ = sorted(_LAZY) + list(_READER_MODULES)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _READER_MODULES:
        return importlib.import_module(f"thyroid.datasets.{name}")
    raise AttributeError(f"module 'thyroid.datasets' has no attribute {name!r}")
