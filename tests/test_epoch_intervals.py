"""Validation interval and early-stopping patience in epochs: a larger training set is
evaluated, and waited for, over proportionally more steps."""

import json
import os

import pytest

from thyroid import train as train_cli
from thyroid.datasets import folds
from thyroid.study import data as study_data
from thyroid.study.config import (EARLY_STOPPING_PATIENCE, EVAL_EVERY_N_EPOCHS, StudyConfig,
                                  row_config)
from thyroid.study.rows import get_row
from thyroid.training import run
from thyroid.training.inputs import part_size
from thyroid.training.run_config import ConfigError, RunConfig


def test_an_interval_in_epochs_resolves_to_steps_in_proportion_to_the_training_set():
    config = RunConfig(model="small_cnn", mode="scratch", dataset_dir="d", batch_size=32,
                       eval_every_n_epochs=0.5)
    assert run.eval_interval_steps(config, 640) == 10
    assert run.eval_interval_steps(config, 6400) == 100
    assert run.eval_interval_steps(config, 10) == 1  # at least one step
    in_steps = config.replace(eval_every_n_epochs=0.0, eval_every_n_steps=25)
    assert run.eval_interval_steps(in_steps, 640) == run.eval_interval_steps(in_steps, 6400) == 25
    resolved = run.resolve_steps(config.replace(num_epochs=3), 640)
    assert (resolved.max_number_of_steps, resolved.eval_every_n_steps) == (60, 10)
    with pytest.raises(ConfigError, match=r"^--eval_every_n_epochs=-1: must be in \[0, "):
        config.replace(eval_every_n_epochs=-1).validate(check_dataset=False)


@pytest.fixture(scope="module")
def cv_shards(synthetic_root, tmp_path_factory):
    output = tmp_path_factory.mktemp("epoch_cv")
    study_data.build_development_shards(
        StudyConfig(cv_folds=3, augment_copies=2),
        study_data.Sources(str(synthetic_root / "ddti"), None, "test"), str(output))
    return output


def test_the_studys_fold_training_waits_longer_on_a_larger_training_set(cv_shards, tmp_path):
    """The defect: the study evaluated every 25 steps with a patience of 4, so a row stopped
    after the same 100 steps without improvement whatever the data (5 epochs of row 1 at the
    default size, half an epoch at 10x). A fold's training part and the refit's (every
    image) now get intervals in proportion to their sizes."""
    intervals, sizes = {}, {}
    for fold in (0, folds.REFIT_FOLD):
        config = row_config(StudyConfig(quick=True, cv_folds=3), get_row(1), str(cv_shards))
        config = config.replace(fold_file=str(cv_shards / folds.FOLDS_NAME), cv_fold=fold,
                                keep_best_checkpoint=True, max_number_of_steps=1)
        run.train(config, str(tmp_path / f"fold{fold}"))
        with open(tmp_path / f"fold{fold}" / "run_config.json") as f:
            saved = json.load(f)["config"]
        sizes[fold] = part_size(config, "train")
        intervals[fold] = saved["eval_every_n_steps"]
        assert saved["eval_every_n_epochs"] == EVAL_EVERY_N_EPOCHS
        assert intervals[fold] == round(EVAL_EVERY_N_EPOCHS * sizes[fold] / config.batch_size)
    assert sizes[folds.REFIT_FOLD] > 1.3 * sizes[0]
    assert intervals[folds.REFIT_FOLD] > intervals[0]
    # patience in epochs: the same number of passes over either training set
    for fold in intervals:
        patience_steps = EARLY_STOPPING_PATIENCE * intervals[fold]
        patience_epochs = patience_steps * config.batch_size / sizes[fold]
        assert patience_epochs == pytest.approx(EARLY_STOPPING_PATIENCE * EVAL_EVERY_N_EPOCHS,
                                                rel=0.2)


def test_the_train_command_takes_the_interval_in_epochs(patient_build, tmp_path):
    dataset_dir, manifest = patient_build
    train_dir = tmp_path / "run"
    assert train_cli.main(["train", "--model=small_cnn", "--mode=scratch", "--image_size=32",
                           "--batch_size=8", "--max_number_of_steps=2",
                           "--eval_every_n_epochs=0.25", f"--dataset_dir={dataset_dir}",
                           f"--train_dir={train_dir}"]) == 0
    saved = json.loads((train_dir / "run_config.json").read_text())["config"]
    train_records = sum(manifest["splits"]["train"]["total"].values())
    assert saved["eval_every_n_steps"] == round(0.25 * train_records / 8)
    assert os.path.exists(train_dir / "checkpoint")
