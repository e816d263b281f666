"""Dataset readers. Each ``read(path, ...)`` returns a ReadResult; iterate it for the labelled
``Example`` records. ``read_sources({kind: path}, ReaderOptions(...))`` reads several at once."""

from thyroid.datasets import csv_list, ddti, folders, word_reports
from thyroid.datasets.example import Example, ReadResult
from thyroid.datasets.sources import ReaderOptions, SourceError, read_sources

READERS = {"ddti": ddti.read, "local": word_reports.read, "folders": folders.read,
           "csv": csv_list.read}

__all__ = ["READERS", "Example", "ReadResult", "ReaderOptions", "SourceError", "read_sources",
           "csv_list", "ddti", "folders", "word_reports"]
