"""Rows 12 and 13, their fitting: localise the nodule, then classify (docs/LOCALISATION.md;
their data are in ``study.localisation_data``, their report in ``study.localisation_report``).

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
import os
import time

from absl import logging

from thyroid.datasets import folds
from thyroid.io_utils import atomic_write_json
from thyroid.nets import get_segmentation_network
from thyroid.stats.operating_point import choose_threshold
from thyroid.study.fitting import fit_map, prediction_records
from thyroid.study.localisation_data import (PARTS, expert_views, fold_inputs, indices,
                                             outline_set, resolved_scan_config,
                                             segmentation_config, view_arrays)
from thyroid.study.payloads import LocalisationFacts, SegmentPayload
from thyroid.study.results import FoldResult
from thyroid.study.rows import SEGMENTING_MODE
from thyroid.training import localise, segmentation

CROSS_FIT_PARTS = 2

SEGMENT_SUBDIR = "segment"

FOLD_FILE = "localise.json"

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
        arrays = view_arrays([localise.predicted_view(found, i, probabilities[i])
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
    inputs = fold_inputs(config, repeat, fold)
    parts = {part: indices(found, inputs[part]) for part in PARTS}
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
