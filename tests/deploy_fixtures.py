"""Shared, built-once artefacts for the deployment tests (export, predict, serve, browser).

A tiny synthetic dataset (shards written with thyroid.datasets.shards), an efficientnet_lite0
fine-tuned on it for a few steps from random weights at 64x64, and its float and int8 exports.
Each is built at most once per test session (cached here, since a fixture imported into
several test modules would otherwise run once per module).
"""

import os
import threading

import numpy as np
import pytest
from PIL import Image

IMAGE_SIZE = 64
TRAIN_STEPS = 30
_CACHE = {}
_LOCK = threading.Lock()


def synthetic_scan(label, rng, height=96, width=112):
    """A speckled grey field with a nodule: dark and round (benign) or bright, irregular and
    with calcifications (malignant)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 70 + 25 * rng.standard_normal((height, width))
    cy, cx = rng.uniform(0.35, 0.65) * height, rng.uniform(0.35, 0.65) * width
    radius = rng.uniform(0.15, 0.25) * min(height, width)
    angle = np.arctan2(yy - cy, xx - cx)
    if label == 1:
        wobble = 1.0 + 0.35 * np.sin(5 * angle + rng.uniform(0, 6.28))
        inside = np.hypot(yy - cy, xx - cx) < radius * wobble
        base[inside] = 170 + 35 * rng.standard_normal(int(inside.sum()))
        for _ in range(6):
            y, x = int(rng.uniform(cy - radius / 2, cy + radius / 2)), int(
                rng.uniform(cx - radius / 2, cx + radius / 2))
            base[max(0, y - 1):y + 2, max(0, x - 1):x + 2] = 250
    else:
        inside = np.hypot(yy - cy, xx - cx) < radius
        base[inside] = 25 + 10 * rng.standard_normal(int(inside.sum()))
    gray = np.clip(base, 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def full_frame(scan):
    """Puts a scan into a larger frame with black margins and a text band, like a screen grab."""
    h, w = scan.shape[:2]
    frame = np.zeros((h + 40, w + 40, 3), np.uint8)
    frame[8:8 + h, 20:20 + w] = scan
    frame[h + 20:h + 28, 30:60] = 255  # burned-in "text"
    return frame


def write_dataset(dataset_dir, counts=None, seed=0):
    """Shards + labels.txt + manifest.json, as thyroid.build_tfrecords lays them out."""
    from thyroid import LABEL_NAMES
    from thyroid.datasets import shards
    from thyroid.io_utils import atomic_write_json
    counts = counts or {"train": 48, "validation": 12, "test": 40}
    rng = np.random.RandomState(seed)
    os.makedirs(dataset_dir, exist_ok=True)
    summary, listing = {}, {}
    for split, count in counts.items():
        labels = [i % 2 for i in range(count)]
        records = []
        for index, label in enumerate(labels):
            rgb = synthetic_scan(label, rng)
            records.append(shards.make_tf_example(
                shards.encode_jpeg(rgb), rgb.shape[0], rgb.shape[1], label,
                f"synth:{split}-{index}", "synth", "", False).SerializeToString())
        listing[split] = shards.describe_shards(shards.write_split(records, dataset_dir, split, 1))
        by_name = {name: labels.count(i) for i, name in enumerate(LABEL_NAMES)}
        summary[split] = {"patients": count, "images": count, "original": by_name,
                          "total": by_name}
    shards.write_labels_file(dataset_dir)
    atomic_write_json(os.path.join(dataset_dir, shards.MANIFEST_NAME),
                      {"protocol": "patient", "crop": "scan", "seed": seed, "splits": summary,
                       "num_shards": 1, "shards": listing})
    return dataset_dir


def _build(base):
    from thyroid.io_utils import atomic_write_json
    from thyroid.training.run import train
    from thyroid.training.run_config import RunConfig
    dataset_dir = write_dataset(os.path.join(base, "data"))
    train_dir = os.path.join(base, "train")
    train(RunConfig(model="efficientnet_lite0", mode="finetune", dataset_dir=dataset_dir,
                    checkpoint_dir=os.path.join(base, "no_checkpoints"),
                    allow_random_init=True, image_size=IMAGE_SIZE, batch_size=16,
                    learning_rate=3e-3, max_number_of_steps=TRAIN_STEPS,
                    log_every_n_steps=1000, save_interval_steps=1000,
                    eval_every_n_steps=1000), train_dir)
    from thyroid.datasets.shards import split_fingerprint
    atomic_write_json(os.path.join(train_dir, "metrics_test.json"),
                      {"accuracy": 0.5, "note": "written by the test fixture",
                       "dataset_dir": os.path.abspath(dataset_dir),
                       "dataset_fingerprint": split_fingerprint(dataset_dir, "test")})
    return {"base": base, "dataset_dir": dataset_dir, "train_dir": train_dir}


def _get(key, factory):
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = factory()
        return _CACHE[key]


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """{'dataset_dir', 'train_dir'} of a tiny fine-tuned efficientnet_lite0."""
    return _get("trained", lambda: _build(str(tmp_path_factory.mktemp("deploy"))))


@pytest.fixture(scope="session")
def exported(trained):
    """{'float': ExportPaths, 'int8': ExportPaths} of the trained model."""
    from thyroid.deploy.export import export_model

    def build():
        base = trained["base"]
        return {"float": export_model(trained["train_dir"], os.path.join(base, "export_float")),
                "int8": export_model(trained["train_dir"], os.path.join(base, "export_int8"),
                                     quantize="int8")}
    return _get("exported", build)


def load_split_data(dataset_dir, split="test"):
    from thyroid.datasets import shards
    return shards.load_split(dataset_dir, split)


def save_png(path, rgb):
    Image.fromarray(rgb).save(path)
    return str(path)


SEGMENT_STEPS = 80


def _segmented(trained, base):
    """A segmentation network trained a few steps on a synthetic DDTI, exported beside a
    float export of the tiny classifier."""
    from thyroid.checkpoints.convert import convert
    from thyroid.datasets import outlines, synthetic
    from thyroid.deploy.export import export_model
    from thyroid.deploy.segment import export_segmentation
    from thyroid.nets import get_segmentation_network
    from thyroid.training import localise, segmentation
    convert("efficientnet_lite0", os.path.join(base, "imagenet"))
    checkpoint = os.path.join(base, "imagenet", "efficientnet_lite0", "model.ckpt")
    synthetic.generate(os.path.join(base, "ddti_like"), num_cases=40, seed=1, width=280,
                       height=180, num_local_cases=0)
    found = outlines.build_outline_set({"ddti": os.path.join(base, "ddti_like", "ddti")},
                                       os.path.join(base, "outlines"))
    spec = get_segmentation_network("efficientnet_lite0_unet")
    config = segmentation.SegmentationConfig(checkpoint_path=checkpoint, image_size=IMAGE_SIZE,
                                             steps=SEGMENT_STEPS)
    maps = segmentation.cached_encoder_maps(spec, found, IMAGE_SIZE, checkpoint,
                                            os.path.join(base, "maps"))
    outlined = [i for i, r in enumerate(found.records) if r.has_outline]
    weights, _ = localise.fit_segmentation(spec, maps, found, outlined, config)
    segment_dir = os.path.join(base, "segment")
    segmentation.save_model(segment_dir, config, weights, "scan", {"images": len(outlined)})
    export_dir = os.path.join(base, "export_segmented")
    paths = export_model(trained["train_dir"], export_dir)
    export_segmentation(segment_dir, export_dir)
    frames = sorted(os.path.join(base, "ddti_like", "ddti", name)
                    for name in os.listdir(os.path.join(base, "ddti_like", "ddti"))
                    if name.endswith(".jpg"))
    return {"segment_dir": segment_dir, "export_dir": export_dir, "paths": paths,
            "frames": frames, "maps": maps, "outlines": found, "weights": weights,
            "config": config, "checkpoint": checkpoint}


@pytest.fixture(scope="session")
def segmented(trained):
    """{'segment_dir', 'export_dir' (classifier + segment.tflite), 'frames' (whole synthetic
    DDTI frames), ...} (see ``_segmented``)."""
    return _get("segmented", lambda: _segmented(trained, trained["base"]))
