"""Activations of a frozen network, computed once per image and cached on disk.

Two frozen outputs are cached: the bottleneck (VGG ``pool5``, Inception ``PreLogits``,
EfficientNet pooled head), for the SVM and FC-head rows, and VGG-16's ``conv5_2``
output, so that fine-tuning above it never recomputes the frozen layers.

A cache entry is keyed by everything that determines its values: model, which output,
checkpoint contents, shard contents, image size and, for random weights, the seed.
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
from thyroid.io_utils import atomic_path
from thyroid.preprocessing.resize import resize_batch
from thyroid.progress import Progress
from thyroid.restore import build_restore_fn

BOTTLENECK = "bottleneck"
FROZEN_PREFIX = "frozen_prefix"
OUTPUTS = (BOTTLENECK, FROZEN_PREFIX)


@dataclasses.dataclass
class ActivationSet:
    values: np.ndarray
    labels: np.ndarray
    patient_ids: np.ndarray
    key: str
    reused: bool


def resolve_checkpoint(checkpoint_path):
    """A directory means its latest checkpoint; returns a checkpoint prefix or None."""
    if not checkpoint_path:
        return None
    if os.path.isdir(checkpoint_path):
        latest = tf.train.latest_checkpoint(checkpoint_path)
        if latest is None:
            raise FileNotFoundError(f"{checkpoint_path}: directory holds no checkpoint")
        return latest
    if not tf.io.gfile.exists(checkpoint_path + ".index") and not tf.io.gfile.exists(checkpoint_path):
        raise FileNotFoundError(f"{checkpoint_path}: no such checkpoint")
    return checkpoint_path


def checkpoint_fingerprint(checkpoint_path, seed=0):
    """Content hash of a checkpoint's index; random weights are named by their seed."""
    prefix = resolve_checkpoint(checkpoint_path)
    if prefix is None:
        return f"random-init-seed-{seed}"
    index = prefix + ".index" if tf.io.gfile.exists(prefix + ".index") else prefix
    digest = hashlib.sha256()
    with open(index, "rb") as f:
        digest.update(f.read())
    return digest.hexdigest()


def cache_key(model, output, checkpoint_path, dataset_dir, split, image_size, seed=0):
    parts = {
        "model": model,
        "output": output,
        "checkpoint": checkpoint_fingerprint(checkpoint_path, seed),
        "shards": shards.split_fingerprint(dataset_dir, split),
        "image_size": int(image_size),
        "format": 1,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def output_tensor(spec, inputs, output):
    if output == BOTTLENECK:
        return spec.features(inputs, is_training=False)[0]
    if output == FROZEN_PREFIX:
        if spec.frozen_prefix is None:
            raise ValueError(f"{spec.name} has no frozen prefix to cache")
        return spec.frozen_prefix(inputs)
    raise ValueError(f"unknown output {output!r}; expected one of {OUTPUTS}")


def compute_activations(spec, images, output, checkpoint_path, batch_size=32, seed=0):
    """Runs the frozen network over uint8 images [N, S, S, 3] in inference mode."""
    prefix = resolve_checkpoint(checkpoint_path)
    with tf.Graph().as_default():
        tf1.set_random_seed(seed)
        image_input = tf1.placeholder(tf.uint8, [None] + list(images.shape[1:]), name="images")
        values = output_tensor(spec, spec.preprocess(tf.cast(image_input, tf.float32)), output)
        restore = build_restore_fn(prefix, exclude_scopes=spec.exclude_scopes) if prefix else None
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            if restore is None:
                logging.warning("%s: no checkpoint, %s from random weights (seed %d)",
                                spec.name, output, seed)
            else:
                restore(sess)
            progress = Progress(len(images), f"{spec.name} {output}", "images")
            chunks = []
            for start in range(0, len(images), batch_size):
                batch = images[start:start + batch_size]
                chunks.append(sess.run(values, {image_input: batch}))
                progress.update(len(batch))
    if not chunks:
        return np.zeros([0] + values.shape.as_list()[1:], np.float32)
    return np.concatenate(chunks).astype(np.float32)


def load_or_compute(spec, dataset_dir, split, output, checkpoint_path, image_size, cache_dir,
                    batch_size=32, seed=0):
    """Returns the split's activations, from ``cache_dir`` when its key matches."""
    key = cache_key(spec.name, output, checkpoint_path, dataset_dir, split, image_size, seed)
    path = os.path.join(cache_dir, f"{spec.name}-{output}-{split}-{key[:20]}.npz")
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as cached:
            logging.info("reusing cached %s %s for %s: %s", spec.name, output, split, path)
            return ActivationSet(cached["values"], cached["labels"], cached["patient_ids"], key, True)
    data = shards.load_split(dataset_dir, split)
    values = compute_activations(spec, resize_batch(data.images, image_size), output,
                                 checkpoint_path, batch_size, seed)
    patient_ids = np.asarray(data.patient_ids, dtype=str)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, values=values, labels=data.labels, patient_ids=patient_ids)
    logging.info("cached %s %s for %s (%d images): %s", spec.name, output, split, len(values), path)
    return ActivationSet(values, np.asarray(data.labels), patient_ids, key, False)
