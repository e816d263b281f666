"""Grad-CAM heat maps from the TF model an exported TFLite file was converted from.

The graph of ``train_dir`` is rebuilt (the same ``build_probability_graph`` as the export) and
kept in one session. The feature map is the backbone's last spatial end point, the one
feeding the global average pool (EfficientNet-Lite0 ``conv_head``, MobileNet-v1
``Conv2d_13_pointwise``). Heat = ReLU(sum_k w_k A_k) with w_k the spatial mean of
d(malignant logit)/dA_k, scaled to [0, 1] by its maximum, upsampled bilinearly to the crop and
drawn with a colour map over the input image.
"""

import io
import threading

import numpy as np
from PIL import Image

ALPHA = 0.45


def last_spatial_end_point(end_points):
    """(name, tensor) of the last 4-D end point that is not a pooling output."""
    candidates = [(name, tensor) for name, tensor in end_points.items()
                  if tensor.shape.ndims == 4 and "pool" not in name.lower()]
    if not candidates:
        raise ValueError("the backbone exposes no spatial end point for Grad-CAM")
    return candidates[-1]


class GradCam:
    """Computes Grad-CAM maps for prepared (resized) images of one training directory."""

    def __init__(self, train_dir):
        from thyroid.compat import tf, tf1
        from thyroid.deploy.export import build_probability_graph, load_run, restore_session
        config, spec, checkpoint = load_run(train_dir)
        self.train_dir = train_dir
        self.image_size = config.image_size
        self._graph = tf.Graph()
        with self._graph.as_default():
            handles = build_probability_graph(spec, config.image_size, batch_size=1)
            self.layer_name, feature_map = last_spatial_end_point(handles.end_points)
            malignant_logit = handles.logits[:, 1]
            gradient = tf.gradients(malignant_logit, feature_map)[0]
            weights = tf.reduce_mean(gradient, axis=[1, 2], keepdims=True)
            self._cam = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1))[0]
            self._probability = handles.probability[0]
            self._inputs = handles.inputs
            self._session = tf1.Session(graph=self._graph)
            restore_session(self._session, checkpoint)
        self._lock = threading.Lock()

    def compute(self, net_input):
        """uint8 [S, S, 3] -> (heat [h, w] in [0, 1] at feature-map resolution, P(malignant))."""
        feed = {self._inputs: np.asarray(net_input, np.float32)[None]}
        with self._lock:
            cam, probability = self._session.run([self._cam, self._probability], feed)
        peak = float(cam.max())
        heat = cam / peak if peak > 0 else np.zeros_like(cam)
        return heat.astype(np.float32), float(probability)

    def close(self):
        self._session.close()


def colormap(values):
    """[0, 1] -> uint8 RGB, a 'jet'-like map (blue -> cyan -> yellow -> red)."""
    v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
    red = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0.0, 1.0)
    green = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0.0, 1.0)
    blue = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0.0, 1.0)
    return (np.stack([red, green, blue], axis=-1) * 255.0).round().astype(np.uint8)


def overlay(rgb, heat, box, alpha=ALPHA):
    """Draws ``heat`` (any resolution) over ``rgb`` inside ``box`` = (top, bottom, left, right).

    Outside the box (the parts the crop removed) the image is dimmed. Returns uint8 HxWx3 of
    the input's size.
    """
    rgb = np.asarray(rgb, np.uint8)
    top, bottom, left, right = box
    out = (rgb.astype(np.float32) * 0.6).round()
    height, width = bottom - top, right - left
    heat_image = Image.fromarray(np.ascontiguousarray(heat, np.float32)).resize(
        (width, height), Image.BILINEAR)
    colours = colormap(np.asarray(heat_image)).astype(np.float32)
    region = rgb[top:bottom, left:right].astype(np.float32)
    out[top:bottom, left:right] = (1.0 - alpha) * region + alpha * colours
    return np.clip(out, 0, 255).astype(np.uint8)


def png_bytes(rgb):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
