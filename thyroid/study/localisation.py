"""Rows 12 and 13: localise the nodule, then classify (docs/LOCALISATION.md).

Both rows score each image with three logistic regressions, each choosing its C by a grouped
inner cross-validation on the fold's training part alone (``training.logreg``), and average
their probabilities: row 11's features of the scan field; the same features of the nodule
view (the nodule's box plus a 15 % margin, ``training.localise.roi_box``); and the outline's
hand-crafted measurements (``preprocessing.nodule_features``). The threshold comes from the
fold's inner-validation predictions, as for every row.

- Row 12 (deployable): the outline is predicted. Each fold trains its own segmentation
  network (``nets.segmentation``) on the outlined images of its training units only
  (``datasets.folds.outline_parts``: labelled and unlabelled images, copies kept together;
  the inner-validation and test units never), and is scored on the outlined images of its
  test units (Dice, IoU, centre in box; ``training.localise.evaluate``). The training part's
  outlines come from decoders that did not see their unit (``training.localise.cross_fitted``);
  the validation and test parts' from the fold's decoder. An image where nothing is found
  keeps the scan field as its nodule view, with undefined (imputed) measurements.
- Row 13 (upper bound, not deployable): the expert's outline, which a new image does not have.
"""

import dataclasses
import hashlib
import json
import os
import time

import numpy as np
from absl import logging

from thyroid.checkpoints.locate import MissingCheckpointError, fetch_command
from thyroid.datasets import build, folds, outlines, shards
from thyroid.io_utils import atomic_path, atomic_write_json, file_sha256
from thyroid.nets import get_segmentation_network
from thyroid.stats.operating_point import choose_threshold
from thyroid.study.fitting import fit_map, prediction_records
from thyroid.study.payloads import (FeaturesPayload, LocalisationFacts, OutlinesPayload,
                                    SegmentPayload)
from thyroid.study.results import FoldResult
from thyroid.study.rows import LOCALISATION_MODES, SEGMENTING_MODE, effective_settings
from thyroid.training import localise, segmentation
from thyroid.training.features import checkpoint_fingerprint
from thyroid.training.inputs import load_split_inputs
from thyroid.training.run import resolve

# Decoder steps (batch 16: about 20 epochs of DDTI's ~300 training outlines), fixed in advance.
SEGMENT_STEPS, QUICK_SEGMENT_STEPS = 400, 40
CROSS_FIT_PARTS = 2
SEGMENT_SUBDIR = "segment"
FOLD_FILE = "localise.json"


def segmentation_config(study, row, checkpoint_path):
    return segmentation.SegmentationConfig(
        checkpoint_path=checkpoint_path, image_size=effective_settings(row, study.quick).image_size,
        steps=QUICK_SEGMENT_STEPS if study.quick else SEGMENT_STEPS, seed=study.seed)


def build_outlines(sources, dataset_dir, output_dir):
    """The outline set of the study's sources, cropped as its shards; -> its summary."""
    crop = shards.read_manifest(dataset_dir).get("crop", "scan")
    if crop not in outlines.CROPS:
        raise ValueError(f"the localisation rows need shards cropped to {' or '.join(outlines.CROPS)}, "
                         f"not {crop!r}")
    named = build.named_sources(ddti_dir=sources.ddti_dir, local_dir=sources.local_dir)
    return OutlinesPayload(outlines.build_outline_set(named, output_dir, crop).summary)


_SETS = {}


def outline_set(directory):
    """The outline set in ``directory``, read once per process (its images decode once)."""
    memo = (os.path.abspath(directory), os.stat(os.path.join(directory, outlines.INDEX_NAME)).st_mtime_ns)
    if memo not in _SETS:
        _SETS.clear()
        _SETS[memo] = outlines.OutlineSet.load(directory)
    return _SETS[memo]


def resolved_scan_config(config):
    """The scan view's RunConfig resolved (checkpoint, cache); the rows need the ImageNet
    encoder: a segmentation and pooled features of random weights would mean nothing."""
    resolved = resolve(config.validate())
    if not resolved.checkpoint_path:
        raise MissingCheckpointError(f"the localisation rows need the {config.model} ImageNet "
                                     f"checkpoint: {fetch_command(config.model)}")
    return resolved


def prepare(study, row, config, outline_dir):
    """Fills the caches every fold reads: the scan field's features, and the segmentation
    encoder's maps (row 12) or the expert views' features (row 13)."""
    config = resolved_scan_config(config.replace(fold_file=None))
    load_split_inputs(config, "train")
    found = outline_set(outline_dir)
    if row.mode == SEGMENTING_MODE:
        seg = segmentation_config(study, row, config.checkpoint_path)
        segmentation.cached_encoder_maps(get_segmentation_network(seg.network), found,
                                         seg.image_size, seg.checkpoint_path, config.cache_dir)
    else:
        expert_views(found, config)
    return FeaturesPayload(outlined_images=found.summary["with_outline"])


def expert_views(found, config):
    """{'keys', 'roi', 'measurements', 'found'} of every labelled image's expert view, cached
    beside the activations (key: outline set, checkpoint, size, layers)."""
    parts = {"outlines": file_sha256(os.path.join(found.directory, outlines.IMAGES_NAME)),
             "index": file_sha256(os.path.join(found.directory, outlines.INDEX_NAME)),
             "checkpoint": checkpoint_fingerprint(config.checkpoint_path),
             "size": config.image_size, "layers": list(config.feature_layers), "format": 1}
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    path = os.path.join(config.cache_dir, f"expert-views-{key[:20]}.npz")
    if not os.path.exists(path):
        labelled = [i for i, r in enumerate(found.records) if r.label is not None]
        views = [localise.expert_view(found, i) for i in labelled]
        values = _view_arrays(views, config)
        values["keys"] = np.asarray([found.records[i].key for i in labelled], str)
        os.makedirs(config.cache_dir, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **values)
    with np.load(path) as cached:
        return {name: cached[name] for name in cached.files}


def _view_arrays(views, config):
    return {"roi": localise.pooled_roi_features(views, config.image_size, config.checkpoint_path,
                                                config.model),
            "measurements": np.stack([m for _, m, _ in views]).astype(np.float32),
            "found": np.asarray([f for _, _, f in views], bool)}


PARTS = ("train", "validation", "test")


def _fold_inputs(config, repeat, fold):
    """{part: the scan view's SplitInputs of the fold's original images}."""
    config = config.replace(cv_repeat=repeat, cv_fold=fold)
    found = {}
    for part in PARTS:
        inputs = load_split_inputs(config, part)
        if inputs.augmented is not None:  # the mirror average is these rows' augmentation
            inputs = inputs.subset(np.flatnonzero(~np.asarray(inputs.augmented, bool)))
        found[part] = inputs
    return found


def _indices(found, inputs):
    index = found.index_of()
    missing = [key for key in inputs.keys if key not in index]
    if missing:
        raise ValueError(f"{len(missing)} images of the shards are not in the outline set "
                         f"(first: {missing[0]}); build both from the same sources")
    return [index[key] for key in inputs.keys]


def _predicted_probabilities(study, row, config, found, parts, repeat, fold, train_dir):
    """({outline set index: probability map}, segmentation evaluation records) of one fold."""
    seg = segmentation_config(study, row, config.checkpoint_path)
    spec = get_segmentation_network(seg.network)
    maps = segmentation.cached_encoder_maps(spec, found, seg.image_size, seg.checkpoint_path,
                                            config.cache_dir)
    roles = folds.outline_parts(found.records, folds.load_folds(config.fold_file), repeat, fold)
    weights, prior = localise.fit_segmentation(spec, maps, found, roles["train"], seg)
    segmentation.save_model(os.path.join(train_dir, SEGMENT_SUBDIR), seg, weights,
                            found.summary.get("crop", "scan"),
                            {"images": len(roles["train"]), "repeat": repeat, "fold": fold})
    probabilities = localise.cross_fitted(spec, maps, found, roles["train"], parts["train"], seg,
                                          CROSS_FIT_PARTS)
    held = parts["validation"] + parts["test"]
    probabilities.update(zip(held, localise.probabilities_of(spec, weights, maps, held,
                                                             seg.image_size)))
    tested = localise.probabilities_of(spec, weights, maps, roles["test"], seg.image_size)
    evaluation = localise.evaluate(found, roles["test"], tested, prior)
    for record in evaluation:
        record.update(repeat=repeat, fold=fold)
    return probabilities, evaluation


def _views(study, row, config, found, parts, repeat, fold, train_dir):
    """({part: {member: features}}, segmentation evaluation records or None)."""
    every = [i for part in PARTS for i in parts[part]]
    if row.mode == SEGMENTING_MODE:
        probabilities, evaluation = _predicted_probabilities(study, row, config, found, parts,
                                                             repeat, fold, train_dir)
        arrays = _view_arrays([localise.predicted_view(found, i, probabilities[i])
                               for i in every], config)
        position = {index: n for n, index in enumerate(every)}
    else:
        evaluation, arrays = None, expert_views(found, config)
        keys = {str(key): n for n, key in enumerate(arrays.pop("keys"))}
        position = {index: keys[found.records[index].key] for index in every}
    views = {}
    for part in PARTS:
        rows = [position[i] for i in parts[part]]
        views[part] = {"roi": arrays["roi"][rows], "measurements": arrays["measurements"][rows],
                       "found": arrays["found"][rows]}
    return views, evaluation


def run_fold(study, row, config, repeat, fold, train_dir, outline_dir):
    """Fits a localisation row on one fold; -> (FoldResult, its localisation facts)."""
    started = time.monotonic()
    config = resolved_scan_config(config)
    found = outline_set(outline_dir)
    inputs = _fold_inputs(config, repeat, fold)
    parts = {part: _indices(found, inputs[part]) for part in PARTS}
    os.makedirs(train_dir, exist_ok=True)
    views, evaluation = _views(study, row, config, found, parts, repeat, fold, train_dir)
    for part in PARTS:
        views[part]["scan"] = inputs[part].values
    train = inputs["train"]
    models = localise.fit_members(views["train"], train.labels, train.patient_ids, study.seed)
    validation, test = (localise.member_probabilities(models, views[p])
                        for p in ("validation", "test"))
    threshold = choose_threshold(study.operating_point, inputs["validation"].labels, validation)
    members = localise.member_scores(models, views["test"])
    facts = LocalisationFacts(
        members={name: selection for name, (_, selection) in models.items()},
        # Each member's test probabilities, in the order of the fold's records: which view
        # carries the signal (the report's per-member AUCs).
        member_test_probabilities={name: [round(float(p), 6) for p in values]
                                   for name, values in members.items()},
        nodule_found={part: [int(views[part]["found"].sum()), len(parts[part])]
                      for part in PARTS},
        segmentation=evaluation)
    atomic_write_json(os.path.join(train_dir, FOLD_FILE),
                      dict(dataclasses.asdict(facts), threshold=threshold))
    logging.info("row %d repeat %d fold %d: threshold %.3f; nodule found in %s", row.id, repeat,
                 fold, threshold, facts.nodule_found)
    labels = inputs["validation"].labels
    recalibration = fit_map(study.recalibrate, row.mode, labels, validation)
    records = prediction_records(row.id, repeat, fold, inputs["test"], test, threshold,
                                 recalibration.apply(test))
    return FoldResult(repeat, fold, threshold, None, time.monotonic() - started, records,
                      config.checkpoint_description, recalibration.to_json(),
                      {"labels": [int(v) for v in labels],
                       "probs": [float(v) for v in validation]}), facts


def refit_segmentation(study, row, config, outline_dir, output_dir):
    """The segmentation network on every outlined image (what the export ships); -> facts."""
    config = resolved_scan_config(config.replace(fold_file=None))
    found = outline_set(outline_dir)
    seg = segmentation_config(study, row, config.checkpoint_path)
    spec = get_segmentation_network(seg.network)
    maps = segmentation.cached_encoder_maps(spec, found, seg.image_size, seg.checkpoint_path,
                                            config.cache_dir)
    every = folds.outline_parts(found.records, None, 0, folds.REFIT_FOLD)["train"]
    weights, _ = localise.fit_segmentation(spec, maps, found, every, seg)
    segmentation.save_model(output_dir, seg, weights, found.summary.get("crop", "scan"),
                            {"images": len(every), "fold": "all development images"})
    return SegmentPayload(output_dir, len(every))


# --------------------------------------------------------------------------------------
# The report's section
# --------------------------------------------------------------------------------------

REFERENCE_ROW = 11  # the same scan-field features without localisation


def _interval(values, digits=2):
    mean, low, high = values
    if mean is None or np.isnan(mean):
        return "—"
    if np.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def segmentation_lines(evaluation, num_samples, seed):
    """The segmentation table of every fold's test images (markdown lines)."""
    summary = localise.summarize(evaluation, num_samples, seed)
    lines = [f"Segmentation (row 12's network): each fold's model on the outlined images of its "
             f"test units, {summary['images']} images of {summary['units']} units "
             f"({summary['unlabelled']} unlabelled); intervals from a bootstrap over units. "
             f"The prior mask is the mean training mask, the trivial reference.", "",
             "| Mask | Dice | IoU | Predicted box holds the nodule's centre |", "|---|---|---|---|"]
    for name, prefix in (("segmentation network", ""), ("prior mask", "prior_")):
        lines.append(f"| {name} | " + " | ".join(
            _interval(summary[prefix + figure]) for figure in ("dice", "iou", "centre_hit"))
            + " |")
    return lines + ["", f"Nothing found on {summary['empty']} of {summary['images']} test "
                        "images (their nodule view falls back to the scan field).", ""]


def comparison_lines(rows, summaries, records):
    """Rows 11-13 side by side, with DeLong's p against row 11 (markdown lines)."""
    from thyroid.stats import pooled
    lines = ["| # | Method | AUC | AUC per repeat | p vs row 11 (DeLong) |", "|---|---|---|---|---|"]
    for row in rows:
        if row.row_id != REFERENCE_ROW and row.mode not in LOCALISATION_MODES:
            continue
        figures = summaries.get(row.row_id) or pooled.RowFigures()
        auc = (figures.auc, figures.auc_ci_low, figures.auc_ci_high)
        test = None if row.row_id == REFERENCE_ROW else \
            pooled.delong_between(records, row.row_id, REFERENCE_ROW)
        p = "reference" if row.row_id == REFERENCE_ROW else (
            "—" if not test else f"{test['p_value']:.3f}")
        repeats = ", ".join(f"{a:.2f}" for a in figures.auc_by_repeat or [])
        lines.append(f"| {row.row_id} | {row.label} | "
                     f"{_interval(tuple(np.nan if v is None else v for v in auc))} | "
                     f"{repeats or '—'} | {p} |")
    return lines + ["", "DeLong's test is on each image's probability averaged over the repeats; "
                        "compare the repeats too. Row 13 needs the expert's outline, which a new "
                        "image does not have: an upper bound, not a deployable method.", ""]


def member_lines(rows, fit_payloads, fit_records):
    """Pooled out-of-fold AUC of each member of rows 12 and 13 (markdown lines)."""
    from thyroid.stats.metrics import auc_score
    lines = ["Each member alone (pooled out-of-fold AUC; the row averages the three):", "",
             "| # | " + " | ".join(localise.MEMBERS) + " |", "|---|" + "---|" * len(localise.MEMBERS)]
    for row in rows:
        if row.mode not in LOCALISATION_MODES:
            continue
        labels, scores = [], {name: [] for name in localise.MEMBERS}
        for payload, records in zip(fit_payloads, fit_records):
            members = payload.localisation and payload.localisation.member_test_probabilities
            if not records or records[0]["row_id"] != row.row_id or not members:
                continue
            labels += [record["label"] for record in records]
            for name in localise.MEMBERS:
                scores[name] += members[name]
        if labels:
            lines.append(f"| {row.row_id} | " + " | ".join(
                f"{auc_score(np.asarray(labels), np.asarray(scores[name])):.2f}"
                for name in localise.MEMBERS) + " |")
    return lines + [""] if len(lines) > 4 else []


def report_lines(rows, summaries, records, fit_payloads, num_samples, seed, fit_records=()):
    """The "Localisation" section of summary.md, or [] when no localisation row ran."""
    ran = [row for row in rows if row.mode in LOCALISATION_MODES]
    if not ran:
        return []
    lines = ["## Localisation (rows 12 and 13)", ""]
    evaluation = [record for payload in fit_payloads if payload.localisation
                  for record in payload.localisation.segmentation or ()]
    if evaluation:
        lines += segmentation_lines(evaluation, num_samples, seed)
    lines += comparison_lines(rows, summaries, records)
    return lines + (member_lines(rows, fit_payloads, fit_records) if fit_records else [])
