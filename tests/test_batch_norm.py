"""The fast-building batch norm (thyroid/nets/batch_norm.py) is slim's batch norm: same
variables and collections, same outputs, same moving-average updates."""

import numpy as np
import pytest

from thyroid.compat import slim, tf, tf1
from thyroid.nets import batch_norm, get_network

PLAIN = {"fused": True}  # slim's default route: the legacy Keras layer


def _conv_bn(settings, is_training, inputs):
    return slim.conv2d(inputs, 6, [3, 3], normalizer_fn=slim.batch_norm,
                       normalizer_params=dict(settings, is_training=is_training, decay=0.9,
                                              scale=True, center=True),
                       activation_fn=tf.nn.relu6, scope="layer")


def _run(settings, is_training, images):
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(3)
        inputs = tf1.placeholder(tf.float32, images.shape)
        outputs = _conv_bn(settings, is_training, inputs)
        updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            # the same non-trivial parameters for both routes
            for variable in tf1.global_variables():
                shape = variable.shape.as_list()
                value = np.random.RandomState(len(variable.op.name)).uniform(0.5, 1.5, shape)
                variable.load(value.astype(np.float32), session)
            values = session.run([outputs] + updates, {inputs: images})[0]
            state = {v.op.name: session.run(v) for v in tf1.global_variables()}
    return values, state, len(updates)


@pytest.mark.parametrize("is_training", [False, True])
def test_outputs_and_moving_averages_match_slims_keras_route(is_training):
    images = np.random.RandomState(0).normal(size=(4, 9, 9, 3)).astype(np.float32)
    fast_out, fast_state, fast_updates = _run(batch_norm.FUSED_BUILD, is_training, images)
    plain_out, plain_state, plain_updates = _run(PLAIN, is_training, images)
    assert fast_updates == plain_updates == (2 if is_training else 0)
    np.testing.assert_allclose(fast_out, plain_out, rtol=1e-5, atol=1e-5)
    assert sorted(fast_state) == sorted(plain_state)
    for name in plain_state:
        np.testing.assert_allclose(fast_state[name], plain_state[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    if is_training:  # the update really moved the averages
        assert not np.allclose(fast_state["layer/BatchNorm/moving_mean"],
                               np.random.RandomState(len("layer/BatchNorm/moving_mean"))
                               .uniform(0.5, 1.5, 6))


def _variables(name, settings, monkeypatch):
    monkeypatch.setattr(batch_norm, "FUSED_BUILD", settings)
    spec = get_network(name)
    graph = tf.Graph()
    with graph.as_default():
        size = spec.min_image_size
        spec.features(tf1.placeholder(tf.float32, [1, size, size, 3]), is_training=True)
        names = {v.op.name for v in tf1.global_variables()}
        collections = {name: set() for name in names}
        for key in graph.get_all_collection_keys():
            for item in graph.get_collection(key):
                if getattr(getattr(item, "op", None), "name", None) in names:
                    collections[item.op.name].add(key)
        return ({v.op.name: (tuple(v.shape.as_list()), v.trainable, frozenset(collections[v.op.name]))
                 for v in tf1.global_variables()},
                len(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)),
                {op.type for op in graph.get_operations()})


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v1", "inception_v3"])
def test_networks_have_the_same_variables_either_way(name, monkeypatch):
    fast, fast_updates, fast_ops = _variables(name, batch_norm.FUSED_BUILD, monkeypatch)
    plain, plain_updates, _ = _variables(name, PLAIN, monkeypatch)
    assert fast == plain
    assert fast_updates == plain_updates > 0
    assert any("BatchNorm/moving_mean" in v for v in fast)
    assert "FusedBatchNormV3" in fast_ops
