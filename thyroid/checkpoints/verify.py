"""Restores a network with its ImageNet classifier and reports top-5 classes for
scikit-learn's bundled sample images (china.jpg, flower.jpg)."""

import os

import numpy as np

from thyroid.compat import tf, tf1
from thyroid.nets import get_network
from thyroid.checkpoints.locate import require_checkpoint
from thyroid.preprocessing.resize import resize_square
from thyroid.restore import build_restore_fn

SAMPLE_IMAGES = ("china.jpg", "flower.jpg")


def sample_image_path(name):
    import sklearn.datasets
    return os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", name)


def load_sample_images(names=SAMPLE_IMAGES):
    from PIL import Image
    images = {}
    for name in names:
        with Image.open(sample_image_path(name)) as image:
            images[name] = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return images


def imagenet_top_k(model, checkpoint_path=None, images=None, k=5, checkpoint_dir="checkpoints"):
    """-> {image name: [[class_index, probability], ...]} best first, class indices in the
    1000-class ImageNet convention (minus ``imagenet_label_offset``)."""
    spec = get_network(model)
    if spec.imagenet_logits is None:
        raise ValueError("%s has no ImageNet classifier to verify" % model)
    if checkpoint_path is None:
        checkpoint_path = require_checkpoint(model, checkpoint_dir)
    if images is None:
        images = load_sample_images()
    names = list(images)
    size = spec.default_image_size
    batch = np.stack([resize_square(images[n], size) for n in names]).astype(np.float32)
    with tf.Graph().as_default():
        inputs = tf1.placeholder(tf.float32, [None, size, size, 3])
        logits, _ = spec.imagenet_logits(spec.preprocess(inputs))
        probabilities = tf.nn.softmax(logits)
        restore = build_restore_fn(checkpoint_path)
        with tf1.Session() as sess:
            restore(sess)
            probs = sess.run(probabilities, {inputs: batch})
    result = {}
    for name, row in zip(names, probs):
        order = np.argsort(-row)[:k]
        result[name] = [[int(i) - spec.imagenet_label_offset, float(row[i])] for i in order]
    return result
