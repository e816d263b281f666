"""Frozen passes by the TFLite interpreter agree with the TensorFlow graph's, and the cache
keeps the two apart."""

import os

import numpy as np
import pytest

from thyroid.datasets import shards
from thyroid.nets import get_network
from thyroid.preprocessing.resize import resize_batch
from thyroid.training import features
from thyroid.training.frozen_network import BOTTLENECK, FROZEN_PREFIX, POOLED_LAYERS

SIZE = 224  # the size the study's EfficientNet-Lite0 rows run at
TOLERANCE = 1e-4  # of each output's largest magnitude


@pytest.fixture(scope="module")
def imagenet_lite0(tmp_path_factory):
    from thyroid.checkpoints.convert import convert
    return convert("efficientnet_lite0", str(tmp_path_factory.mktemp("checkpoints")))


@pytest.fixture(scope="module")
def scans(patient_build):
    dataset_dir, _ = patient_build
    return resize_batch(shards.load_split(str(dataset_dir), "test").images[:10], SIZE)


def relative_error(got, expected):
    return float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))


def run_both(spec, images, outputs, checkpoint, batch_size=8):
    """{engine: {output: values}} of one batch through each engine."""
    results = {}
    for engine in (features.TF_ENGINE, features.TFLITE_ENGINE):
        network = features.open_network(spec, images.shape[1], outputs, checkpoint,
                                        batch_size=batch_size, engine=engine)
        try:
            results[engine] = network.run_batch(images[:batch_size])
            assert network.output_shapes == {o: v.shape[1:] for o, v in results[engine].items()}
        finally:
            network.close()
    return results


@pytest.mark.parametrize("outputs", [(BOTTLENECK,), (FROZEN_PREFIX, BOTTLENECK), (POOLED_LAYERS,)])
def test_tflite_outputs_agree_with_the_graph(imagenet_lite0, scans, outputs):
    results = run_both(get_network("efficientnet_lite0"), scans, outputs, imagenet_lite0)
    for output in outputs:
        tf_values, tflite_values = (results[e][output] for e in (features.TF_ENGINE,
                                                                   features.TFLITE_ENGINE))
        assert tflite_values.dtype == np.float32 and tflite_values.shape == tf_values.shape
        assert relative_error(tflite_values, tf_values) <= TOLERANCE, output


def test_tflite_pass_is_deterministic_and_padding_changes_no_row(imagenet_lite0, scans):
    network = features.open_network(get_network("efficientnet_lite0"), SIZE, (BOTTLENECK,),
                                    imagenet_lite0, batch_size=8,
                                    engine=features.TFLITE_ENGINE)
    try:
        whole = network.run_batch(scans[:8])[BOTTLENECK]
        again = network.run_batch(scans[:8])[BOTTLENECK]
        short = network.run_batch(scans[:3])[BOTTLENECK]
    finally:
        network.close()
    np.testing.assert_array_equal(again, whole)
    assert short.shape == (3, 1280)
    np.testing.assert_allclose(short, whole[:3], rtol=0, atol=1e-6 * np.abs(whole).max())


def test_random_weights_convert_too(scans):
    results = run_both(get_network("efficientnet_lite0"), resize_batch(list(scans[:4]), 64),
                       (BOTTLENECK,), None, batch_size=4)
    assert relative_error(results[features.TFLITE_ENGINE][BOTTLENECK],
                          results[features.TF_ENGINE][BOTTLENECK]) <= TOLERANCE


def test_the_engine_is_part_of_the_cache_key(patient_build, tmp_path):
    dataset_dir, _ = patient_build
    spec = get_network("efficientnet_lite0")

    def run(engine):
        return features.load_or_compute(spec, str(dataset_dir), "test", BOTTLENECK, None, 64,
                                        str(tmp_path), engine=engine)
    graph, interpreter = run(features.TF_ENGINE), run(features.TFLITE_ENGINE)
    assert not graph.reused and not interpreter.reused and graph.key != interpreter.key
    assert relative_error(np.asarray(interpreter.values), np.asarray(graph.values)) <= TOLERANCE
    assert features.frozen_engine(spec) == features.TFLITE_ENGINE  # no GPU in the test runs
    assert features.frozen_engine(get_network("vgg_16")) == features.TF_ENGINE


def test_a_converted_model_is_kept_and_reused(tmp_path, scans, monkeypatch):
    spec = get_network("efficientnet_lite0")
    images = resize_batch(list(scans[:4]), 64)

    def run():
        network = features.open_network(spec, 64, (BOTTLENECK,), None, batch_size=4,
                                        engine=features.TFLITE_ENGINE, model_dir=str(tmp_path))
        try:
            return network.run_batch(images)[BOTTLENECK]
        finally:
            network.close()
    first = run()
    assert [name.endswith(".tflite") for name in os.listdir(tmp_path)] == [True]

    def no_graph(*args, **kwargs):
        raise AssertionError("the kept model should have been read")
    monkeypatch.setattr(features, "FrozenNetwork", no_graph)
    np.testing.assert_array_equal(run(), first)
