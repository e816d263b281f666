"""Exact resume after kill -9, checkpoint retention across restarts, the train_dir lock."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from thyroid import train as train_command
from thyroid.compat import tf, tf1
from thyroid.nets import step_random
from thyroid.training.loop import CHECKPOINTS_KEPT
from thyroid.training.run import train
from thyroid.training.run_config import RunConfig
from thyroid.training.train_dir_lock import LOCK_FILE, TrainDirBusyError, locked_train_dir

SLOW_TRAINER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slow_trainer.py")
STEPS = 40
SAVE_EVERY = 4


def train_flags(dataset_dir, train_dir):
    """A tiny scratch run whose head has dropout, so a restarted mask sequence would show."""
    return [f"--dataset_dir={dataset_dir}", f"--train_dir={train_dir}", "--model=small_cnn",
            "--mode=scratch", "--image_size=32", "--batch_size=8", f"--max_number_of_steps={STEPS}",
            f"--save_interval_steps={SAVE_EVERY}", "--log_every_n_steps=10",
            "--eval_every_n_steps=20", "--seed=7", "--allow_random_init",
            f"--checkpoint_dir={train_dir}-no-checkpoints", f"--cache_dir={train_dir}-cache"]


def run_in_process(dataset_dir, train_dir):
    return train_command.main(["thyroid.train", *train_flags(dataset_dir, train_dir)])


def final_variables(train_dir):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(train_dir)))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def max_abs_difference(first, second):
    assert sorted(first) == sorted(second)
    return max(float(np.max(np.abs(first[name].astype(np.float64) - second[name].astype(np.float64))))
               for name in first)


def saved_steps(train_dir):
    return sorted(int(name.split("-")[1].split(".")[0]) for name in os.listdir(train_dir)
                  if name.startswith("model.ckpt-") and name.endswith(".index"))


def wait_for_first_checkpoint(process, train_dir, timeout_s=300):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the trainer exited early with status {process.returncode}"
        if os.path.isdir(train_dir) and tf.train.latest_checkpoint(str(train_dir)):
            return
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint in {train_dir} after {timeout_s}s")


def test_two_uninterrupted_runs_end_with_identical_weights(patient_build, tmp_path):
    dataset_dir, _ = patient_build
    assert run_in_process(dataset_dir, tmp_path / "first") == 0
    assert run_in_process(dataset_dir, tmp_path / "second") == 0
    first, second = final_variables(tmp_path / "first"), final_variables(tmp_path / "second")
    assert int(first["global_step"]) == STEPS
    assert max_abs_difference(first, second) == 0.0


def test_kill_9_then_resume_equals_an_uninterrupted_run(patient_build, tmp_path, capsys):
    dataset_dir, _ = patient_build
    killed_dir = tmp_path / "killed"
    with open(tmp_path / "trainer.log", "wb") as log:
        trainer = subprocess.Popen([sys.executable, SLOW_TRAINER, "0.25",
                                    *train_flags(dataset_dir, killed_dir)],
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_first_checkpoint(trainer, killed_dir)
            # While it runs, a second trainer on the same folder is refused at once.
            assert run_in_process(dataset_dir, killed_dir) == 1
            error_lines = capsys.readouterr().err.strip().splitlines()
            assert len(error_lines) == 1
            assert f"already being trained by pid {trainer.pid} on host" in error_lines[0]
        finally:
            os.kill(trainer.pid, signal.SIGKILL)
            trainer.wait()
    assert trainer.returncode == -signal.SIGKILL
    reached = saved_steps(killed_dir)[-1]
    assert SAVE_EVERY <= reached < STEPS, f"killed at step {reached}, not in the middle"
    assert os.path.exists(killed_dir / LOCK_FILE)  # left behind by the dead trainer

    assert run_in_process(dataset_dir, killed_dir) == 0  # the stale lock does not block
    assert run_in_process(dataset_dir, tmp_path / "uninterrupted") == 0
    resumed = final_variables(killed_dir)
    uninterrupted = final_variables(tmp_path / "uninterrupted")
    assert int(resumed["global_step"]) == STEPS
    assert max_abs_difference(resumed, uninterrupted) == 0.0


def test_checkpoint_retention_holds_across_restarts(patient_build, tmp_path):
    dataset_dir, _ = patient_build
    train_dir = tmp_path / "restarted"
    for restart in range(1, 6):
        steps = 3 * restart
        train(RunConfig(model="small_cnn", mode="scratch", dataset_dir=str(dataset_dir), image_size=32,
                        batch_size=8, max_number_of_steps=steps, save_interval_steps=1,
                        allow_random_init=True, checkpoint_dir=str(train_dir) + "-none",
                        cache_dir=str(train_dir) + "-cache"), str(train_dir))
        assert saved_steps(train_dir) == list(range(steps - CHECKPOINTS_KEPT + 1, steps + 1))
        state = tf1.train.get_checkpoint_state(str(train_dir))
        assert len(state.all_model_checkpoint_paths) == CHECKPOINTS_KEPT


def test_lock_refuses_a_second_holder_and_is_released(tmp_path):
    with locked_train_dir(str(tmp_path)):
        with pytest.raises(TrainDirBusyError, match=f"already being trained by pid {os.getpid()} "):
            with locked_train_dir(str(tmp_path)):
                pass
    with locked_train_dir(str(tmp_path)):  # released on exit
        pass


def test_a_lock_file_without_a_live_holder_does_not_block(tmp_path):
    (tmp_path / LOCK_FILE).write_text('{"pid": 999999999, "host": "gone", "started": "then"}\n')
    with locked_train_dir(str(tmp_path)):
        assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_FILE).read_text()


def dropout_mask(step, graph_seed=7, training=True):
    with tf.Graph().as_default():
        tf1.set_random_seed(graph_seed)
        global_step = tf1.train.get_or_create_global_step()
        is_training = tf1.placeholder_with_default(training, [])
        dropped = step_random.dropout(tf.ones([4, 64]), 0.5, is_training, salt=5)
        with tf1.Session() as sess:
            sess.run(global_step.assign(step))
            return sess.run(dropped)


def test_dropout_mask_depends_only_on_seed_and_step():
    assert np.array_equal(dropout_mask(3), dropout_mask(3))
    assert not np.array_equal(dropout_mask(3), dropout_mask(4))
    assert not np.array_equal(dropout_mask(3), dropout_mask(3, graph_seed=8))
    assert set(np.unique(dropout_mask(3))) == {0.0, 2.0}
    assert np.array_equal(dropout_mask(3, training=False), np.ones([4, 64], np.float32))
