"""Folder and run names holding glob characters ([, *, ?) are names, never patterns.

Each test puts its work under ``out[1]/r*?`` and a decoy under ``out1/rab`` (the study's is
``conftest.awkward_study``): read as a glob pattern, the first path matches the second, so
code that globs would find (or delete) the decoy's files and miss its own.
"""

import os
import shutil

from study_runs import read_rows, snapshot
from thyroid.datasets import shards
from thyroid.training.run import train
from thyroid.training.run_config import RunConfig, check_dataset_dir
from thyroid.training.scoring import evaluate_run

RUN = os.path.join("out[1]", "r*?")
DECOY = os.path.join("out1", "rab")


def plant_decoy_checkpoints(train_dir, steps):
    """Files named as ``train_dir``'s checkpoints would be, at each of ``steps``."""
    os.makedirs(train_dir)
    for step in steps:
        for suffix in ("index", "meta", "data-00000-of-00001"):
            with open(os.path.join(train_dir, f"model.ckpt-{step}.{suffix}"), "wb") as f:
                f.write(b"not ours")


def test_shards_and_checkpoints_under_pattern_names_are_found_and_kept(patient_build, tmp_path):
    built, manifest = patient_build
    dataset_dir, decoy_dataset = tmp_path / RUN / "shards", tmp_path / DECOY / "shards"
    shutil.copytree(built, dataset_dir)
    shutil.copytree(built, decoy_dataset)
    os.remove(decoy_dataset / "train-00000-of-00002.tfrecord")  # a glob would pick this folder
    train_dir, decoy_train = tmp_path / RUN / "train", tmp_path / DECOY / "train"
    plant_decoy_checkpoints(decoy_train, range(1, 7))
    decoy_before = snapshot(tmp_path / "out1")

    assert [os.path.basename(p) for p in shards.shard_paths(str(dataset_dir), "train")] == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    check_dataset_dir(str(dataset_dir))
    assert len(shards.load_split_metadata(str(dataset_dir), "test").labels) == \
        sum(manifest["splits"]["test"]["total"].values())

    for steps in (3, 6):  # a restart resumes from the run's own checkpoint and prunes its own
        train(RunConfig(model="small_cnn", mode="scratch", dataset_dir=str(dataset_dir),
                        image_size=32, batch_size=8, max_number_of_steps=steps,
                        save_interval_steps=1, eval_every_n_steps=2, keep_best_checkpoint=True,
                        allow_random_init=True,
                        checkpoint_dir=str(tmp_path / "none"), cache_dir=str(tmp_path / "cache")),
              str(train_dir))
    kept = sorted(n for n in os.listdir(train_dir) if n.endswith(".index"))
    assert kept == ["model.ckpt-5.index", "model.ckpt-6.index"]
    metrics, labels, _ = evaluate_run(str(train_dir), "test", num_bootstrap=10)
    assert metrics["counts"]["images"] == len(labels) > 0
    assert snapshot(tmp_path / "out1") == decoy_before
    assert not any("/proc/" in text for text in (
        (train_dir / "checkpoint").read_text(), (train_dir / "best" / "checkpoint").read_text()))


def test_a_study_runs_in_pattern_named_folders(awkward_study):
    _, run_dir, decoy, decoy_before = awkward_study
    assert run_dir.name == "r*?" and run_dir.parent.name == "out[1]"
    assert read_rows(run_dir)[1]["status"] == "ok"
    assert snapshot(decoy) == decoy_before


def test_literal_reaches_the_same_file_by_a_name_free_of_pattern_characters(tmp_path):
    import pytest
    from thyroid.checkpoint_paths import CheckpointPathError, has_pattern, literal
    folder = tmp_path / "r[1]*?"
    folder.mkdir()
    (folder / "model.ckpt-1.index").write_text("first")
    alias = literal(str(folder / "model.ckpt-1.index"))
    assert not has_pattern(alias) and open(alias).read() == "first"
    plain = str(tmp_path / "plain" / "model.ckpt")
    assert literal(plain) == plain  # nothing to do
    shutil.rmtree(folder)  # a folder replaced under the same name is reopened, not the old one
    folder.mkdir()
    (folder / "model.ckpt-1.index").write_text("second")
    assert open(literal(str(folder / "model.ckpt-1.index"))).read() == "second"
    with pytest.raises(CheckpointPathError, match="a checkpoint's name cannot hold"):
        literal(str(tmp_path / "model[1].ckpt"))
