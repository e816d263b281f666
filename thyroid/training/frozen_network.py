"""A frozen network as a TensorFlow graph: which of its outputs are cached, the graph
that computes them (``output_tensors``: the bottleneck, VGG-16's frozen prefix, or pooled
layers averaged with the mirror image) and ``FrozenNetwork``, one graph and session run batch
by batch. ``features`` chooses the engine and caches what these compute.
"""

import numpy as np
from absl import logging

from thyroid.compat import tf, tf1
from thyroid.progress import Progress
from thyroid.restore import FrozenWeights, initialize_and_restore, resolve_checkpoint_path
from thyroid.training.run_config import ConfigError

BOTTLENECK = "bottleneck"
FROZEN_PREFIX = "frozen_prefix"
POOLED_LAYERS = "pooled_layers"
OUTPUTS = (BOTTLENECK, FROZEN_PREFIX, POOLED_LAYERS)
# How POOLED_LAYERS are reduced; part of their cache key, so a change never reads old values.
LAYER_POOLING = "mean_sd_over_space_mirror_averaged"
# How the frozen prefix's output becomes one vector per image (``prefix_features_of``).
PREFIX_POOLING = "mean_over_space"


def resolve_checkpoint(checkpoint_path):
    """A checkpoint prefix (a directory means its latest checkpoint), or None for random weights."""
    return resolve_checkpoint_path(checkpoint_path) if checkpoint_path else None


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


def prefix_features_of(prefix_maps):
    """[N, h, w, C] frozen prefix outputs -> [N, C]: each channel's mean over space
    (``PREFIX_POOLING``). The one definition of the vector an export's ``features`` output
    gives (a graph tensor there) and the shift score's features (``training.shift_features``:
    numpy arrays of the cached ``FROZEN_PREFIX`` output, averaged in float64)."""
    if isinstance(prefix_maps, np.ndarray):
        return prefix_maps.mean(axis=(1, 2), dtype=np.float64)
    return tf.reduce_mean(prefix_maps, axis=[1, 2])


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


def output_name(output):
    return f"frozen_{output}"


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
                tensors = (build(net_inputs) if build else
                           output_tensors(spec, net_inputs, self.outputs, layers))
            # Named, so that a converted model's outputs are found by name.
            self.tensors = {output: tf.identity(tensor, name=output_name(output))
                            for output, tensor in tensors.items()}
            self.output_shapes = {output: tuple(tensor.shape.as_list()[1:])
                                  for output, tensor in self.tensors.items()}
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
