"""The study's ``shift`` job: how far each image lies from the development images
(``stats.shift`` on ``training.shift_features``), one score that serves every row.

The reference is fitted on the development shards' original images through EfficientNet-Lite0's
frozen ImageNet prefix, at the input size of the study's EfficientNet-Lite0 row
(``kinds.shift_row``): the size an export of that row takes, so the export can carry the
reference and its ``features`` output feeds it. The prefix's output comes from the activation
cache the row's fine-tuning filled (same key), so the features cost no second pass. Every development image is scored by a
reference fitted without its fold (repeat 0 of the study's folds.json), and those scores are
what a new image's shift is ranked among. External images are scored by the reference fitted
on every development image.

Writes ``<run>/shift/shift_reference.npz`` and ``<run>/shift/shift_scores.csv`` (one line per
image: set, image, score, shift, unusual); the result keeps each external image's shift for
the external report (``stats.pooled.shift_figures``).
"""

import csv
import io
import os

import numpy as np
from absl import logging

from thyroid.checkpoints.locate import MissingCheckpointError, fetch_command
from thyroid.io_utils import atomic_write_text
from thyroid.stats import shift as shift_stats
from thyroid.study import kinds, payloads
from thyroid.study.config import row_config
from thyroid.study.fitting import EXTERNAL_SPLIT
from thyroid.study.jobs import Outcome
from thyroid.study.kinds import EXTERNAL_DIR, SHARDS_DIR, SHIFT_DIR, SHIFT_REFERENCE

SCORES_FILE = "shift_scores.csv"
SCORES_COLUMNS = ("set", "image", "score", "shift", "unusual")


def _network_settings(study, shards_dir):
    """The resolved RunConfig of the shift score's row: its ImageNet checkpoint, activation
    cache, input size and seed (the cache key its fine-tuning's frozen-prefix pass used)."""
    from thyroid.training.run import resolve
    config = resolve(row_config(study, kinds.shift_row(study), shards_dir))
    if not config.checkpoint_path:  # --allow_random_init: random features measure nothing
        raise MissingCheckpointError(
            f"the shift score needs {kinds.SHIFT_MODEL}'s ImageNet checkpoint; get it with: "
            f"{fetch_command(kinds.SHIFT_MODEL)}")
    return config


def _score_lines(name, keys, scores, shifts):
    return [(name, str(key), f"{score:.9g}", f"{value:.6g}", int(shift_stats.is_unusual(value)))
            for key, score, value in zip(keys, scores, shifts)]


def _write_scores(path, lines):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SCORES_COLUMNS)
    writer.writerows(lines)
    atomic_write_text(path, buffer.getvalue())


def run_shift(plan, job):
    """The development reference (written into <run>/shift), every development image's
    cross-fitted shift and every external image's shift."""
    from thyroid.training import shift_features
    shards_dir = os.path.join(plan.run_dir, SHARDS_DIR)
    config = _network_settings(plan.study, shards_dir)
    checkpoint, image_size = config.checkpoint_path, config.image_size
    development = shift_features.development_shift(shards_dir, checkpoint, config.cache_dir,
                                                   image_size, seed=config.seed)
    out_dir = os.path.join(plan.run_dir, SHIFT_DIR)
    os.makedirs(out_dir, exist_ok=True)
    reference_path = os.path.join(out_dir, SHIFT_REFERENCE)
    shift_features.write_reference(reference_path, development.reference)
    lines = _score_lines("development", development.keys, development.scores,
                         development.shift)
    external = None
    if plan.study.external:
        external_dir = os.path.join(plan.run_dir, EXTERNAL_DIR)
        split = shift_features.split_features(external_dir, EXTERNAL_SPLIT, checkpoint,
                                              os.path.join(external_dir, "activation_cache"),
                                              image_size, config.seed)
        scores = development.reference.scores(split.values)
        shifts = shift_stats.shift_of_scores(development.reference.development_scores, scores)
        external = {str(key): float(value) for key, value in zip(split.keys, shifts)}
        lines += _score_lines("external", split.keys, scores, shifts)
        logging.info("shift: %d of %d external images unusual (shift above %g)",
                     int(np.sum(shift_stats.is_unusual(shifts))), len(shifts),
                     shift_stats.UNUSUAL_ABOVE)
    scores_path = os.path.join(out_dir, SCORES_FILE)
    _write_scores(scores_path, lines)
    return Outcome(payloads.ShiftPayload(
        reference_path, development.reference.features, int(development.keys.size),
        int(np.sum(shift_stats.is_unusual(development.shift))), scores_path, external))
