"""Report rows for tests: a ``RowResult`` from the fields a test cares about."""

from thyroid.study.results import RowResult
from thyroid.study.rows import RowSettings, StudyRow, row_label


def report_row(row_id, model, mode, status="ok", label=None, **fields):
    row = StudyRow(row_id, model, mode, label or row_label(model, mode), RowSettings(32, 1))
    return RowResult(row, status=status, **{k: v for k, v in fields.items() if v is not None})
