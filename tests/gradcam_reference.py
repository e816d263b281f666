"""Grad-CAM computed from a run's checkpoint with TensorFlow's gradients: the reference the map
an export draws itself (``thyroid.deploy.head_cam``, output ``cam``) is checked against.

Serving no longer needs it (the exported model draws its own map); it lives here, beside the
tests that hold the exported map to it. The target is the logit difference (malignant -
benign), whose sigmoid is P(malignant); the weights are the spatial means of its gradient with
respect to the last feature maps, and the map is ReLU of their weighted sum.
"""

import numpy as np


def reference_cams(train_dir, net_inputs, image_size=None, target="difference"):
    """Grad-CAM maps [N, h, w] and P(malignant) [N] of prepared inputs [N, S, S, 3] (0..255)
    from ``train_dir``'s latest checkpoint, rebuilt at ``image_size`` (default: the run's).
    ``target``: ``difference`` (l1 - l0) or ``malignant`` (l1 alone, for comparison)."""
    from thyroid.compat import tf, tf1
    from thyroid.deploy.export import build_probability_graph, load_run, restore_session
    from thyroid.deploy.head_cam import last_feature_map
    config, spec, checkpoint = load_run(train_dir)
    with tf.Graph().as_default():
        handles = build_probability_graph(spec, image_size or config.image_size, batch_size=None)
        _, feature_map = last_feature_map(handles.end_points)
        logits = handles.logits
        objective = logits[:, 1] - logits[:, 0] if target == "difference" else logits[:, 1]
        gradient = tf.gradients(objective, feature_map)[0]
        weights = tf.reduce_mean(gradient, axis=[1, 2], keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1))
        with tf1.Session() as sess:
            restore_session(sess, checkpoint)
            cams, probabilities = sess.run(
                [cam, handles.probability], {handles.inputs: np.asarray(net_inputs, np.float32)})
    return cams, probabilities


def correlation(a, b):
    """Pearson correlation of two arrays' values (flattened)."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(np.corrcoef(a, b)[0, 1])
