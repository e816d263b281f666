"""Network registry: contract fields, endpoint shapes, official variable names, VGG split."""

import numpy as np
import pytest

from thyroid.compat import tf, tf1
from thyroid.checkpoints.locate import default_checkpoint_path
from thyroid.nets import NETWORK_NAMES, get_network
from thyroid.nets import efficientnet_lite
from thyroid.nets.heads import fc_head, small_cnn_head

BACKBONES = ("vgg_16", "inception_v3", "mobilenet_v1", "efficientnet_lite0")
SMALL_SIZES = {"vgg_16": 32, "inception_v3": 75, "mobilenet_v1": 32, "efficientnet_lite0": 32,
               "small_cnn": 32}
IMAGENET_CLASSES = {"vgg_16": 1000, "inception_v3": 1001, "mobilenet_v1": 1001,
                    "efficientnet_lite0": 1000}


def _placeholder(size, batch=1):
    return tf1.placeholder(tf.float32, [batch, size, size, 3])


def test_registry_contract():
    assert set(NETWORK_NAMES) == {"vgg_16", "inception_v3", "mobilenet_v1",
                                  "efficientnet_lite0", "small_cnn"}
    expected_scopes = {"vgg_16": "vgg_16", "inception_v3": "InceptionV3",
                       "mobilenet_v1": "MobilenetV1", "efficientnet_lite0": "efficientnet_lite0",
                       "small_cnn": "SmallCNN"}
    for name in NETWORK_NAMES:
        spec = get_network(name)
        assert spec.name == name and spec.scope == expected_scopes[name]
        assert spec.head_scope in spec.exclude_scopes
        assert any(s.startswith(spec.head_scope) for s in spec.trainable_scopes)
        assert spec.min_image_size <= spec.default_image_size
        cached = name in ("vgg_16", "efficientnet_lite0")
        assert (spec.frozen_prefix is not None) == cached
        assert (spec.trainable_suffix is not None) == cached
    with pytest.raises(ValueError, match="Unknown network"):
        get_network("resnet_50")
    with pytest.raises(Exception):
        get_network("vgg_16").scope = "x"  # frozen


def test_registry_details():
    vgg = get_network("vgg_16")
    assert vgg.bottleneck_shape == (7, 7, 512) and vgg.bottleneck_endpoint == "vgg_16/pool5"
    assert set(vgg.exclude_scopes) == {"vgg_16/fc6", "vgg_16/fc7", "vgg_16/fc8", "vgg_16/Head"}
    assert vgg.trainable_scopes == ("vgg_16/conv5/conv5_3", "vgg_16/Head")
    assert vgg.checkpoint.tarball == "vgg_16_2016_08_28.tar.gz"
    assert vgg.checkpoint.checkpoint_file == "vgg_16.ckpt"
    inception = get_network("inception_v3")
    assert inception.bottleneck_shape == (2048,) and inception.imagenet_label_offset == 1
    assert set(inception.exclude_scopes) == {"InceptionV3/Logits", "InceptionV3/AuxLogits"}
    assert inception.checkpoint.url == \
        "http://download.tensorflow.org/models/inception_v3_2016_08_28.tar.gz"
    mobilenet = get_network("mobilenet_v1")
    assert mobilenet.checkpoint.url.endswith("mobilenet_v1_2018_08_02/mobilenet_v1_1.0_224.tgz")
    assert mobilenet.imagenet_label_offset == 1 and mobilenet.bottleneck_shape == (1024,)
    effnet = get_network("efficientnet_lite0")
    assert effnet.checkpoint.url is None and effnet.bottleneck_shape == (1280,)
    assert get_network("small_cnn").imagenet_logits is None
    assert get_network("small_cnn").checkpoint is None


def test_default_checkpoint_path(tmp_path):
    spec = get_network("inception_v3")
    path, exists = default_checkpoint_path(spec, str(tmp_path))
    assert path == str(tmp_path / "inception_v3" / "inception_v3.ckpt") and not exists
    (tmp_path / "inception_v3").mkdir()
    (tmp_path / "inception_v3" / "inception_v3.ckpt.index").write_bytes(b"")
    assert default_checkpoint_path(spec, str(tmp_path))[1]
    path, _ = default_checkpoint_path(get_network("efficientnet_lite0"), "checkpoints")
    assert path == "checkpoints/efficientnet_lite0/model.ckpt"
    assert default_checkpoint_path(get_network("small_cnn")) == (None, False)


@pytest.mark.parametrize("name", BACKBONES)
def test_default_size_shapes(name):
    spec = get_network(name)
    size = spec.default_image_size
    with tf.Graph().as_default():
        bottleneck, end_points = spec.features(spec.preprocess(_placeholder(size)),
                                               is_training=False)
        assert tuple(bottleneck.shape.as_list()) == (1,) + spec.bottleneck_shape
        assert end_points[spec.bottleneck_endpoint] is bottleneck or \
            end_points[spec.bottleneck_endpoint].shape.as_list() == bottleneck.shape.as_list()
        names = [v.op.name for v in tf1.global_variables()]
        assert names and all(n.startswith(spec.scope + "/") for n in names)
    with tf.Graph().as_default():
        logits, _ = spec.imagenet_logits(spec.preprocess(_placeholder(size)))
        assert logits.shape.as_list() == [1, IMAGENET_CLASSES[name]]
        names = [v.op.name for v in tf1.global_variables()]
        # The ImageNet classifier lives under the excluded scopes.
        classifier = [n for n in names if any(n.startswith(s) for s in spec.exclude_scopes)]
        assert classifier
        for scope in spec.trainable_scopes:
            if scope != spec.head_scope:
                assert any(n.startswith(scope) for n in names), scope


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_small_size_forward(name):
    spec = get_network(name)
    size = SMALL_SIZES[name]
    assert size >= spec.min_image_size
    with tf.Graph().as_default():
        tf1.set_random_seed(0)
        images = _placeholder(size, batch=2)
        bottleneck, _ = spec.features(spec.preprocess(images), is_training=False)
        logits = (small_cnn_head if name == "small_cnn" else fc_head)(
            bottleneck, 2, False, spec.head_scope)
        head_vars = [v.op.name for v in tf1.global_variables()
                     if v.op.name.startswith(spec.head_scope + "/") or name == "small_cnn"]
        assert head_vars
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            feed = {images: np.random.RandomState(0).uniform(0, 255, (2, size, size, 3))}
            features_value, logits_value = sess.run([bottleneck, logits], feed)
    assert logits_value.shape == (2, 2) and np.all(np.isfinite(logits_value))
    if spec.bottleneck_shape and len(spec.bottleneck_shape) == 1:
        assert features_value.shape == (2,) + spec.bottleneck_shape
    if name == "vgg_16":
        assert features_value.shape == (2, 1, 1, 512)


@pytest.mark.parametrize("name", ["mobilenet_v1", "efficientnet_lite0"])
def test_batch_norm_follows_is_training(name):
    spec = get_network(name)
    size = SMALL_SIZES[name]
    for is_training, expect_updates in ((False, False), (True, True)):
        with tf.Graph().as_default():
            spec.features(_placeholder(size), is_training=is_training)
            updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
            assert bool(updates) == expect_updates


def test_vgg_prefix_suffix_equals_features():
    spec = get_network("vgg_16")
    with tf.Graph().as_default():
        tf1.set_random_seed(1)
        images = _placeholder(32, batch=2)
        inputs = spec.preprocess(images)
        full, _ = spec.features(inputs, is_training=False)
        count = len(tf1.global_variables())
        prefix = spec.frozen_prefix(inputs)
        assert prefix.shape.as_list() == [2, 2, 2, 512]
        split, end_points = spec.trainable_suffix(prefix, is_training=False)
        assert len(tf1.global_variables()) == count  # same variables, no copies
        assert "vgg_16/pool5" in end_points
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            feed = {images: np.random.RandomState(1).uniform(0, 255, (2, 32, 32, 3))}
            a, b = sess.run([full, split], feed)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    with tf.Graph().as_default():
        prefix = spec.frozen_prefix(_placeholder(224))
        assert prefix.shape.as_list() == [1, 14, 14, 512]
        suffix, _ = spec.trainable_suffix(prefix, is_training=True)
        assert suffix.shape.as_list() == [1, 7, 7, 512]
        suffix_vars = {v.op.name for v in tf1.global_variables()
                       if v.op.name.startswith("vgg_16/conv5/conv5_3")}
        assert suffix_vars == {"vgg_16/conv5/conv5_3/weights", "vgg_16/conv5/conv5_3/biases"}


def test_efficientnet_prefix_suffix_equals_features_and_suffix_holds_the_trained_scopes():
    spec = get_network("efficientnet_lite0")
    with tf.Graph().as_default():
        tf1.set_random_seed(1)
        images = _placeholder(64, batch=2)
        inputs = spec.preprocess(images)
        full, full_points = spec.features(inputs, is_training=False)
        names = {v.op.name for v in tf1.global_variables()}
        with tf1.variable_scope(tf1.get_variable_scope(), reuse=True):  # the same weights
            prefix = spec.frozen_prefix(inputs)
            assert prefix.shape.as_list() == [2, 2, 2, 192]
            split, end_points = spec.trainable_suffix(prefix, is_training=False)
        assert {v.op.name for v in tf1.global_variables()} == names  # reused, no copies
        assert {"blocks_15", "conv_head", "global_pool"} <= set(end_points)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            feed = {images: np.random.RandomState(1).uniform(0, 255, (2, 64, 64, 3))}
            a, b = sess.run([full, split], feed)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    with tf.Graph().as_default():
        spec.trainable_suffix(spec.frozen_prefix(_placeholder(128)), is_training=False)
        prefix_vars = {v.op.name for v in tf1.global_variables()}
    with tf.Graph().as_default():
        spec.trainable_suffix(tf1.placeholder(tf.float32, [1, 4, 4, 192]), is_training=False)
        suffix_vars = {v.op.name for v in tf1.global_variables()}
    assert suffix_vars and suffix_vars < prefix_vars
    # exactly the variables of the trainable scopes below the head live in the suffix
    trained = [s for s in spec.trainable_scopes if s != spec.head_scope]
    assert suffix_vars == {n for n in prefix_vars if any(n.startswith(s + "/") for s in trained)}


def test_mobilenet_official_names():
    spec = get_network("mobilenet_v1")
    with tf.Graph().as_default():
        spec.imagenet_logits(_placeholder(224))
        shapes = {v.op.name: tuple(v.shape.as_list()) for v in tf1.global_variables()}
    expected = {
        "MobilenetV1/Conv2d_0/weights": (3, 3, 3, 32),
        "MobilenetV1/Conv2d_0/BatchNorm/beta": (32,),
        "MobilenetV1/Conv2d_0/BatchNorm/moving_mean": (32,),
        "MobilenetV1/Conv2d_0/BatchNorm/moving_variance": (32,),
        "MobilenetV1/Conv2d_1_depthwise/depthwise_weights": (3, 3, 32, 1),
        "MobilenetV1/Conv2d_1_pointwise/weights": (1, 1, 32, 64),
        "MobilenetV1/Conv2d_2_depthwise/depthwise_weights": (3, 3, 64, 1),
        "MobilenetV1/Conv2d_13_depthwise/depthwise_weights": (3, 3, 1024, 1),
        "MobilenetV1/Conv2d_13_pointwise/weights": (1, 1, 1024, 1024),
        "MobilenetV1/Conv2d_13_pointwise/BatchNorm/moving_variance": (1024,),
        "MobilenetV1/Logits/Conv2d_1c_1x1/weights": (1, 1, 1024, 1001),
        "MobilenetV1/Logits/Conv2d_1c_1x1/biases": (1001,),
    }
    for name, shape in expected.items():
        assert shapes.get(name) == shape, name
    assert not any(n.startswith("MobilenetV1/Conv2d_14") for n in shapes)
    assert not any("depthwise" in n and n.endswith("/biases") for n in shapes)
    # 13 blocks x (depthwise + pointwise) + Conv2d_0, each with 4 batch-norm variables
    # (gamma, beta, moving mean/variance), plus the classifier's weights and biases.
    assert len(shapes) == 27 * 5 + 2


def test_efficientnet_lite0_structure():
    blocks = efficientnet_lite.block_table()
    assert len(blocks) == 16
    assert [b[4] for b in blocks] == [16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112,
                                      192, 192, 192, 192, 320]
    spec = get_network("efficientnet_lite0")
    with tf.Graph().as_default():
        spec.imagenet_logits(_placeholder(224))
        shapes = {v.op.name: tuple(v.shape.as_list()) for v in tf1.global_variables()}
    assert shapes["efficientnet_lite0/stem/weights"] == (3, 3, 3, 32)
    assert "efficientnet_lite0/blocks_0/expand/weights" not in shapes
    assert shapes["efficientnet_lite0/blocks_1/expand/weights"] == (1, 1, 16, 96)
    assert shapes["efficientnet_lite0/blocks_15/depthwise/depthwise_weights"] == (3, 3, 1152, 1)
    assert shapes["efficientnet_lite0/conv_head/weights"] == (1, 1, 320, 1280)
    assert shapes["efficientnet_lite0/Logits/fc/weights"] == (1280, 1000)
    assert not any("se" in n.split("/") for n in shapes)


def test_preprocess_scaling():
    values = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    with tf.Graph().as_default(), tf1.Session() as sess:
        out = {n: sess.run(get_network(n).preprocess(tf.constant(values)))
               for n in NETWORK_NAMES}
    np.testing.assert_allclose(out["inception_v3"], [[[[-1, 0, 1]]]], atol=1e-6)
    np.testing.assert_allclose(out["mobilenet_v1"], [[[[-1, 0, 1]]]], atol=1e-6)
    np.testing.assert_allclose(out["vgg_16"], [[[[-123.68, 127.5 - 116.78, 255 - 103.94]]]],
                               atol=1e-4)
    np.testing.assert_allclose(out["efficientnet_lite0"], [[[[-127 / 128, 0.5 / 128, 1.0]]]],
                               atol=1e-6)
    np.testing.assert_allclose(out["small_cnn"], [[[[0, 0.5, 1]]]], atol=1e-6)


def test_heads():
    with tf.Graph().as_default():
        bottleneck = tf1.placeholder(tf.float32, [3, 7, 7, 512])
        logits = fc_head(bottleneck, 2, True, "vgg_16/Head")
        assert logits.shape.as_list() == [3, 2]
        names = {v.op.name for v in tf1.global_variables()}
        assert names == {"vgg_16/Head/fc1/weights", "vgg_16/Head/fc1/biases",
                         "vgg_16/Head/logits/weights", "vgg_16/Head/logits/biases"}
        fc1 = [v for v in tf1.global_variables() if v.op.name == "vgg_16/Head/fc1/weights"][0]
        assert fc1.shape.as_list() == [7 * 7 * 512, 256]
    with tf.Graph().as_default():
        small = small_cnn_head(tf1.placeholder(tf.float32, [2, 7, 7, 512]), 2, False, "S")
        assert small.shape.as_list() == [2, 2]
        graph = tf1.get_default_graph()
        pools = [op.name for op in graph.get_operations() if op.type == "MaxPool"]
        assert len(pools) == 1  # 7 -> 3, then no more pooling
        fc = [v for v in tf1.global_variables() if v.op.name == "S/fc1/weights"][0]
        assert fc.shape.as_list() == [3 * 3 * 64, 64]
        convs = sorted(v.op.name for v in tf1.global_variables() if v.op.name.endswith("weights")
                       and "/conv" in v.op.name)
        assert convs == ["S/conv1/weights", "S/conv2/weights", "S/conv3/weights"]
    with tf.Graph().as_default():
        small = small_cnn_head(tf1.placeholder(tf.float32, [2, 64, 64, 3]), 2, False, "S")
        pools = [op for op in tf1.get_default_graph().get_operations() if op.type == "MaxPool"]
        assert len(pools) == 3 and small.shape.as_list() == [2, 2]
        flat = small_cnn_head(tf1.placeholder(tf.float32, [2, 2048]), 2, False, "F")
        assert flat.shape.as_list() == [2, 2]
