"""Per-image feature sets of the labelled DDTI images, cached as .npz.

Feature sets (``FEATURE_SETS``):
  ``roi_handcrafted``               shape / echo level / texture of the nodule polygon
                                    (``bench.experiments.roi_features``)
  ``<model>_<crop>_layers``         global mean and standard deviation of several blocks'
                                    activations (``LAYERS``), averaged over the image and its
                                    left-right mirror; ``<crop>`` is ``scan`` or ``roi``
The cache key is the feature set, the image files' hashes and the checkpoint's fingerprint.
"""

import hashlib
import json
import os

import numpy as np
from absl import logging

from thyroid.datasets import ddti, images
from thyroid.io_utils import atomic_path
from thyroid.preprocessing.resize import resize_batch
from bench.experiments import roi_features
from thyroid.datasets.splits import group_patients

# Pooled blocks per network: the end of each resolution stage from the middle of the net on.
LAYERS = {
    "efficientnet_lite0": ("blocks_4", "blocks_7", "blocks_10", "blocks_14", "blocks_15",
                           "conv_head"),
    "vgg_16": ("vgg_16/conv3/conv3_3", "vgg_16/conv4/conv4_3", "vgg_16/conv5/conv5_3"),
    "inception_v3": ("Mixed_5d", "Mixed_6e", "Mixed_7c"),
}
CROPS = ("scan", "roi")
BATCH_SIZE = 16


class Dataset:
    """Labelled DDTI images with labels, patient ids and duplicate-aware group ids."""

    def __init__(self, ddti_dir):
        result = ddti.read(ddti_dir)
        every = list(result.examples)
        hashes = [images.file_sha256(e.image_path) for e in every]
        units = group_patients([e.patient_id for e in every], hashes)
        keep = [i for i, e in enumerate(every) if e.label is not None and _usable(e.image_path)]
        self.skipped = sum(1 for e in every if e.label is not None) - len(keep)
        self.examples = [every[i] for i in keep]
        self.hashes = [hashes[i] for i in keep]
        self.labels = np.array([e.label for e in self.examples], np.int64)
        self.patients = np.array([e.patient_id for e in self.examples])
        self.groups = np.array([units[e.patient_id] for e in self.examples])

    def fingerprint(self):
        return hashlib.sha256("".join(self.hashes).encode()).hexdigest()


def _usable(path):
    try:
        images.load_image(path)
    except images.ImageError as error:
        logging.warning("skipping %s: %s", path, error)
        return False
    return True


def cache_file(cache_dir, name, dataset, extra=""):
    key = hashlib.sha256(json.dumps([name, dataset.fingerprint(), extra]).encode()).hexdigest()
    return os.path.join(cache_dir, f"{name}-{key[:16]}.npz")


def load_or_compute(name, dataset, cache_dir, compute, extra=""):
    """{array name: array} of feature set ``name``, from the cache when present."""
    path = cache_file(cache_dir, name, dataset, extra)
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as cached:
            return dict(cached)
    arrays = compute()
    os.makedirs(cache_dir, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    logging.info("cached %s: %s", name, path)
    return arrays


def handcrafted(dataset):
    rows = [roi_features.roi_features(images.load_image(e.image_path), e.polygons)
            for e in dataset.examples]
    return {"features": np.stack(rows)}


def pooled_layers(dataset, model, crop, checkpoint_path, seed=0):
    """{"<layer>/mean", "<layer>/std": [N, C]} averaged over each image and its mirror."""
    from thyroid.compat import tf, tf1
    from thyroid.nets import get_network
    from thyroid.restore import build_restore_fn, initialize_and_restore
    spec = get_network(model)
    size = spec.default_image_size
    batch = resize_batch([images.crop(images.load_image(e.image_path), crop, e.polygons)
                          for e in dataset.examples], size)
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)
        pixels = tf1.placeholder(tf.uint8, [None, size, size, 3])
        _, end_points = spec.features(spec.preprocess(tf.cast(pixels, tf.float32)))
        tensors = {}
        for layer in LAYERS[model]:
            mean, variance = tf.nn.moments(end_points[layer], axes=[1, 2])
            tensors[layer + "/mean"], tensors[layer + "/std"] = mean, tf.sqrt(variance + 1e-8)
        restore = (build_restore_fn(checkpoint_path, exclude_scopes=spec.exclude_scopes)
                   if checkpoint_path else None)
        with tf1.Session(graph=graph) as session:
            initialize_and_restore(session, restore)
            views = [_run(session, tensors, pixels, batch),
                     _run(session, tensors, pixels, batch[:, :, ::-1])]
    return {name: (views[0][name] + views[1][name]) / 2.0 for name in tensors}


def _run(session, tensors, pixels, batch):
    parts = [session.run(tensors, {pixels: batch[i:i + BATCH_SIZE]})
             for i in range(0, len(batch), BATCH_SIZE)]
    return {name: np.concatenate([p[name] for p in parts]).astype(np.float32) for name in tensors}


def feature_set(name, dataset, cache_dir, checkpoint_dir="checkpoints"):
    """{array name: [N, D]} for a feature set name (see the module docstring)."""
    if name == "roi_handcrafted":
        return load_or_compute(name, dataset, cache_dir, lambda: handcrafted(dataset),
                               extra=",".join(roi_features.FEATURE_NAMES))
    model, crop = _parse_layers_name(name)
    from thyroid.training.features import checkpoint_fingerprint
    from thyroid.checkpoints.locate import default_checkpoint_path
    from thyroid.nets import get_network
    path, exists = default_checkpoint_path(get_network(model), checkpoint_dir)
    path = path if exists else None
    if path is None:
        logging.warning("%s: no checkpoint under %s, random weights (seed 0)", model,
                        checkpoint_dir)
    return load_or_compute(name, dataset, cache_dir,
                           lambda: pooled_layers(dataset, model, crop, path),
                           extra=checkpoint_fingerprint(path))


def _parse_layers_name(name):
    for model in LAYERS:
        for crop in CROPS:
            if name == f"{model}_{crop}_layers":
                return model, crop
    raise ValueError(f"unknown feature set {name!r}; expected roi_handcrafted or "
                     f"<model>_<crop>_layers with model in {sorted(LAYERS)}, crop in {CROPS}")
