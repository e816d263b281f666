"""Every mode trains and evaluates end to end; resume, caches and the VGG prefix path."""

import json
import os

import numpy as np
import pytest

from thyroid.training import features, frozen_network
from thyroid.compat import tf, tf1
from thyroid.training.scoring import evaluate_run
from thyroid.nets import get_network
from thyroid.progress import Progress
from thyroid.training.model import build_logits
from thyroid.checkpoints.locate import MissingCheckpointError
from thyroid.training.run import train
from thyroid.training.run_config import RunConfig

TINY = {"small_cnn": 32, "vgg_16": 32, "inception_v3": 75, "efficientnet_lite0": 64}


def run_training(dataset_dir, train_dir, model, mode, **kwargs):
    values = dict(model=model, mode=mode, dataset_dir=str(dataset_dir),
                  image_size=TINY[model], batch_size=8, max_number_of_steps=3,
                  allow_random_init=True, checkpoint_dir=str(train_dir) + "-no-checkpoints",
                  cache_dir=str(train_dir) + "-cache", log_every_n_steps=1, eval_every_n_steps=2)
    values.update(kwargs)
    return train(RunConfig(**values), str(train_dir))


def saved_steps(train_dir):
    return sorted(int(name.split("-")[1].split(".")[0]) for name in os.listdir(train_dir)
                  if name.startswith("model.ckpt-") and name.endswith(".index"))


@pytest.mark.parametrize("model,mode", [
    ("small_cnn", "scratch"),
    ("efficientnet_lite0", "bottleneck_svm"),
    ("efficientnet_lite0", "bottleneck_fc"),
    ("efficientnet_lite0", "finetune"),
    ("vgg_16", "bottleneck_fc"),
    ("vgg_16", "finetune"),
    ("inception_v3", "finetune"),
])
def test_every_mode_trains_and_evaluates(patient_build, tmp_path, model, mode):
    dataset_dir, manifest = patient_build
    train_dir = tmp_path / f"{model}_{mode}"
    result = run_training(dataset_dir, train_dir, model, mode)
    assert "random init" in result.checkpoint_description
    metrics, labels, probs = evaluate_run(str(train_dir), "test", num_bootstrap=50)
    test_images = manifest["splits"]["test"]["total"]
    assert len(labels) == test_images["benign"] + test_images["malignant"]
    assert np.all((probs >= 0) & (probs <= 1))
    assert metrics["counts"]["images"] == len(labels)
    assert set(metrics) >= {"accuracy", "sensitivity", "specificity", "auc", "confusion_matrix"}
    with open(train_dir / "metrics_test.json") as f:
        assert json.load(f)["mode"] == mode
    if mode != "bottleneck_svm":
        assert saved_steps(train_dir)[-1] == 3
        assert any(name.startswith("events.out.tfevents") for name in os.listdir(train_dir))


def test_missing_checkpoint_names_the_fix(patient_build, tmp_path):
    dataset_dir, _ = patient_build
    with pytest.raises(MissingCheckpointError, match="thyroid.checkpoints download --models=vgg_16"):
        run_training(dataset_dir, tmp_path / "vgg", "vgg_16", "bottleneck_svm", allow_random_init=False)


def test_interrupted_training_resumes_at_the_step_it_reached(patient_build, tmp_path, monkeypatch):
    dataset_dir, _ = patient_build
    train_dir = tmp_path / "scratch"
    original_update = Progress.update

    def interrupt_in_step_five(self, count=1):  # after step 5 ran, before it could be saved
        original_update(self, count)
        if self.done == 5:
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(Progress, "update", interrupt_in_step_five)
    with pytest.raises(KeyboardInterrupt):
        run_training(dataset_dir, train_dir, "small_cnn", "scratch", max_number_of_steps=10,
                     save_interval_steps=2)
    assert saved_steps(train_dir)[-1] == 4
    monkeypatch.setattr(Progress, "update", original_update)

    resumed_from = []
    original_init = Progress.__init__

    def record_total(self, total, *args, **kwargs):
        resumed_from.append(total)
        original_init(self, total, *args, **kwargs)

    monkeypatch.setattr(Progress, "__init__", record_total)
    run_training(dataset_dir, train_dir, "small_cnn", "scratch", max_number_of_steps=10,
                 save_interval_steps=2)
    assert resumed_from == [6]  # the last saved step 4 -> 10, not 0 -> 10
    assert saved_steps(train_dir)[-1] == 10


def test_bottleneck_cache_is_reused_and_invalidated(patient_build, tmp_path):
    dataset_dir, _ = patient_build
    spec = get_network("efficientnet_lite0")
    cache = str(tmp_path / "cache")

    def run(size=64, checkpoint=None, data=dataset_dir):
        return features.load_or_compute(spec, str(data), "validation", frozen_network.BOTTLENECK,
                                        checkpoint, size, cache, batch_size=16)

    first = run()
    second = run()
    assert not first.reused and second.reused
    np.testing.assert_array_equal(first.values, second.values)
    assert first.values.shape[1:] == (1280,)
    assert not run(size=72).reused  # preprocessing changed

    # A different checkpoint: save random weights and point at them.
    checkpoint = str(tmp_path / "weights" / "model.ckpt")
    with tf.Graph().as_default():
        spec.features(tf1.placeholder(tf.float32, [1, 64, 64, 3]), is_training=False)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            tf1.train.Saver().save(sess, checkpoint)
    with_checkpoint = run(checkpoint=checkpoint)
    assert not with_checkpoint.reused and with_checkpoint.key != first.key
    assert run(checkpoint=checkpoint).reused

    # Changed shards: a copy with one shard's bytes altered gets a new key.
    import shutil
    changed = tmp_path / "changed"
    shutil.copytree(dataset_dir, changed)
    shard = sorted(p for p in os.listdir(changed) if p.startswith("validation-"))[0]
    with open(changed / shard, "ab") as f:
        f.write(b"\0")
    assert features.cache_key(spec.name, frozen_network.BOTTLENECK, None, str(changed),
                              "validation", 64) != first.key


@pytest.mark.parametrize("model, prefix_shape", [("vgg_16", (2, 2, 512)),
                                                 ("efficientnet_lite0", (1, 1, 192))])
def test_prefix_cache_gives_the_same_loss_as_the_full_network(patient_build, tmp_path, model,
                                                              prefix_shape):
    dataset_dir, _ = patient_build
    spec = get_network(model)
    from thyroid.datasets import shards
    from thyroid.preprocessing.resize import resize_batch
    data = shards.load_split(str(dataset_dir), "train")
    images = resize_batch(data.images[:6], 32)
    labels = np.asarray(data.labels[:6], np.int64)
    checkpoint = str(tmp_path / model / "model.ckpt")

    def loss_of(logits, label_input):
        return tf1.losses.sparse_softmax_cross_entropy(label_input, logits)

    with tf.Graph().as_default():  # the plain path: whole network, weights saved for the other
        tf1.set_random_seed(1)
        image_input = tf1.placeholder(tf.uint8, [None, 32, 32, 3])
        label_input = tf1.placeholder(tf.int64, [None])
        loss = loss_of(build_logits(spec, "finetune", image_input, False)[0], label_input)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            tf1.train.Saver().save(sess, checkpoint)
            full_loss = sess.run(loss, {image_input: images, label_input: labels})

    prefix = features.compute_activations(spec, images, frozen_network.FROZEN_PREFIX, checkpoint)
    assert prefix.shape == (6,) + prefix_shape
    with tf.Graph().as_default():  # the cached path: prefix activations in, suffix + head on top
        prefix_input = tf1.placeholder(tf.float32, [None] + list(prefix.shape[1:]))
        label_input = tf1.placeholder(tf.int64, [None])
        loss = loss_of(build_logits(spec, "finetune", prefix_input, False, uses_frozen_prefix=True)[0],
                       label_input)
        with tf1.Session() as sess:
            tf1.train.Saver().restore(sess, checkpoint)
            cached_loss = sess.run(loss, {prefix_input: prefix, label_input: labels})
    assert cached_loss == pytest.approx(full_loss, rel=1e-5, abs=1e-6)


def test_training_stops_early_when_validation_stops_improving(patient_build, tmp_path,
                                                              monkeypatch):
    from thyroid.training import loop
    dataset_dir, _ = patient_build
    # A validation score that never improves: the first evaluation (step 1) stays the best.
    monkeypatch.setattr(loop, "validation_score", lambda labels, probs: (0.5, 0.0))
    stopped = tmp_path / "stopped"
    run_training(dataset_dir, stopped, "small_cnn", "scratch", max_number_of_steps=20,
                 eval_every_n_steps=1, keep_best_checkpoint=True, early_stopping_patience=2)
    assert saved_steps(stopped)[-1] == 3
    assert loop.read_best(str(stopped))["step"] == 1
    # Resumed with more steps allowed, it stays stopped: the same patience is already used up.
    resumed = run_training(dataset_dir, stopped, "small_cnn", "scratch", max_number_of_steps=40,
                           eval_every_n_steps=1, keep_best_checkpoint=True,
                           early_stopping_patience=2)
    assert resumed.steps == 3
    full = tmp_path / "full"
    run_training(dataset_dir, full, "small_cnn", "scratch", max_number_of_steps=6,
                 eval_every_n_steps=1, keep_best_checkpoint=True, early_stopping_patience=0)
    assert saved_steps(full)[-1] == 6


def test_padded_last_feature_batch_gives_the_unpadded_outputs():
    spec = get_network("efficientnet_lite0")
    images = np.random.RandomState(0).randint(0, 256, (6, 64, 64, 3)).astype(np.uint8)
    output = "bottleneck"
    # Batches of 4: the last one (2 images) is padded to 4 inside the frozen network.
    padded = features.compute_activations(spec, images, output, None, batch_size=4)
    whole = features.compute_activations(spec, images, output, None, batch_size=6)
    assert padded.shape == whole.shape and padded.shape[0] == 6
    np.testing.assert_allclose(padded, whole, rtol=1e-4, atol=1e-5)


def test_fine_tuning_penalises_only_the_layers_it_trains():
    from thyroid.training.loop import regularization_losses_in
    spec = get_network("efficientnet_lite0")
    with tf.Graph().as_default():
        build_logits(spec, "finetune", tf1.placeholder(tf.uint8, [None, 64, 64, 3]), False)
        every = [p.op.name for p in tf1.losses.get_regularization_losses()]
        trained = [p.op.name for p in regularization_losses_in(spec.trainable_scopes)]
    assert trained and len(trained) < len(every)
    assert all(any(n.startswith(s) for s in spec.trainable_scopes) for n in trained)
    assert sorted(trained) == sorted(n for n in every
                                     if any(n.startswith(s) for s in spec.trainable_scopes))
    assert any(n.startswith("efficientnet_lite0/stem/") for n in every)


def test_one_stream_over_the_splits_gives_each_split_its_own_values(patient_build, tmp_path):
    """The frozen pass batches the splits' images together; slicing back must give every
    split exactly the values of its own images, in its own order."""
    from thyroid.datasets import shards
    from thyroid.preprocessing.resize import resize_batch
    dataset_dir, _ = patient_build
    spec = get_network("efficientnet_lite0")
    for split in shards.SPLITS:
        cached = features.load_or_compute(spec, str(dataset_dir), split,
                                          frozen_network.BOTTLENECK, None, 32, str(tmp_path),
                                          batch_size=4)
        images = resize_batch(shards.load_split(str(dataset_dir), split).images, 32)
        direct = features.compute_activations(spec, images, frozen_network.BOTTLENECK, None,
                                              batch_size=4)
        assert cached.reused == (split != shards.SPLITS[0])
        assert cached.values.shape == direct.shape and len(direct) > 0
        np.testing.assert_allclose(cached.values, direct, rtol=1e-4, atol=1e-5)


def save_pretrained_lite0(tmp_path):
    """A stand-in for the converted ImageNet checkpoint: random EfficientNet-Lite0 weights."""
    pretrained = str(tmp_path / "pretrained" / "model.ckpt")
    with tf.Graph().as_default():
        tf1.set_random_seed(2)
        get_network("efficientnet_lite0").features(tf1.placeholder(tf.float32, [None, 64, 64, 3]))
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            tf1.train.Saver().save(sess, pretrained)
    return pretrained


def test_frozen_pass_from_a_checkpoint_holds_no_variables_and_gives_the_restored_values(tmp_path):
    from thyroid.restore import build_restore_fn
    spec = get_network("efficientnet_lite0")
    pretrained = save_pretrained_lite0(tmp_path)
    images = np.random.RandomState(0).randint(0, 256, (5, 64, 64, 3)).astype(np.uint8)
    network = frozen_network.FrozenNetwork(spec, 64, (frozen_network.BOTTLENECK,), pretrained)
    try:
        frozen = network.run([images], len(images), "test")[frozen_network.BOTTLENECK]
        assert network.graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES) == []
    finally:
        network.close()
    with tf.Graph().as_default():  # the ordinary way: variables, restored by a Saver
        image_input = tf1.placeholder(tf.uint8, [None, 64, 64, 3])
        values = spec.features(spec.preprocess(tf.cast(image_input, tf.float32)))[0]
        with tf1.Session() as sess:
            build_restore_fn(pretrained)(sess)
            restored = sess.run(values, {image_input: images})
    np.testing.assert_allclose(frozen, restored, rtol=1e-5, atol=1e-6)


def test_a_run_trained_on_the_cached_prefix_holds_the_whole_network(patient_build, tmp_path):
    """Fine-tuning on the cached frozen prefix saves the frozen layers too, so the whole network
    (export, prediction on new images) gives the probabilities the cached path gives."""
    from thyroid.datasets import shards
    from thyroid.deploy.export import tf_probabilities
    from thyroid.training.scoring import predict_splits
    from thyroid.preprocessing.resize import resize_batch
    dataset_dir, _ = patient_build
    pretrained = save_pretrained_lite0(tmp_path)
    train_dir = tmp_path / "run"
    result = run_training(dataset_dir, train_dir, "efficientnet_lite0", "finetune",
                          checkpoint_path=pretrained, allow_random_init=False)
    assert result.config.uses_frozen_prefix
    [(inputs, cached_probs)] = predict_splits(str(train_dir), ("test",))
    images = resize_batch(shards.load_split(str(dataset_dir), "test").images, 64)
    whole_probs = tf_probabilities(str(train_dir), images)
    assert len(whole_probs) == len(inputs.labels) > 0
    np.testing.assert_allclose(whole_probs, cached_probs, rtol=1e-4, atol=1e-5)


def test_random_frozen_layers_are_not_cached(patient_build, tmp_path):
    dataset_dir, _ = patient_build
    result = run_training(dataset_dir, tmp_path / "run", "efficientnet_lite0", "finetune")
    assert "random init" in result.checkpoint_description
    assert not result.config.uses_frozen_prefix


def test_a_run_saved_without_its_frozen_layers_resumes_with_them(patient_build, tmp_path):
    """Checkpoints of prefix-cache runs made before the frozen layers were kept lack them;
    resuming such a run takes them from the pretrained checkpoint."""
    dataset_dir, _ = patient_build
    spec = get_network("efficientnet_lite0")
    pretrained = save_pretrained_lite0(tmp_path)
    train_dir = tmp_path / "run"
    run_training(dataset_dir, train_dir, "efficientnet_lite0", "finetune", checkpoint_path=pretrained,
                 allow_random_init=False, max_number_of_steps=2)
    latest = tf.train.latest_checkpoint(str(train_dir))
    reader = tf.train.load_checkpoint(latest)
    names = list(reader.get_variable_to_shape_map())
    frozen = [n for n in names if n.startswith(spec.scope + "/")
              and not any(n.startswith(scope) for scope in spec.trainable_scopes)]
    assert "efficientnet_lite0/stem/weights" in frozen
    with tf.Graph().as_default():  # the checkpoint as such a run wrote it
        kept = [tf1.Variable(reader.get_tensor(n), name=n) for n in names if n not in frozen]
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            tf1.train.Saver(kept).save(sess, latest)
    assert "efficientnet_lite0/stem/weights" not in tf.train.load_checkpoint(latest).get_variable_to_shape_map()
    run_training(dataset_dir, train_dir, "efficientnet_lite0", "finetune", checkpoint_path=pretrained,
                 allow_random_init=False, max_number_of_steps=4)
    assert saved_steps(train_dir)[-1] == 4
    resumed = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(train_dir)))
    original = tf.train.load_checkpoint(pretrained)
    for name in frozen:
        np.testing.assert_array_equal(resumed.get_tensor(name), original.get_tensor(name))
