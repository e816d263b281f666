"""One planned job, named by its typed fields. A job's id is built from them by ``job_id``
alone and is never read back: code that needs a job's row, repeat, fold or variant reads
those fields."""

import dataclasses
import os

# Every job's folder, <run>/jobs/<job id>: its result.json, and its records.json when it
# predicts (study.results).
JOBS_DIR = "jobs"
RESULT_FILE = "result.json"
RECORDS_FILE = "records.json"


def job_dir(run_dir, job_id):
    return os.path.join(run_dir, JOBS_DIR, job_id)


def job_id(kind, row_id=None, repeat=None, fold=None, variant=None):
    """The id of a job (its folder under ``<run>/jobs``): the kind, then its row, repeat and
    fold or variant where it has them: ``data``, ``features-9``, ``fit-9-r0-f2`` (``fit-9`` on a
    single split), ``refit-9``, ``variant-band``."""
    parts = [kind]
    if row_id is not None:
        parts.append(str(row_id))
    if repeat is not None:
        parts.append(f"r{repeat}")
    if fold is not None:
        parts.append(f"f{fold}")
    if variant is not None:
        parts.append(variant)
    return "-".join(parts)


@dataclasses.dataclass(frozen=True)
class Job:
    """A job of the plan: its kind (``study.kinds``), the stage its time is reported under,
    the ids of the jobs whose results it needs, and the row, repeat, fold or crop variant it
    is about (None where that does not apply)."""
    kind: str
    stage: str
    inputs: tuple[str, ...] = ()
    row_id: int | None = None
    repeat: int | None = None
    fold: int | None = None
    variant: str | None = None

    @property
    def id(self):
        return job_id(self.kind, self.row_id, self.repeat, self.fold, self.variant)

    def to_json(self):
        """The fields, and the id for readers of plan.json (it is rebuilt, not read, on load:
        ``study.plan``)."""
        return dict(dataclasses.asdict(self), id=self.id, inputs=list(self.inputs))


def row_stage(row_id, part):
    """The stage a row's jobs of ``part`` (one of ``kinds.ROW_STAGE_PARTS``) are timed under."""
    return f"row {row_id}: {part}"


def ids(planned, kind, row_id=None, repeat=None):
    """Ids of the planned jobs of ``kind`` (of one row and repeat when given)."""
    return tuple(job.id for job in planned if job.kind == kind
                 and (row_id is None or job.row_id == row_id)
                 and (repeat is None or job.repeat == repeat))
