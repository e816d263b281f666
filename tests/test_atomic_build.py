"""Rebuilds are all-or-nothing under SIGKILL; loading refuses manifests and shards that disagree."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from thyroid.datasets import build as build_lib
from thyroid.datasets import shards, swap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _image_root(root, count, seed):
    rng = np.random.RandomState(seed)
    for i in range(count):
        folder = root / ("benign", "malignant")[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.randint(0, 255, (40, 48, 3)).astype(np.uint8)).save(folder / f"{i}.png")
    return root


def _build(images, output, **kwargs):
    return build_lib.build(build_lib.BuildConfig(
        output_dir=str(output), sources={"folders": str(images)}, crop="none",
        augment_copies=0, num_shards=2, **kwargs))


def _loadable(output):
    return {split: len(shards.load_split(str(output), split)) for split in shards.SPLITS}


def _start_stalled_build(images, output, stage):
    env = dict(os.environ, **{swap.STALL_ENV: stage})
    process = subprocess.Popen(
        [sys.executable, "-m", "thyroid.build_tfrecords", f"--image_dir={images}",
         f"--output_dir={output}", "--overwrite", "--crop=none", "--augment_copies=0",
         "--num_shards=3"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    deadline = time.time() + 240
    line = ""
    while time.time() < deadline and "stalled at" not in line:
        line = process.stdout.readline()
        assert line or process.poll() is None, process.stderr.read()[-2000:]
    assert "stalled at " + stage in line
    return process


@pytest.fixture
def old_dataset(tmp_path):
    old_images = _image_root(tmp_path / "old_images", 12, 0)
    output = tmp_path / "data"
    manifest = _build(old_images, output)
    new_images = _image_root(tmp_path / "new_images", 20, 1)
    return output, manifest, new_images


def test_kill_while_writing_keeps_old_dataset(old_dataset):
    output, manifest, new_images = old_dataset
    before = _loadable(output)
    process = _start_stalled_build(new_images, output, "shards")
    leftovers = [p for p in os.listdir(output.parent) if p.startswith("data.tmp-")]
    assert leftovers == [f"data.tmp-{process.pid}"]
    assert any(n.endswith(".tfrecord") for n in os.listdir(output.parent / leftovers[0]))
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _loadable(output) == before
    assert shards.read_manifest(str(output)) == json.loads(json.dumps(manifest))
    # the next build removes the dead build's folder
    _build(new_images, output, overwrite=True)
    assert [p for p in os.listdir(output.parent) if ".tmp-" in p or ".old-" in p] == []
    assert sum(_loadable(output).values()) == 20


def test_kill_between_renames_recovers_new_dataset(old_dataset):
    output, _, new_images = old_dataset
    process = _start_stalled_build(new_images, output, "swap")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not output.exists()  # the two-rename window
    swap.remove_stale(str(output))
    assert sum(_loadable(output).values()) == 20
    assert shards.read_manifest(str(output))["num_shards"] == 3
    assert [p for p in os.listdir(output.parent) if ".tmp-" in p or ".old-" in p] == []


def test_loading_refuses_disagreeing_manifest_and_shards(old_dataset, tmp_path):
    output, _, _ = old_dataset
    broken = tmp_path / "broken"
    shutil.copytree(output, broken)
    os.remove(broken / "test-00001-of-00002.tfrecord")
    with pytest.raises(shards.DatasetError, match="test shard.*missing: test-00001-of-00002"):
        shards.load_split(str(broken), "test")
    with pytest.raises(shards.DatasetError):
        shards.split_fingerprint(str(broken), "test")
    shutil.copy(broken / "train-00000-of-00002.tfrecord", broken / "train-00000-of-00003.tfrecord")
    with pytest.raises(shards.DatasetError, match="not in the manifest: train-00000-of-00003"):
        shards.load_split(str(broken), "train")
    with open(broken / "validation-00000-of-00002.tfrecord", "ab") as f:
        f.write(b"x")
    with pytest.raises(shards.DatasetError, match="validation.*of another size"):
        shards.load_split(str(broken), "validation")
    os.remove(broken / "manifest.json")
    with pytest.raises(shards.DatasetError, match="no manifest.json"):
        shards.load_split(str(broken), "train")


def test_overwrite_refuses_folder_with_other_files(old_dataset, tmp_path):
    output, _, new_images = old_dataset
    (output / "notes.md").write_text("mine")
    with pytest.raises(build_lib.BuildError, match="notes.md"):
        _build(new_images, output, overwrite=True)
    assert (output / "notes.md").exists() and sum(_loadable(output).values()) == 12
