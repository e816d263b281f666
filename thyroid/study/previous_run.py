"""Progressive transfer (``--init_from``): the previous study run whose exported model row 14
starts from, and the check that this study's images are not ones that run was developed on.

The previous run is read from its own files: its ``export`` job's result names the row it
exported and whether it was the refit (a single model; a fold ensemble has no one checkpoint to
start from), and the model is that row's refit (or single-split) training folder's latest
checkpoint, the one its export converted. Only a model of row 14's network and mode can be
continued (EfficientNet-Lite0 fine-tuning: row 10, or an earlier row 14).

Its development images are its shards' (``manifest.json`` ``image_sha256``, the file hash of
every original image). An image of this study byte-identical to one of them would sit in a
test fold of this study while the starting weights have already been fitted to it, so the
folds would leak: the ``shards`` job refuses the study then, naming the count (the hashes
and the matching are the external check's, ``datasets.duplicates.exact_duplicates``).
"""

import dataclasses
import os

from thyroid.checkpoint_paths import latest_checkpoint
from thyroid.datasets import duplicates, shards
from thyroid.flag_errors import FlagValueError
from thyroid.study.jobspec import job_id
from thyroid.study.kinds import SHARDS_DIR, row_train_dir
from thyroid.study.results import read_result
from thyroid.study.rows import PREVIOUS_RUN, STUDY_ROWS, get_row

FLAG = "init_from"


class PreviousRunError(FlagValueError):
    """``--init_from`` names a folder this study cannot start from, or whose images overlap."""

    def __init__(self, value, reason):
        super().__init__(FLAG, value, reason)


def _continued_row():
    """The (model, mode) the rows starting from a previous run continue."""
    row = next(row for row in STUDY_ROWS if row.starts_from == PREVIOUS_RUN)
    return row.model, row.mode


@dataclasses.dataclass(frozen=True)
class PreviousRun:
    """The previous run folder, the row it exported, that row's training folder and the
    checkpoint its export converted, and its shards (its development images)."""
    run_dir: str
    row_id: int
    train_dir: str
    checkpoint: str
    shards_dir: str

    def description(self):
        """What row 14's weights start from, in words (the report's weights section)."""
        return (f"previous run {self.run_dir}: the exported model of its row {self.row_id} "
                f"({self.checkpoint})")


def _exported(run_dir):
    """The previous run's committed export payload; ``PreviousRunError`` without one."""
    result = read_result(run_dir, job_id("export"))
    if result is None:
        raise PreviousRunError(run_dir, "not a study run with a committed export (no "
                                        "jobs/export/result.json)")
    if not result.ok or not result.payload.exported:
        why = result.note or "no fine-tuned mobile row to export"
        raise PreviousRunError(run_dir, f"its export wrote no model ({why})")
    if result.payload.folds:
        raise PreviousRunError(run_dir, (
            f"its export is a fold ensemble of {result.payload.folds} models; progressive "
            "transfer starts from one model (run it with --final_model=refit)"))
    return result.payload


def previous_run(run_dir):
    """The ``PreviousRun`` in ``run_dir``; ``PreviousRunError`` (one line) naming what is
    missing or why its model cannot be continued."""
    run_dir = os.path.abspath(run_dir)
    if not os.path.isdir(run_dir):
        raise PreviousRunError(run_dir, "no such folder")
    payload = _exported(run_dir)
    row = get_row(payload.row_id)
    if (row.model, row.mode) != _continued_row():
        raise PreviousRunError(run_dir, (
            f"its export is row {row.id} ({row.model} {row.mode}); row 14 continues "
            f"{' '.join(_continued_row())}"))
    train_dir = row_train_dir(run_dir, row.id)
    if payload.refit:
        train_dir = os.path.join(train_dir, "refit")
    checkpoint = latest_checkpoint(train_dir)
    if checkpoint is None:
        raise PreviousRunError(run_dir, f"no checkpoint in {train_dir}, which its export "
                                        "converted")
    shards_dir = os.path.join(run_dir, SHARDS_DIR)
    built = os.path.isfile(os.path.join(shards_dir, shards.MANIFEST_NAME))
    if not (built and shards.read_manifest(shards_dir).get("image_sha256")):
        raise PreviousRunError(run_dir, f"{shards_dir}/manifest.json lists no image hashes "
                                        "(built by an older version), so its images cannot be "
                                        "checked against this study's")
    return PreviousRun(run_dir, row.id, train_dir, checkpoint, shards_dir)


def overlapping_images(previous, shards_dir):
    """[{external: this study's key, development: the previous run's key, sha256}] of this
    study's images byte-identical to images the previous run was developed on."""
    trained = shards.read_manifest(previous.shards_dir).get("image_sha256") or {}
    own = shards.read_manifest(shards_dir).get("image_sha256") or {}
    return duplicates.exact_duplicates(trained, own)


def check_no_overlap(previous, shards_dir):
    """Refuses (``PreviousRunError``, naming the count) a study with images byte-identical to
    the previous run's development images; -> the number of images checked."""
    pairs = overlapping_images(previous, shards_dir)
    own = shards.read_manifest(shards_dir).get("image_sha256") or {}
    if pairs:
        raise PreviousRunError(previous.run_dir, (
            f"{len(pairs)} of this study's {len(own)} images are byte-identical to images "
            f"that run trained on (first: {pairs[0]['external']} = "
            f"{pairs[0]['development']}); its folds would leak: start from a run developed on "
            "other images"))
    return len(own)
