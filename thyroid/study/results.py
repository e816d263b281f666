"""What the study's jobs leave behind, and the one result type of a row for both protocols.

Every job writes ``jobs/<job id>/result.json`` (a ``JobResult``) atomically when it ends, and a
fit or refit job its prediction records beside it (``records.json``). The report is assembled
from these files alone, so a finished run can be reported again (``--report_only``).
"""

import dataclasses
import json
import os

import numpy as np
from absl import logging

from thyroid.io_utils import atomic_write_json, read_json
from thyroid.study.rows import StudyRow

JOBS_DIR = "jobs"
RESULT_FILE = "result.json"
RECORDS_FILE = "records.json"
OK, SKIPPED, FAILED = "ok", "skipped", "failed"
RESULT_FORMAT = 1


@dataclasses.dataclass
class JobResult:
    """How one job ended. ``payload``: the kind's own JSON-ready facts."""
    job: str
    kind: str
    status: str
    seconds: float
    finished: float  # time.time() when the job ended (the report's total time)
    fingerprint: str = ""
    note: str = ""
    payload: dict = dataclasses.field(default_factory=dict)
    # Where it ran: host, process, and the GPUs the executor gave it (CUDA_VISIBLE_DEVICES).
    worker: dict = dataclasses.field(default_factory=dict)

    @property
    def ok(self):
        return self.status == OK


def job_dir(run_dir, job_id):
    return os.path.join(run_dir, JOBS_DIR, job_id)


FAILED_FILE = "failed.json"


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
            atomic_write_json(os.path.join(folder, FAILED_FILE),
                              dict(dataclasses.asdict(result), format=RESULT_FORMAT))
            return
    if records is not None:
        atomic_write_json(os.path.join(folder, RECORDS_FILE), records)
    atomic_write_json(os.path.join(folder, RESULT_FILE),
                      dict(dataclasses.asdict(result), format=RESULT_FORMAT))


def read_result(run_dir, job_id):
    """The job's JobResult, or None when it has not committed one (or it is unreadable)."""
    path = os.path.join(job_dir(run_dir, job_id), RESULT_FILE)
    try:
        saved = read_json(path)
    except (OSError, ValueError):
        return None
    if saved.pop("format", None) != RESULT_FORMAT:
        return None
    return JobResult(**saved)


def this_worker():
    import socket
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}


def read_records(run_dir, job_id):
    path = os.path.join(job_dir(run_dir, job_id), RECORDS_FILE)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return json.load(f)


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
        """From a fit job's result payload (which may carry more facts: a localisation row's)."""
        names = {field.name for field in dataclasses.fields(cls)} - {"records"}
        return cls(records=records, **{k: v for k, v in payload.items() if k in names})

    def facts(self):
        """JSON-ready, without the records (they go to records.json)."""
        return {"repeat": self.repeat, "fold": self.fold, "threshold": self.threshold,
                "best_epochs": self.best_epochs, "seconds": self.seconds,
                "checkpoint": self.checkpoint, "recalibration": self.recalibration,
                "validation": self.validation}


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
