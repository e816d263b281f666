"""Robustness to the frame: how far each row's P(malignant) moves when the frame around the
scan field changes (``--crop_variants``, opt-in).

A variant builds the study's labelled images again with another crop (evaluation-only shards,
same image keys): ``band`` keeps the bottom text band (where DDTI burns in text, TIRADS
included), ``frame`` keeps the whole frame (side text, scale bar, band), ``fixed`` takes a
fixed proportional box instead of the detected field, as on a scanner with another layout.
Each test image of each fold is scored again by that fold's own model, so the movement is
the model's, not the fold assignment's: |P(variant) - P(scan field)| per (repeat, image),
summarised by its median and the share of images moving by more than ``MOVE_LIMIT``.

The localisation rows are not measured: their nodule view comes from the outline set, which
is built for the scan field only.
"""

import os

import numpy as np

from thyroid.datasets import build
from thyroid.study.config import CROP_VARIANTS as VARIANTS
from thyroid.study.kinds import VARIANT_DIR
from thyroid.study.payloads import Movement, RobustnessPayload, VariantPayload
from thyroid.training.scoring import predict_inputs

MOVE_LIMIT = 0.05
SPLIT = "test"  # evaluation-only builds put every image there


def variant_dir(run_dir, variant):
    return os.path.join(run_dir, VARIANT_DIR, variant)


def build_variant(sources, variant, output_dir, seed):
    """Evaluation-only shards of the study's sources cut with ``variant``'s crop."""
    named = build.named_sources(ddti_dir=sources.ddti_dir, local_dir=sources.local_dir,
                                image_dir=sources.image_dir, csv=sources.csv)
    manifest = build.build(build.BuildConfig(output_dir=output_dir, sources=named,
                                             crop=VARIANTS[variant], evaluation_only=True,
                                             seed=seed, overwrite=True))
    return VariantPayload(output_dir, manifest["splits"][SPLIT]["images"])


def movements(fits, dataset_dir):
    """|P(variant) - P(original)| of every test record of ``fits`` ([(train_dir, records)]),
    each scored by its own fold's model on ``dataset_dir``."""
    moved = []
    for train_dir, records in fits:
        inputs, probs, _ = predict_inputs(train_dir, SPLIT, dataset_dir=dataset_dir)
        by_key = dict(zip(inputs.keys.tolist(), np.asarray(probs, np.float64).tolist()))
        moved += [abs(by_key[r["image"]] - float(r["prob"])) for r in records
                  if r["image"] in by_key]
    return moved


def summarize(moved):
    values = np.asarray(moved, np.float64)
    if not values.size:
        return Movement(None, None, 0)
    return Movement(float(np.median(values)), float(np.mean(values > MOVE_LIMIT)),
                    int(values.size))


def row_robustness(fits, variant_dirs):
    """The movements of one row ([(train_dir, records)] of its fits) per variant."""
    return RobustnessPayload({variant: summarize(movements(fits, directory))
                              for variant, directory in variant_dirs.items()})


def report_lines(rows, payloads, variants):
    """The "Robustness to the frame" section (markdown lines); ``payloads`` {row id: the
    robustness job's ``RobustnessPayload``}."""
    if not variants:
        return []
    header = ["#", "Method"] + [f"{v}: median / share > {MOVE_LIMIT:g}" for v in variants]
    lines = ["## Robustness to the frame", "",
             "How far P(malignant) moves on the same test images, each scored by its own fold's "
             "model, when the frame around the scan field changes: `band` keeps the bottom text "
             "band, `frame` the whole frame, `fixed` takes a fixed proportional box instead of "
             "the detected field. Median of |change| over every (repeat, image), and the share "
             f"of images moving by more than {MOVE_LIMIT:g}.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        moved = payloads[row.row_id].variants if row.row_id in payloads else {}
        cells = []
        for variant in variants:
            figures = moved.get(variant)
            cells.append("not measured" if figures is None or figures.median is None else
                         f"{figures.median:.3f} / {100 * figures.share_over_limit:.0f} %")
        lines.append(f"| {row.row_id} | {row.label} | " + " | ".join(cells) + " |")
    return lines + [""]
