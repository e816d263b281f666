"""Activations of a frozen network, computed once per image and cached on disk. The network
and its outputs are ``frozen_network``'s; here the engine that runs its pass (the TensorFlow
graph or, converted, the TFLite interpreter), the converted models and the cache.

Three frozen outputs are cached: the bottleneck (VGG ``pool5``, Inception ``PreLogits``,
EfficientNet pooled head), for the SVM and FC-head rows; VGG-16's ``conv5_2`` output, so
that fine-tuning above it never recomputes the frozen layers; and pooled layers (mean and
SD over space of several end points, averaged with the left-right mirror) for the
logistic-regression rows.

A cache entry is keyed by everything that determines its values: model, which output,
checkpoint contents, shard contents, image size, for random weights the seed, which engine
ran the pass (the TensorFlow graph or the TFLite interpreter), and for pooled layers the
layer list and the pooling. Any change gives a new key, so a stale entry is never read.

Memory stays bounded whatever the dataset's size: a pass streams the shards' records one at
a time (``shards.iter_split``), decodes and resizes them batch by batch, and writes each
batch's activations straight into a ``.npy`` file (``row_files``); readers get a
``row_files.RowFile`` that reads rows when indexed. The labels and patient ids go into a
small JSON file beside it, written first: the ``.npy`` file, renamed into place last, marks
a complete entry.
"""

import contextlib
import dataclasses
import hashlib
import json
import os

import numpy as np
from absl import logging

from thyroid.compat import tf
from thyroid.datasets import shards
from thyroid.io_utils import atomic_write_bytes, atomic_write_json, file_sha256, read_json
from thyroid.preprocessing.resize import resize_square
from thyroid.prefetch import Prefetch
from thyroid.progress import Progress
from thyroid.training import frozen_tflite
from thyroid.training.frozen_network import (BOTTLENECK, FROZEN_PREFIX, LAYER_POOLING,
                                             POOLED_LAYERS, FrozenNetwork, output_name,
                                             outputs_computed_together, resolve_checkpoint,
                                             resolve_layers)
from thyroid.training.row_files import RowFile, RowFileWriter

# Pooled layers are computed for original images only; the rows of augmented copies hold NaN.
# The logistic-regression mode, their one user, leaves the copies out (the mirror average is
# its augmentation), and NaN makes any other use fail loudly rather than read zeros.
# Part of the cache key.
POOLED_RECORDS = "originals_only"
# Whether anything reads an output's rows of augmented copies, so whether its pass computes
# them. The modes fed the bottleneck (bottleneck_fc, bottleneck_svm) and the frozen prefix
# (finetune) train on a training part's augmented copies; bottleneck_logreg, the one mode fed
# pooled layers, leaves them out (``run.fit_logreg_run``). Validation and test parts never
# hold copies under the patient protocol, and hold them as test images under the image one.
READS_AUGMENTED = {BOTTLENECK: True, FROZEN_PREFIX: True, POOLED_LAYERS: False}
# Decoded, resized images held ready ahead of the frozen pass (~150 MB at 224 px).
PREFETCH_IMAGES = 1024
# 2: one .npy of values and a .json of labels and patient ids per entry (1 was one .npz).
CACHE_FORMAT = 2
TF_ENGINE, TFLITE_ENGINE = "tf", "tflite"
# Networks whose frozen pass the TFLite interpreter runs faster than the TensorFlow graph on
# a CPU (bench/frozen_pass_tflite.py); the others, and every network on a GPU, use the graph.
TFLITE_MODELS = ("efficientnet_lite0",)


@dataclasses.dataclass
class ActivationSet:
    values: RowFile  # read from disk when indexed; np.asarray reads every row
    labels: np.ndarray
    patient_ids: np.ndarray
    key: str
    reused: bool


def checkpoint_fingerprint(checkpoint_path, seed=0):
    """Content hash of a checkpoint's index (or of a V1 single-file checkpoint); random
    weights are named by their seed."""
    prefix = resolve_checkpoint(checkpoint_path)
    if prefix is None:
        return f"random-init-seed-{seed}"
    return file_sha256(prefix + ".index" if os.path.exists(prefix + ".index") else prefix)


def frozen_engine(spec):
    """What runs ``spec``'s frozen passes: the TFLite interpreter for ``TFLITE_MODELS`` on a
    CPU, else the TensorFlow graph."""
    if spec.name in TFLITE_MODELS and not tf.config.list_physical_devices("GPU"):
        return TFLITE_ENGINE
    return TF_ENGINE


def cache_key(model, output, checkpoint_path, dataset_dir, split, image_size, seed=0, layers=(),
              engine=TF_ENGINE):
    parts = {
        "model": model,
        "output": output,
        "checkpoint": checkpoint_fingerprint(checkpoint_path, seed),
        "shards": shards.split_fingerprint(dataset_dir, split),
        "image_size": int(image_size),
        "format": CACHE_FORMAT,
        "engine": engine,
    }
    if output == POOLED_LAYERS:
        parts.update(layers=list(layers), pooling=LAYER_POOLING, records=POOLED_RECORDS)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# Batch of the frozen forward passes: large enough to keep both cores busy, small enough
# that VGG-16's 224x224x64 activations stay well under a gigabyte.
FEATURE_BATCH_SIZE = 16


def converted_model_path(model_dir, spec, image_size, outputs, checkpoint_path, seed, layers):
    """Where a converted frozen network is kept, named by everything its weights and graph
    depend on (and the TensorFlow version, whose converter made it)."""
    parts = {"model": spec.name, "outputs": list(outputs), "image_size": int(image_size),
             "checkpoint": checkpoint_fingerprint(checkpoint_path, seed), "layers": list(layers),
             "pooling": LAYER_POOLING, "tensorflow": tf.__version__, "format": CACHE_FORMAT}
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return os.path.join(model_dir, f"{spec.name}-{'+'.join(outputs)}-{key[:20]}.tflite")


def open_network(spec, image_size, outputs, checkpoint_path, seed=0, layers=(),
                 batch_size=FEATURE_BATCH_SIZE, engine=TF_ENGINE, model_dir=None):
    """A network with ``run_batch`` and ``output_shapes``: the TensorFlow graph, or for the
    TFLite engine that graph converted (weights restored first) and run by the interpreter.
    A converted model is kept in ``model_dir`` (when given) and read from there next time, so
    that a later pass (another dataset scored by the same rows) builds and converts nothing."""
    if engine not in (TF_ENGINE, TFLITE_ENGINE):
        raise ValueError(f"unknown frozen-pass engine {engine!r}")
    names = {output: output_name(output) for output in outputs}
    path = None
    if engine == TFLITE_ENGINE and model_dir:
        path = converted_model_path(model_dir, spec, image_size, outputs, checkpoint_path, seed,
                                    layers)
    if path and os.path.exists(path):
        with open(path, "rb") as f:
            return frozen_tflite.TFLiteNetwork(f.read(), names, min(batch_size,
                                                                    frozen_tflite.INVOKE_BATCH))
    network = FrozenNetwork(spec, image_size, outputs, checkpoint_path, seed, layers)
    if engine == TF_ENGINE:
        return network
    try:
        model = frozen_tflite.convert(network.session, network.images,
                                      [network.tensors[output] for output in network.outputs])
    finally:
        network.close()
    if path:
        atomic_write_bytes(path, model)
    return frozen_tflite.TFLiteNetwork(model, names, min(batch_size, frozen_tflite.INVOKE_BATCH))


def compute_activations(spec, images, output, checkpoint_path, batch_size=FEATURE_BATCH_SIZE, seed=0,
                        layers=(), engine=TF_ENGINE):
    """Runs the frozen network over uint8 images [N, S, S, 3] in inference mode (in memory)."""
    network = open_network(spec, images.shape[1], (output,), checkpoint_path, seed, layers,
                           batch_size, engine)
    try:
        parts = [network.run_batch(images[i:i + batch_size])[output]
                 for i in range(0, len(images), batch_size)]
    finally:
        network.close()
    if not parts:
        return np.zeros((0,) + network.output_shapes[output], np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def stream_batches(dataset_dir, wanted, image_size, batch_size):
    """Yields (rows, images) over the ``wanted`` records ({split: record indices}), splits in
    order: images uint8 [n <= batch_size, S, S, 3] and rows [(split, record index)] of each.
    Records are read one at a time and each is resized as soon as it is decoded, so no more
    than one encoded record and one batch of resized images are held, whatever the split's size."""
    rows, images = [], []
    for split, indices in wanted.items():
        chosen = np.zeros(max(indices, default=-1) + 1, bool)
        chosen[np.asarray(indices, np.int64)] = True
        if not chosen.any():
            continue
        for index, record in enumerate(shards.iter_split(dataset_dir, split)):
            if index < len(chosen) and chosen[index]:
                rows.append((split, index))
                images.append(resize_square(shards.decode_image(record.encoded), image_size))
            if len(images) == batch_size:
                yield rows, np.stack(images)
                rows, images = [], []
    if images:
        yield rows, np.stack(images)


def prefetched_batches(dataset_dir, wanted, image_size, batch_size):
    """``stream_batches`` decoded in a background thread up to ``PREFETCH_IMAGES`` ahead."""
    return Prefetch(stream_batches(dataset_dir, wanted, image_size, batch_size),
                    max(2, PREFETCH_IMAGES // batch_size))


def cache_path(cache_dir, spec, output, split, key):
    return os.path.join(cache_dir, f"{spec.name}-{output}-{split}-{key[:20]}.npy")


def labels_path(values_path):
    return values_path[:-len(".npy")] + ".labels.json"


def read_activations(path, key, reused):
    described = read_json(labels_path(path))
    return ActivationSet(RowFile(path), np.asarray(described["labels"], np.int64),
                         np.asarray(described["patient_ids"], dtype=str), key, reused)


def load_or_compute(spec, dataset_dir, split, output, checkpoint_path, image_size, cache_dir,
                    batch_size=FEATURE_BATCH_SIZE, seed=0, splits=shards.SPLITS, layers=(),
                    engine=None):
    """Returns ``split``'s activations, from ``cache_dir`` when its key matches.

    A miss computes every split in ``splits`` (and, for VGG-16, both cached outputs) in one
    pass, since training and evaluation will ask for them next. ``layers``: the end
    points of ``POOLED_LAYERS`` (default: the network's). ``engine``: ``TF_ENGINE`` or
    ``TFLITE_ENGINE`` (default: ``frozen_engine(spec)``).
    """
    engine = engine or frozen_engine(spec)
    outputs = outputs_computed_together(spec, output)
    layers = resolve_layers(spec, layers) if output == POOLED_LAYERS else ()
    wanted = {(s, o): cache_key(spec.name, o, checkpoint_path, dataset_dir, s, image_size, seed,
                                layers, engine)
              for s in dict.fromkeys((split,) + tuple(splits)) for o in outputs}
    paths = {pair: cache_path(cache_dir, spec, pair[1], pair[0], key) for pair, key in wanted.items()}
    reused = os.path.exists(paths[(split, output)])
    if reused:
        logging.info("reusing cached %s %s for %s: %s", spec.name, output, split,
                     paths[(split, output)])
    else:
        missing = {pair: path for pair, path in paths.items() if not os.path.exists(path)}
        compute_missing(spec, dataset_dir, image_size, outputs, checkpoint_path, batch_size, seed,
                        missing, layers, engine)
    return read_activations(paths[(split, output)], wanted[(split, output)], reused)


def computed_records(augmented, outputs):
    """Indices of a split's records the frozen pass computes: every record, or the original
    images alone when no output of the pass is read for augmented copies (``READS_AUGMENTED``)."""
    augmented = np.asarray(augmented, bool)
    if any(READS_AUGMENTED[output] for output in outputs):
        return np.arange(len(augmented))
    return np.flatnonzero(~augmented)


def compute_missing(spec, dataset_dir, image_size, outputs, checkpoint_path, batch_size, seed,
                    missing_paths, layers=(), engine=TF_ENGINE):
    """Computes and caches the {(split, output): path} entries in one pass over the splits.

    The splits' records form one stream, so only the very last batch is short (and padded).
    Decoding and resizing start before the network is built: building is single-threaded
    Python, so the other core prepares the first images meanwhile, and later the next
    batches while the network runs the current one. Rows of records not computed hold NaN."""
    splits = list(dict.fromkeys(s for s, _ in missing_paths))
    metadata = {split: shards.load_split_metadata(dataset_dir, split) for split in splits}
    wanted = {split: computed_records(metadata[split].augmented, outputs) for split in splits}
    total = sum(len(records) for records in wanted.values())
    with prefetched_batches(dataset_dir, wanted, image_size, batch_size) as batches:
        network = open_network(spec, image_size, outputs, checkpoint_path, seed, layers,
                               batch_size, engine,
                               model_dir=os.path.dirname(next(iter(missing_paths.values()))))
        try:
            with contextlib.ExitStack() as stack:
                writers = {pair: stack.enter_context(RowFileWriter(
                    path, (len(metadata[pair[0]]),) + network.output_shapes[pair[1]],
                    np.float32, fill=np.nan)) for pair, path in missing_paths.items()}
                progress = Progress(total, f"{spec.name} {'/'.join(outputs)} of "
                                    + ", ".join(splits), "images")
                write_activations(network, batches, writers, progress)
                for (split, _), path in missing_paths.items():  # before the .npy files appear
                    atomic_write_json(labels_path(path), {
                        "labels": metadata[split].labels.tolist(),
                        "patient_ids": metadata[split].patient_ids.tolist()})
        finally:
            network.close()
    for (split, output), path in missing_paths.items():
        logging.info("cached %d %s activations %s: %s", len(metadata[split]), output,
                     network.output_shapes[output], path)


def write_activations(network, batches, writers, progress):
    """Runs each batch and writes its rows into the {(split, output): RowFileWriter}."""
    for rows, images in batches:
        values = network.run_batch(images)
        for (split, output), writer in writers.items():
            for position, (row_split, index) in enumerate(rows):
                if row_split == split:
                    writer.write(index, values[output][position:position + 1])
        progress.update(len(rows))


def load_or_resize(dataset_dir, split, image_size, cache_dir, batch_size=FEATURE_BATCH_SIZE):
    """The split's images resized to ``image_size`` (uint8 [N, S, S, 3]) as a ``RowFile``,
    from ``cache_dir`` when present: what runs fed images (scratch, fine-tuning without the
    prefix cache) read batch by batch, instead of holding a split's images in memory."""
    key = hashlib.sha256(json.dumps({
        "output": "resized_images", "shards": shards.split_fingerprint(dataset_dir, split),
        "image_size": int(image_size), "format": CACHE_FORMAT}, sort_keys=True).encode()).hexdigest()
    path = os.path.join(cache_dir, f"images-{split}-{int(image_size)}px-{key[:20]}.npy")
    if not os.path.exists(path):
        count = len(shards.load_split_metadata(dataset_dir, split))
        progress = Progress(count, f"resize {split} to {image_size} px", "images")
        with RowFileWriter(path, (count, image_size, image_size, 3), np.uint8) as writer, \
                prefetched_batches(dataset_dir, {split: range(count)}, image_size,
                                   batch_size) as batches:
            for rows, images in batches:
                writer.write(rows[0][1], images)
                progress.update(len(rows))
        logging.info("cached %d resized %s images: %s", count, split, path)
    return RowFile(path)


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
