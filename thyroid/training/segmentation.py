"""Training and using a segmentation network (``nets.segmentation``) on an outline set
(``datasets.outlines``).

The encoder is frozen at its ImageNet weights, so its activations at the decoder's scales are
computed once per image and cached (``cached_encoder_maps``); only the decoder trains, on those
activations (``train_decoder``), against each crop's mask resized to the input size. The loss
is pixel-wise cross-entropy plus the soft Dice loss: the nodule is a small part of the field,
and cross-entropy alone would settle for predicting background.

A trained model is a folder (``save_model`` / ``load_model``): ``segmentation.json`` (the
network, input size, crop, training settings, the encoder checkpoint and its fingerprint, what
it trained on) and ``decoder.npz`` (the decoder's weights). The encoder's weights stay in the
ImageNet checkpoint, checked against the fingerprint whenever the model is rebuilt.
"""

import dataclasses
import hashlib
import json
import os

import numpy as np
from absl import logging

from thyroid.compat import tf, tf1
from thyroid.io_utils import atomic_path, atomic_write_json, file_sha256, read_json
from thyroid.nets import get_network, get_segmentation_network
from thyroid.nets.segmentation import upsample_logits
from thyroid.preprocessing.resize import resize_batch
from thyroid.training.features import FEATURE_BATCH_SIZE, checkpoint_fingerprint
from thyroid.training.frozen_network import FrozenNetwork

CONFIG_FILE = "segmentation.json"
WEIGHTS_FILE = "decoder.npz"
FORMAT = 1
DEFAULT_NETWORK = "efficientnet_lite0_unet"
# A pixel is nodule when its probability reaches this (fixed in advance, not tuned).
THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True)
class SegmentationConfig:
    """How a decoder trains: network, input size, steps, batch, learning rate, seed, and the
    encoder's checkpoint (required: a random encoder would be cached as if it were ImageNet's)."""
    checkpoint_path: str
    network: str = DEFAULT_NETWORK
    image_size: int = 224
    steps: int = 400
    batch_size: int = 16
    learning_rate: float = 1e-3
    seed: int = 0

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def encoder_maps(spec, images, checkpoint_path, batch_size=FEATURE_BATCH_SIZE):
    """The frozen encoder's skip activations of uint8 images [N, S, S, 3] -> list of float16
    arrays [N, h, w, c], finest first."""
    encoder = get_network(spec.encoder)
    network = FrozenNetwork(encoder, images.shape[1], spec.skip_layers, checkpoint_path,
                            build=lambda inputs: {name: tensor for name, tensor in
                                                  spec.encoder_end_points(inputs).items()
                                                  if name in spec.skip_layers})
    try:
        batches = (images[i:i + batch_size] for i in range(0, len(images), batch_size))
        values = network.run(batches, len(images), "segmentation encoder")
    finally:
        network.close()
    return [values[name].astype(np.float16) for name in spec.skip_layers]


def _maps_key(spec, outline_set, image_size, checkpoint_path):
    parts = {"network": spec.name, "layers": list(spec.skip_layers), "size": int(image_size),
             "checkpoint": checkpoint_fingerprint(checkpoint_path),
             "images": file_sha256(os.path.join(outline_set.directory, "outlines.npz")),
             "format": 1}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def cached_encoder_maps(spec, outline_set, image_size, checkpoint_path, cache_dir):
    """``encoder_maps`` of every image of the outline set (record order), from ``cache_dir``
    when its key (network, layers, size, checkpoint and image contents) matches."""
    key = _maps_key(spec, outline_set, image_size, checkpoint_path)
    path = os.path.join(cache_dir, f"{spec.name}-maps-{image_size}-{key[:20]}.npz")
    if os.path.exists(path):
        logging.info("reusing cached segmentation encoder maps: %s", path)
        with np.load(path) as cached:
            return [cached[f"map_{i}"] for i in range(len(spec.skip_layers))]
    images = resize_batch(outline_set.images(range(len(outline_set))), image_size)
    maps = encoder_maps(spec, images, checkpoint_path)
    os.makedirs(cache_dir, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{f"map_{i}": values for i, values in enumerate(maps)})
    logging.info("cached segmentation encoder maps %s: %s", [m.shape for m in maps], path)
    return maps


def target_masks(outline_set, indices, image_size):
    """float32 [n, S, S]: each crop's mask resized (bilinear, so edges are fractions)."""
    from thyroid.preprocessing.outline import resize_probabilities
    return np.stack([resize_probabilities(outline_set.mask(i).astype(np.float32), image_size,
                                          image_size) for i in indices]) \
        if len(indices) else np.zeros((0, image_size, image_size), np.float32)


def _loss(logits, targets):
    """Mean pixel cross-entropy + mean soft Dice loss over the batch's images."""
    cross_entropy = tf.reduce_mean(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits))
    probabilities = tf.sigmoid(logits)
    overlap = tf.reduce_sum(probabilities * targets, axis=[1, 2])
    total = tf.reduce_sum(probabilities + targets, axis=[1, 2])
    soft_dice = (2.0 * overlap + 1.0) / (total + 1.0)
    return cross_entropy + tf.reduce_mean(1.0 - soft_dice)


def _batches(count, batch_size, steps, seed):
    """Index batches: a fresh permutation each epoch, seeded (same seed, same batches)."""
    rng = np.random.RandomState(seed)
    order = []
    for _ in range(steps):
        while len(order) < batch_size:
            order += rng.permutation(count).tolist()
        yield np.asarray(order[:batch_size])
        order = order[batch_size:]


def _map_placeholders(maps):
    return [tf1.placeholder(tf.float32, [None] + list(m.shape[1:]), name=f"map_{i}")
            for i, m in enumerate(maps)]


def train_decoder(spec, maps, targets, config):
    """Trains the decoder on encoder maps (list of [n, h, w, c], finest first) against
    targets [n, S, S]; -> ({variable name: array}, [loss every 25 steps])."""
    if not len(targets):
        raise ValueError("no outlined images to train the segmentation on (DDTI polygons, or "
                         "<name>_mask.png beside the images)")
    with tf.Graph().as_default():
        tf1.set_random_seed(config.seed)
        inputs = _map_placeholders(maps)
        wanted = tf1.placeholder(tf.float32, [None, config.image_size, config.image_size])
        logits = upsample_logits(spec.decoder(inputs, is_training=True), config.image_size)
        loss = _loss(logits, wanted) + tf1.losses.get_regularization_loss()
        variables = tf1.trainable_variables(spec.scope)
        step = tf1.train.AdamOptimizer(config.learning_rate).minimize(loss, var_list=variables)
        losses = []
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            for number, batch in enumerate(_batches(len(targets), config.batch_size,
                                                    config.steps, config.seed)):
                feed = {p: m[batch].astype(np.float32) for p, m in zip(inputs, maps)}
                feed[wanted] = targets[batch]
                value, _ = session.run([loss, step], feed)
                if number % 25 == 0 or number == config.steps - 1:
                    losses.append(float(value))
            weights = {v.op.name: value for v, value in zip(variables, session.run(variables))}
    logging.info("segmentation decoder: %d steps on %d images, loss %.3f -> %.3f",
                 config.steps, len(targets), losses[0], losses[-1])
    return weights, losses


def constant_getter(weights):
    """A custom getter giving the decoder's trained weights as constants (inference graphs,
    the TFLite export)."""
    def getter(getter_fn, name, *args, **kwargs):
        if name in weights:
            return tf.constant(weights[name], dtype=tf.float32)
        return getter_fn(name, *args, **kwargs)
    return getter


def decoder_probabilities(spec, weights, maps, image_size, batch_size=64):
    """P(nodule) per pixel [N, S, S] from cached encoder maps and trained decoder weights."""
    count = len(maps[0])
    if not count:
        return np.zeros((0, image_size, image_size), np.float32)
    with tf.Graph().as_default():
        inputs = _map_placeholders(maps)
        with tf1.variable_scope("", custom_getter=constant_getter(weights)):
            logits = spec.decoder(inputs)
        probabilities = tf.sigmoid(upsample_logits(logits, image_size))
        with tf1.Session() as session:
            out = [session.run(probabilities, {p: m[i:i + batch_size].astype(np.float32)
                                               for p, m in zip(inputs, maps)})
                   for i in range(0, count, batch_size)]
    return np.concatenate(out).astype(np.float32)


def save_model(directory, config, weights, crop, trained_on):
    """Writes the model folder: decoder.npz, then segmentation.json (last: a complete model)."""
    os.makedirs(directory, exist_ok=True)
    with atomic_path(os.path.join(directory, WEIGHTS_FILE)) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{name.replace("/", "|"): value for name, value in weights.items()})
    atomic_write_json(os.path.join(directory, CONFIG_FILE), {
        "format": FORMAT, "config": dataclasses.asdict(config), "crop": crop,
        "encoder_fingerprint": checkpoint_fingerprint(config.checkpoint_path),
        "threshold": THRESHOLD, "trained_on": trained_on})


@dataclasses.dataclass
class SegmentationModel:
    """A trained model folder read back."""
    directory: str
    config: SegmentationConfig
    weights: dict
    crop: str
    info: dict

    @property
    def spec(self):
        return get_segmentation_network(self.config.network)


def is_model_dir(directory):
    return os.path.isfile(os.path.join(directory, CONFIG_FILE))


def load_model(directory, check_encoder=True):
    """The model in ``directory``; ValueError when it is incomplete, of another format, or its
    encoder checkpoint is missing or has changed since training."""
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"{directory}: no {CONFIG_FILE}; not a segmentation model")
    saved = read_json(path)
    if saved.get("format") != FORMAT:
        raise ValueError(f"{path}: a segmentation model of another format; train it again")
    config = SegmentationConfig(**saved["config"])
    if check_encoder:
        _check_encoder(path, config, saved["encoder_fingerprint"])
    with np.load(os.path.join(directory, WEIGHTS_FILE)) as arrays:
        weights = {name.replace("|", "/"): arrays[name] for name in arrays.files}
    return SegmentationModel(os.path.abspath(directory), config, weights, saved["crop"], saved)


def _check_encoder(path, config, fingerprint):
    prefix = config.checkpoint_path
    if not prefix or not (os.path.exists(prefix + ".index") or os.path.isfile(prefix)):
        raise ValueError(f"{path}: the encoder checkpoint {prefix} is not there "
                         "(python -m thyroid.checkpoints convert --models=efficientnet_lite0)")
    if checkpoint_fingerprint(prefix) != fingerprint:
        raise ValueError(f"{path}: the encoder checkpoint {prefix} has changed since training")
