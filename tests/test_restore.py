"""thyroid.restore: restoring with exclusions, loud failures on mismatches, scope warnings."""

import logging
import os

import numpy as np
import pytest

from thyroid.compat import tf, tf1
from thyroid.restore import (CheckpointMismatchError, build_restore_fn, parse_scopes,
                             resolve_checkpoint_path, variables_in_scopes, warn_unmatched_scopes)


def _build(b_shape=(3, 2), with_c=False, seed=0):
    """A tiny model: net/a/{weights,biases}, net/b/weights (+ net/c), a global step and a
    Momentum optimizer (slot variables)."""
    rng = np.random.RandomState(seed)
    a_w = tf1.get_variable("net/a/weights", initializer=rng.randn(4, 3).astype(np.float32))
    a_b = tf1.get_variable("net/a/biases", initializer=rng.randn(3).astype(np.float32))
    b_w = tf1.get_variable("net/b/weights", initializer=rng.randn(*b_shape).astype(np.float32))
    variables = [a_w, a_b, b_w]
    if with_c:
        variables.append(tf1.get_variable("net/c/weights",
                                          initializer=rng.randn(2).astype(np.float32)))
    step = tf1.train.get_or_create_global_step()
    loss = sum(tf.reduce_sum(tf.square(v)) for v in variables)
    tf1.train.MomentumOptimizer(0.1, 0.9).minimize(loss, global_step=step)
    return {v.op.name: v for v in variables}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ckpt")
    with tf.Graph().as_default():
        variables = _build(seed=0)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            values = sess.run(variables)
            path = tf1.train.Saver().save(sess, str(directory / "model.ckpt"), global_step=7)
    return path, values, str(directory)


def _restore_and_read(restore_fn, variables):
    with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        restore_fn(sess)
        return sess.run(variables)


def test_restore_all_identical(checkpoint):
    path, saved, directory = checkpoint
    for source in (path, directory):  # a prefix or a directory (latest checkpoint)
        with tf.Graph().as_default():
            variables = _build(seed=1)
            restore = build_restore_fn(source)
            assert restore.restored_names == sorted(saved)  # no slots, no global_step
            values = _restore_and_read(restore, variables)
        for name in saved:
            np.testing.assert_array_equal(values[name], saved[name])


def test_restore_with_exclusions(checkpoint):
    path, saved, _ = checkpoint
    with tf.Graph().as_default():
        variables = _build(seed=1)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            initial = sess.run(variables)
        restore = build_restore_fn(path, exclude_scopes="net/b")
        values = _restore_and_read(restore, variables)
    np.testing.assert_array_equal(values["net/a/weights"], saved["net/a/weights"])
    np.testing.assert_array_equal(values["net/a/biases"], saved["net/a/biases"])
    np.testing.assert_array_equal(values["net/b/weights"], initial["net/b/weights"])
    assert not np.array_equal(values["net/b/weights"], saved["net/b/weights"])


def test_var_list(checkpoint):
    path, saved, _ = checkpoint
    with tf.Graph().as_default():
        variables = _build(seed=1)
        restore = build_restore_fn(path, var_list=[variables["net/a/biases"]])
        assert restore.restored_names == ["net/a/biases"]
        values = _restore_and_read(restore, variables)
    np.testing.assert_array_equal(values["net/a/biases"], saved["net/a/biases"])
    assert not np.array_equal(values["net/a/weights"], saved["net/a/weights"])


def test_shape_mismatch_is_named(checkpoint):
    path, _, _ = checkpoint
    with tf.Graph().as_default():
        _build(b_shape=(3, 5), seed=1)
        with pytest.raises(CheckpointMismatchError) as info:
            build_restore_fn(path)
        message = str(info.value)
        assert "net/b/weights" in message and "[3, 5]" in message and "[3, 2]" in message
        assert isinstance(info.value, ValueError)
        assert info.value.mismatched == [("net/b/weights", (3, 5), (3, 2))]
        # Excluding the mismatched scope is the way out.
        build_restore_fn(path, exclude_scopes=["net/b"])


def test_missing_variable(checkpoint, caplog):
    path, saved, _ = checkpoint
    with tf.Graph().as_default():
        variables = _build(with_c=True, seed=1)
        with pytest.raises(CheckpointMismatchError, match="net/c/weights") as info:
            build_restore_fn(path)
        assert info.value.missing == ["net/c/weights"]
        with caplog.at_level(logging.WARNING, logger="thyroid.restore"):
            restore = build_restore_fn(path, ignore_missing_vars=True)
        assert "net/c/weights" in caplog.text
        values = _restore_and_read(restore, variables)
    np.testing.assert_array_equal(values["net/a/weights"], saved["net/a/weights"])


def test_unmatched_scope_warns(checkpoint, caplog):
    path, _, _ = checkpoint
    with tf.Graph().as_default():
        _build(seed=1)
        with caplog.at_level(logging.WARNING, logger="thyroid.restore"):
            build_restore_fn(path, exclude_scopes="net/b, net/typo")
        assert "net/typo" in caplog.text and "'net/b'" not in caplog.text
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="thyroid.restore"):
            unmatched = warn_unmatched_scopes(["net/a", "nothing"], tf1.global_variables(),
                                              "trainable scope")
        assert unmatched == ["nothing"] and "nothing" in caplog.text


def test_scope_helpers():
    assert parse_scopes("a, b ,,c") == ("a", "b", "c")
    assert parse_scopes(None) == () and parse_scopes(["x ", ""]) == ("x",)
    with tf.Graph().as_default():
        _build(seed=2)
        names = [v.op.name for v in variables_in_scopes("net/a")]
        assert names == ["net/a/weights", "net/a/biases"]
        assert len(variables_in_scopes("")) == 3  # all trainable variables


def test_missing_checkpoint_is_clear(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        resolve_checkpoint_path(str(tmp_path / "nothing.ckpt"))
    with pytest.raises(ValueError, match="No checkpoint"):
        resolve_checkpoint_path(str(tmp_path))
    assert os.path.isdir(tmp_path)


def _frozen_graph(exclude_scopes=(), b_shape=(3, 2), with_c=False):
    """net/a, net/b (+ net/c) read through FrozenWeights; -> (weights, {name: tensor})."""
    from thyroid.restore import FrozenWeights
    weights = FrozenWeights(exclude_scopes)
    tensors = {}
    with tf1.variable_scope("", custom_getter=weights.getter):
        for name, shape in (("net/a/weights", (4, 3)), ("net/a/biases", (3,)),
                            ("net/b/weights", b_shape)) + ((("net/c/weights", (2,)),) if with_c else ()):
            tensors[name] = tf1.get_variable(name, shape, initializer=tf1.zeros_initializer())
    return weights, tensors


def test_frozen_weights_read_the_checkpoint_without_variables(checkpoint):
    path, saved, _ = checkpoint
    with tf.Graph().as_default():
        weights, tensors = _frozen_graph()
        restore = weights.restore_op(path)
        assert tf1.global_variables() == []  # bare handles, no variable objects
        with tf1.variable_scope("", custom_getter=weights.getter, reuse=True):
            again = tf1.get_variable("net/a/weights", (4, 3))
        assert sorted(weights.saveables) == sorted(saved)
        with tf1.Session() as sess:
            sess.run(restore)
            values, reread = sess.run(tensors), sess.run(again)
    for name in saved:
        np.testing.assert_array_equal(values[name], saved[name])
    np.testing.assert_array_equal(reread, saved["net/a/weights"])


def test_frozen_weights_keep_excluded_scopes_as_initialised_variables(checkpoint):
    path, saved, _ = checkpoint
    with tf.Graph().as_default():
        weights, tensors = _frozen_graph(exclude_scopes="net/b")
        restore = weights.restore_op(path)
        assert [v.op.name for v in tf1.global_variables()] == ["net/b/weights"]
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(restore)
            values = sess.run(tensors)
    np.testing.assert_array_equal(values["net/a/weights"], saved["net/a/weights"])
    np.testing.assert_array_equal(values["net/b/weights"], np.zeros((3, 2)))


def test_frozen_weights_name_missing_and_mismatched_weights(checkpoint):
    path, _, _ = checkpoint
    with tf.Graph().as_default():
        weights, _ = _frozen_graph(b_shape=(3, 5), with_c=True)
        with pytest.raises(CheckpointMismatchError) as error:
            weights.restore_op(path)
    assert error.value.missing == ["net/c/weights"]
    assert error.value.mismatched == [("net/b/weights", (3, 5), (3, 2))]
    assert "net/c/weights" in str(error.value) and "[3, 5]" in str(error.value)
