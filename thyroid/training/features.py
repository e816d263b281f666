"""Activations of a frozen network, computed once per image and cached on disk.

Three frozen outputs are cached: the bottleneck (VGG ``pool5``, Inception ``PreLogits``,
EfficientNet pooled head), for the SVM and FC-head rows; VGG-16's ``conv5_2`` output, so
that fine-tuning above it never recomputes the frozen layers; and pooled layers (mean and
SD over space of several end points, averaged with the left-right mirror) for the
logistic-regression rows.

A cache entry is keyed by everything that determines its values: model, which output,
checkpoint contents, shard contents, image size, for random weights the seed, and for
pooled layers the layer list and the pooling.
Any change gives a new key, so a stale entry is never read.
"""

import dataclasses
import hashlib
import json
import os

import numpy as np
from absl import logging

from thyroid.compat import tf, tf1
from thyroid.datasets import shards
from thyroid.io_utils import atomic_path, file_sha256
from thyroid.preprocessing.resize import resize_batch
from thyroid.prefetch import Prefetch
from thyroid.progress import Progress
from thyroid.restore import FrozenWeights, initialize_and_restore, resolve_checkpoint_path
from thyroid.training.run_config import ConfigError

BOTTLENECK = "bottleneck"
FROZEN_PREFIX = "frozen_prefix"
POOLED_LAYERS = "pooled_layers"
OUTPUTS = (BOTTLENECK, FROZEN_PREFIX, POOLED_LAYERS)
# How POOLED_LAYERS are reduced; part of their cache key, so a change never reads old values.
LAYER_POOLING = "mean_sd_over_space_mirror_averaged"
# Pooled layers are computed for original images only; the rows of augmented copies hold NaN.
# The logistic-regression mode, their one user, leaves the copies out (the mirror average is
# its augmentation), and NaN makes any other use fail loudly rather than read zeros.
# Part of the cache key.
POOLED_RECORDS = "originals_only"
# Decoded, resized images held ready ahead of the frozen pass (~150 MB at 224 px).
PREFETCH_IMAGES = 1024


@dataclasses.dataclass
class ActivationSet:
    values: np.ndarray
    labels: np.ndarray
    patient_ids: np.ndarray
    key: str
    reused: bool


def resolve_checkpoint(checkpoint_path):
    """A checkpoint prefix (a directory means its latest checkpoint), or None for random weights."""
    return resolve_checkpoint_path(checkpoint_path) if checkpoint_path else None


def checkpoint_fingerprint(checkpoint_path, seed=0):
    """Content hash of a checkpoint's index (or of a V1 single-file checkpoint); random
    weights are named by their seed."""
    prefix = resolve_checkpoint(checkpoint_path)
    if prefix is None:
        return f"random-init-seed-{seed}"
    return file_sha256(prefix + ".index" if os.path.exists(prefix + ".index") else prefix)


def cache_key(model, output, checkpoint_path, dataset_dir, split, image_size, seed=0, layers=()):
    parts = {
        "model": model,
        "output": output,
        "checkpoint": checkpoint_fingerprint(checkpoint_path, seed),
        "shards": shards.split_fingerprint(dataset_dir, split),
        "image_size": int(image_size),
        "format": 1,
    }
    if output == POOLED_LAYERS:
        parts.update(layers=list(layers), pooling=LAYER_POOLING, records=POOLED_RECORDS)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# Batch of the frozen forward passes: large enough to keep both cores busy, small enough
# that VGG-16's 224x224x64 activations stay well under a gigabyte.
FEATURE_BATCH_SIZE = 16


def outputs_computed_together(spec, output):
    """VGG's pool5 is conv5_3 + pool over its conv5_2 output: one pass caches both."""
    if spec.frozen_prefix is not None and output != POOLED_LAYERS:
        return (BOTTLENECK, FROZEN_PREFIX)
    return (output,)


def resolve_layers(spec, layers=()):
    """The end points pooled for ``spec``: ``layers`` or the network's own list."""
    layers = tuple(layers) or tuple(spec.feature_layers)
    if not layers:
        raise ConfigError("feature_layers", "", f"{spec.name} has no default layer list; "
                          "name its end points")
    return layers


def pooled_layer_tensor(spec, inputs, layers):
    """[N, 2 * channels summed over layers]: each layer's mean and SD over space.

    The image and its mirror go through the net as one batch and their features are
    averaged: a left-right flip is as plausible a scan, and averaging makes the features
    indifferent to which side the probe was held.
    """
    both = tf.concat([inputs, tf.reverse(inputs, axis=[2])], axis=0)
    _, end_points = spec.features(both, is_training=False)
    parts = []
    for layer in layers:
        if layer not in end_points or end_points[layer].shape.ndims != 4:
            spatial = sorted(name for name, t in end_points.items() if t.shape.ndims == 4)
            raise ConfigError("feature_layers", ",".join(layers),
                              f"{spec.name} has no spatial end point {layer!r}; it has "
                              + ", ".join(spatial))
        mean, variance = tf.nn.moments(end_points[layer], axes=[1, 2])
        parts += [mean, tf.sqrt(variance + 1e-8)]
    image, mirror = tf.split(tf.concat(parts, axis=1), 2, axis=0)
    return (image + mirror) / 2.0


def output_tensors(spec, inputs, outputs, layers=()):
    """{output: tensor} for the requested frozen outputs, built in one graph."""
    if outputs == (POOLED_LAYERS,):
        return {POOLED_LAYERS: pooled_layer_tensor(spec, inputs, resolve_layers(spec, layers))}
    if FROZEN_PREFIX in outputs:
        if spec.frozen_prefix is None:
            raise ValueError(f"{spec.name} has no frozen prefix to cache")
        prefix = spec.frozen_prefix(inputs)
        tensors = {FROZEN_PREFIX: prefix}
        if BOTTLENECK in outputs:
            tensors[BOTTLENECK] = spec.trainable_suffix(prefix, is_training=False)[0]
        return tensors
    if outputs != (BOTTLENECK,):
        raise ValueError(f"unknown outputs {outputs!r}; expected some of {OUTPUTS}")
    return {BOTTLENECK: spec.features(inputs, is_training=False)[0]}


class FrozenNetwork:
    """One graph and session for a frozen network, reused across splits. With a checkpoint
    its weights are ``restore.FrozenWeights`` (no variable objects); without one they are
    variables initialised from ``seed``."""

    def __init__(self, spec, image_size, outputs, checkpoint_path, seed=0, layers=(),
                 build=None):
        """``build(net_inputs) -> {output: tensor}`` replaces ``output_tensors`` for other
        frozen outputs (the segmentation encoder's end points)."""
        self.spec, self.outputs = spec, tuple(outputs)
        self.batch_size = 0  # the largest batch fed so far; shorter ones are padded to it
        prefix = resolve_checkpoint(checkpoint_path)
        weights = FrozenWeights(spec.exclude_scopes) if prefix else None
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(seed)
            self.images = tf1.placeholder(tf.uint8, [None, image_size, image_size, 3], name="images")
            with tf1.variable_scope("", custom_getter=weights.getter if weights else None):
                net_inputs = spec.preprocess(tf.cast(self.images, tf.float32))
                self.tensors = (build(net_inputs) if build else
                                output_tensors(spec, net_inputs, self.outputs, layers))
            restore = weights.restore_op(prefix) if weights else None
            self.session = tf1.Session(graph=self.graph)
            if restore is None:
                logging.warning("%s: no checkpoint, %s from random weights (seed %d)",
                                spec.name, "/".join(self.outputs), seed)
            initialize_and_restore(self.session)
            if restore is not None:
                self.session.run(restore)

    def run(self, batches, total, what):
        """Feeds uint8 batches; returns {output: float32 array}."""
        progress = Progress(total, f"{self.spec.name} {what}", "images")
        chunks = {output: [] for output in self.outputs}
        for batch in batches:
            values = self.run_batch(batch)
            progress.update(len(batch))
            for output in self.outputs:
                chunks[output].append(values[output])
        return {output: (np.concatenate(parts).astype(np.float32, copy=False) if parts else
                         np.zeros([0] + self.tensors[output].shape.as_list()[1:], np.float32))
                for output, parts in chunks.items()}

    def run_batch(self, batch):
        """One batch, a short one padded with zeros to the first batch's size: every run
        then has one input shape, so the last batch costs no new kernel selection. Inference
        mode has no batch statistics, so the padding cannot change the other images' outputs."""
        size = len(batch)
        self.batch_size = max(self.batch_size, size)
        if size < self.batch_size:
            padding = np.zeros((self.batch_size - size,) + batch.shape[1:], batch.dtype)
            batch = np.concatenate([batch, padding])
        values = self.session.run(self.tensors, {self.images: batch})
        return {output: value[:size] for output, value in values.items()}

    def close(self):
        self.session.close()


def resized_batches(encoded_images, image_size, batch_size):
    for start in range(0, len(encoded_images), batch_size):
        yield resize_batch([shards.decode_image(encoded)
                            for encoded in encoded_images[start:start + batch_size]], image_size)


def compute_activations(spec, images, output, checkpoint_path, batch_size=FEATURE_BATCH_SIZE, seed=0,
                        layers=()):
    """Runs the frozen network over uint8 images [N, S, S, 3] in inference mode."""
    network = FrozenNetwork(spec, images.shape[1], (output,), checkpoint_path, seed, layers)
    try:
        batches = (images[i:i + batch_size] for i in range(0, len(images), batch_size))
        return network.run(batches, len(images), output)[output]
    finally:
        network.close()


def cache_path(cache_dir, spec, output, split, key):
    return os.path.join(cache_dir, f"{spec.name}-{output}-{split}-{key[:20]}.npz")


def load_or_compute(spec, dataset_dir, split, output, checkpoint_path, image_size, cache_dir,
                    batch_size=FEATURE_BATCH_SIZE, seed=0, splits=shards.SPLITS, layers=()):
    """Returns ``split``'s activations, from ``cache_dir`` when its key matches.

    A miss computes every split in ``splits`` (and, for VGG-16, both cached outputs) in one
    graph, since training and evaluation will ask for them next. ``layers``: the end
    points of ``POOLED_LAYERS`` (default: the network's).
    """
    outputs = outputs_computed_together(spec, output)
    layers = resolve_layers(spec, layers) if output == POOLED_LAYERS else ()
    wanted = {(s, o): cache_key(spec.name, o, checkpoint_path, dataset_dir, s, image_size, seed,
                                layers)
              for s in dict.fromkeys((split,) + tuple(splits)) for o in outputs}
    paths = {pair: cache_path(cache_dir, spec, pair[1], pair[0], key) for pair, key in wanted.items()}
    reused = os.path.exists(paths[(split, output)])
    if reused:
        logging.info("reusing cached %s %s for %s: %s", spec.name, output, split,
                     paths[(split, output)])
    else:
        compute_missing(spec, dataset_dir, image_size, outputs, checkpoint_path, batch_size, seed,
                        {pair: path for pair, path in paths.items() if not os.path.exists(path)},
                        layers)
    with np.load(paths[(split, output)], allow_pickle=False) as cached:
        return ActivationSet(cached["values"], cached["labels"], cached["patient_ids"],
                             wanted[(split, output)], reused)


def computed_records(data, outputs):
    """Indices of the split's records the frozen pass computes (see POOLED_RECORDS)."""
    if outputs == (POOLED_LAYERS,):
        return np.flatnonzero(~np.asarray(data.augmented, bool))
    return np.arange(len(data.images))


def compute_missing(spec, dataset_dir, image_size, outputs, checkpoint_path, batch_size, seed,
                    missing_paths, layers=()):
    """Computes and caches the {(split, output): path} entries in one pass over the splits.

    The splits' images form one stream, so only the very last batch is short (and padded).
    Decoding and resizing start before the graph is built: building is single-threaded
    Python, so the other core prepares the first images meanwhile, and later the next
    batches while the session runs the current one."""
    splits = list(dict.fromkeys(s for s, _ in missing_paths))
    data = {split: shards.load_split(dataset_dir, split, decode=False) for split in splits}
    records = {split: computed_records(data[split], outputs) for split in splits}
    encoded = [data[split].images[i] for split in splits for i in records[split]]
    with Prefetch(resized_batches(encoded, image_size, batch_size),
                  max(2, PREFETCH_IMAGES // batch_size)) as batches:
        network = FrozenNetwork(spec, image_size, outputs, checkpoint_path, seed, layers)
        try:
            computed = network.run(batches, len(encoded), f"{'/'.join(outputs)} of "
                                   + ", ".join(splits))
        finally:
            network.close()
    start = 0
    for split in splits:
        end = start + len(records[split])
        for output in outputs:
            if (split, output) in missing_paths:
                values = computed[output][start:end]
                if len(values) < len(data[split].images):  # rows of skipped records hold NaN
                    every_record = np.full((len(data[split].images),) + values.shape[1:], np.nan,
                                           np.float32)
                    every_record[records[split]] = values
                    values = every_record
                save_activations(missing_paths[(split, output)], values, data[split])
        start = end


def save_activations(path, values, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, values=values, labels=data.labels,
                     patient_ids=np.asarray(data.patient_ids, dtype=str))
    logging.info("cached %d activations %s: %s", len(values), values.shape[1:], path)


def dump_bottlenecks(config, batch_size=0):
    """Fills the activation cache with every split's bottlenecks; yields one line per split."""
    from thyroid.checkpoints.locate import resolve_pretrained
    from thyroid.nets import get_network
    spec = get_network(config.model)
    checkpoint_path, description = resolve_pretrained(
        spec.name, "bottleneck_fc", config.checkpoint_path, config.checkpoint_dir,
        config.allow_random_init)
    cache_dir = config.cache_dir or os.path.join(config.dataset_dir, "activation_cache")
    for split in shards.SPLITS:
        result = load_or_compute(spec, config.dataset_dir, split, BOTTLENECK, checkpoint_path,
                                 config.image_size or spec.default_image_size, cache_dir,
                                 batch_size or FEATURE_BATCH_SIZE, config.seed)
        how = "reused" if result.reused else "computed"
        logging.info("%s %s: %s %s (%s)", spec.name, split, result.values.shape, how, description)
        yield (f"{split}: {result.values.shape[0]} images, features {result.values.shape[1:]}, {how}")
