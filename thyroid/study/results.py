"""What the study's jobs leave behind, and the one result type of a row for both protocols.

Every job writes ``jobs/<job id>/result.json`` (a ``JobResult``) atomically when it ends, and a
fit or refit job its prediction records beside it (``records.json``). The report is assembled
from these files alone, so a finished run can be reported again (``--report_only``).
"""

import dataclasses
import json
import os
import typing

import numpy as np
from absl import logging

from thyroid.io_utils import atomic_write_json, read_json
from thyroid.study import kinds, payloads
from thyroid.study.jobspec import JOBS_DIR, RECORDS_FILE, RESULT_FILE, job_dir  # noqa: F401
from thyroid.study.rows import StudyRow

FAILED_FILE = "failed.json"
OK, SKIPPED, FAILED = "ok", "skipped", "failed"
# 2: the payload is the kind's payload dataclass (study.payloads), or null.
RESULT_FORMAT = 2


@dataclasses.dataclass
class JobResult:
    """How one job ended. ``payload``: the kind's payload (``study.payloads``), None when the
    job did not end ok."""
    job: str
    kind: str
    status: str
    seconds: float
    finished: float  # time.time() when the job ended (the report's total time)
    fingerprint: str = ""
    note: str = ""
    payload: typing.Any = None
    # Where it ran: host, process, and the GPUs the executor gave it (CUDA_VISIBLE_DEVICES).
    worker: dict = dataclasses.field(default_factory=dict)
    # CPU time of the job's process and of the child processes it waited for (the build's
    # workers), None where not measured: on a shared machine it says more than ``seconds``.
    cpu_seconds: float | None = None

    @property
    def ok(self):
        return self.status == OK

    def to_json(self):
        return dict(dataclasses.asdict(self), format=RESULT_FORMAT,
                    payload=None if self.payload is None else payloads.to_json(self.payload))

    @classmethod
    def from_json(cls, saved):
        """The result saved by ``to_json``; a ValueError saying what is wrong otherwise."""
        if not isinstance(saved, dict):
            raise ValueError(f"a mapping expected, not {type(saved).__name__}")
        saved = dict(saved)
        if saved.pop("format", None) != RESULT_FORMAT:
            raise ValueError(f"not of result format {RESULT_FORMAT} (written by another "
                             "version)")
        payload = saved.pop("payload", None)
        result = payloads.from_json(_SavedResult, saved, "result")
        if result.status not in (OK, SKIPPED, FAILED):
            raise ValueError(f"status {result.status!r} is not {OK}, {SKIPPED} or {FAILED}")
        typed = None if payload is None else payloads.from_json(
            kinds.get(result.kind).payload, payload)
        if result.status == OK and typed is None:
            raise ValueError("an ok result without its payload")
        return cls(**dataclasses.asdict(result), payload=typed)


@dataclasses.dataclass(frozen=True)
class _SavedResult:
    """result.json's fields other than the payload, as ``payloads.from_json`` checks them."""
    job: str
    kind: str
    status: str
    seconds: float
    finished: float
    fingerprint: str = ""
    note: str = ""
    worker: dict = dataclasses.field(default_factory=dict)
    cpu_seconds: float | None = None


def write_result(run_dir, result, records=None):
    """Commits a job: its records first, then result.json (whose presence marks it done).

    A result that did not end ok never replaces one that did: it goes to failed.json beside
    it, and the committed result (and its records) stay as they were."""
    folder = job_dir(run_dir, result.job)
    os.makedirs(folder, exist_ok=True)
    if not result.ok:
        earlier = read_result(run_dir, result.job)
        if earlier is not None and earlier.ok:
            logging.warning("%s did not end ok (%s); its earlier committed result is kept, "
                            "this attempt is in %s", result.job, result.note,
                            os.path.join(folder, FAILED_FILE))
            atomic_write_json(os.path.join(folder, FAILED_FILE), result.to_json())
            return
    if records is not None:
        atomic_write_json(os.path.join(folder, RECORDS_FILE), records)
    atomic_write_json(os.path.join(folder, RESULT_FILE), result.to_json())


def result_problem(run_dir, job_id):
    """(JobResult or None, why it cannot be read or None): None, None when the job has not
    committed a result."""
    path = os.path.join(job_dir(run_dir, job_id), RESULT_FILE)
    if not os.path.exists(path):
        return None, None
    try:
        result = JobResult.from_json(read_json(path))
    except (OSError, ValueError) as error:
        return None, f"{path}: {error}"
    if result.job != job_id:
        return None, f"{path}: the result of job {result.job!r}, not of {job_id!r}"
    return result, None


_WARNED = set()


def read_result(run_dir, job_id):
    """The job's JobResult, or None when it has not committed one. A result.json that cannot
    be read as one (edited by hand, of another version) counts as not committed, said once
    per file in the log: the job runs again on --resume, and the report shows it unfinished."""
    result, problem = result_problem(run_dir, job_id)
    if problem and problem not in _WARNED:
        _WARNED.add(problem)
        logging.warning("%s; the job counts as not done", problem)
    return result


def this_worker():
    import socket
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}


def read_records(run_dir, job_id):
    """The job's prediction records ([] when it has none); a ValueError naming the file
    when it cannot be read."""
    path = os.path.join(job_dir(run_dir, job_id), RECORDS_FILE)
    if not os.path.exists(path):
        return []
    try:
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot be read ({error})") from None
    if not isinstance(records, list):
        raise ValueError(f"{path}: a list of prediction records expected")
    return records


@dataclasses.dataclass
class FoldResult:
    """One (repeat, fold) fit: the threshold its inner validation chose, the epochs at its best
    checkpoint (None for the scikit-learn rows), its time and out-of-fold records; the
    recalibration map its inner validation fitted (``RecalibrationMap.to_json``) and those
    inner-validation predictions (``labels``, ``probs``), from which the refit's map is fitted."""
    repeat: int
    fold: int
    threshold: float
    best_epochs: float | None
    seconds: float
    records: list
    checkpoint: str = ""
    recalibration: dict = dataclasses.field(default_factory=dict)
    validation: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_payload(cls, payload, records):
        """From a fit job's ``payloads.FoldFit`` and its records."""
        return cls(payload.repeat, payload.fold, payload.threshold, payload.best_epochs,
                   payload.seconds, records, payload.checkpoint, payload.recalibration,
                   payload.validation)

    def facts(self, localisation=None):
        """The fit job's payload: everything but the records (they go to records.json)."""
        return payloads.FoldFit(self.repeat, self.fold, self.threshold, self.best_epochs,
                                self.seconds, self.checkpoint, self.recalibration,
                                self.validation, localisation)


@dataclasses.dataclass
class RowResult:
    """One row of the report, for either protocol: how it ended and what it measured.

    Cross-validated rows carry their ``folds``; a single-split row its test ``metrics``
    (``stats.metrics.evaluate_predictions``) and the test ``labels`` / ``probs``."""
    row: StudyRow
    status: str = OK
    note: str = ""
    checkpoint: str | None = None
    train_seconds: float | None = None
    folds: list = dataclasses.field(default_factory=list)
    refit_seconds: float | None = None
    metrics: dict | None = None
    labels: np.ndarray | None = None
    probs: np.ndarray | None = None

    @property
    def row_id(self):
        return self.row.id

    @property
    def model(self):
        return self.row.model

    @property
    def mode(self):
        return self.row.mode

    @property
    def label(self):
        return self.row.label

    @property
    def title(self):
        return f"{self.row.id}. {self.row.label}"

    def fold_summary(self):
        """JSON-ready per-fold facts for folds_by_row.json: threshold, best epoch, time,
        recalibration map."""
        return [{"repeat": f.repeat, "fold": f.fold, "threshold": f.threshold,
                 "best_epochs": None if f.best_epochs is None or np.isnan(f.best_epochs)
                 else round(f.best_epochs, 3), "seconds": round(f.seconds, 1),
                 "recalibration": f.recalibration}
                for f in self.folds]
