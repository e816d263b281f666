"""Rows 12 and 13, their data (docs/LOCALISATION.md): the outline set (cropped as the shards),
the caches every fold reads (the scan field's features, the segmentation encoder's maps or the
expert views' features), and each fold's parts of it. The rows' design is in
``study.localisation_fitting``; their report section in ``study.localisation_report``.
"""

import hashlib
import json
import os

import numpy as np

from thyroid.checkpoints.locate import MissingCheckpointError, fetch_command
from thyroid.datasets import build, outlines, shards
from thyroid.io_utils import atomic_path, file_sha256
from thyroid.nets import get_segmentation_network
from thyroid.study.payloads import FeaturesPayload, OutlinesPayload
from thyroid.study.rows import SEGMENTING_MODE, effective_settings
from thyroid.training import localise, segmentation
from thyroid.training.features import checkpoint_fingerprint
from thyroid.training.inputs import load_split_inputs
from thyroid.training.run import resolve

# Decoder steps (batch 16: about 20 epochs of DDTI's ~300 training outlines), fixed in advance.
SEGMENT_STEPS, QUICK_SEGMENT_STEPS = 400, 40

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
        values = view_arrays(views, config)
        values["keys"] = np.asarray([found.records[i].key for i in labelled], str)
        os.makedirs(config.cache_dir, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **values)
    with np.load(path) as cached:
        return {name: cached[name] for name in cached.files}

def view_arrays(views, config):
    return {"roi": localise.pooled_roi_features(views, config.image_size, config.checkpoint_path,
                                                config.model),
            "measurements": np.stack([m for _, m, _ in views]).astype(np.float32),
            "found": np.asarray([f for _, _, f in views], bool)}

PARTS = ("train", "validation", "test")

def fold_inputs(config, repeat, fold):
    """{part: the scan view's SplitInputs of the fold's original images}."""
    config = config.replace(cv_repeat=repeat, cv_fold=fold)
    found = {}
    for part in PARTS:
        inputs = load_split_inputs(config, part)
        if inputs.augmented is not None:  # the mirror average is these rows' augmentation
            inputs = inputs.subset(np.flatnonzero(~np.asarray(inputs.augmented, bool)))
        found[part] = inputs
    return found

def indices(found, inputs):
    index = found.index_of()
    missing = [key for key in inputs.keys if key not in index]
    if missing:
        raise ValueError(f"{len(missing)} images of the shards are not in the outline set "
                         f"(first: {missing[0]}); build both from the same sources")
    return [index[key] for key in inputs.keys]
