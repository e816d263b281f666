"""The segmentation network beside the classifier: its TFLite export and its use at
prediction time.

``export_segmentation(segment_dir, output_dir)`` writes ``segment.tflite`` (input float32
[1, S, S, 3] with values 0..255, the resized crop; output ``nodule_probability`` [1, S, S])
and ``segment.json`` next to an export's ``model.tflite``. ``TFLiteSegmenter.load(folder)``
reads them back; ``locate(rgb, spacing_mm)`` answers with the nodule's outline in pixels of the
input image, its box and its measurements (in millimetres too when the pixel spacing is known).
Nothing found: no outline, and a note saying that the scan field stands for the nodule.
"""

import datetime
import os
import threading

import numpy as np
from absl import logging

from thyroid.datasets import images as image_io
from thyroid.io_utils import atomic_write_bytes, atomic_write_json, read_json
from thyroid.preprocessing import outline
from thyroid.preprocessing.resize import resize_square

# TensorFlow and the training code load only for an export: ``predict`` parses its flags first.

SEGMENT_MODEL_FILE = "segment.tflite"
SEGMENT_METADATA_FILE = "segment.json"
INPUT_NAME = "image"
OUTPUT_NAME = "nodule_probability"
METADATA_FORMAT = 1
NOTHING_FOUND = "no nodule found: the scan field stands for the nodule"


class SegmentExportError(Exception):
    """The segmentation model cannot be exported (missing, incomplete, encoder changed)."""


def _tflite_bytes(model):
    """Converts encoder (restored from its ImageNet checkpoint) + decoder (constants)."""
    from thyroid.compat import tf, tf1
    from thyroid.nets.segmentation import full_size_logits
    from thyroid.restore import build_restore_fn
    from thyroid.training import segmentation
    size = model.config.image_size
    with tf.Graph().as_default():
        inputs = tf1.placeholder(tf.float32, [1, size, size, 3], name=INPUT_NAME)
        with tf1.variable_scope("", custom_getter=segmentation.constant_getter(model.weights)):
            logits = full_size_logits(model.spec, inputs, size)
        probability = tf.identity(tf.sigmoid(logits), name=OUTPUT_NAME)
        with tf1.Session() as session:
            build_restore_fn(model.config.checkpoint_path, exclude_scopes=(),
                             var_list=tf1.global_variables())(session)
            converter = tf1.lite.TFLiteConverter.from_session(session, [inputs], [probability])
            return converter.convert()


def export_segmentation(segment_dir, output_dir):
    """Writes segment.tflite, then segment.json (last: a complete export) into ``output_dir``,
    beside the classifier; -> the model's path."""
    from thyroid.training import segmentation
    try:
        model = segmentation.load_model(segment_dir)
    except ValueError as error:
        raise SegmentExportError(str(error)) from error
    data = _tflite_bytes(model)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, SEGMENT_MODEL_FILE)
    atomic_write_bytes(path, data)
    atomic_write_json(os.path.join(output_dir, SEGMENT_METADATA_FILE), {
        "format": METADATA_FORMAT, "network": model.config.network,
        "input": {"name": INPUT_NAME, "shape": [1, model.config.image_size,
                                                model.config.image_size, 3],
                  "size": model.config.image_size, "range": [0, 255]},
        "output": {"name": OUTPUT_NAME, "meaning": "P(nodule) per pixel of the resized crop"},
        "crop": model.crop, "threshold": segmentation.THRESHOLD,
        "segment_dir": model.directory, "trained_on": model.info.get("trained_on"),
        "encoder_checkpoint": model.config.checkpoint_path,
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    logging.info("exported the segmentation %s (%d bytes) -> %s", segment_dir, len(data), path)
    return path


def _rounded(polygon):
    return [[round(float(x), 1), round(float(y), 1)] for x, y in polygon]


def _rounded_values(values):
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in values.items()}


class TFLiteSegmenter:
    """segment.tflite + segment.json of an export folder, run on whole frames."""

    def __init__(self, model_path, metadata):
        from thyroid.deploy.tflite_model import make_interpreter
        self.model_path, self.metadata = model_path, metadata
        self.image_size = int(metadata["input"]["size"])
        self.crop = metadata.get("crop", "scan")
        self.threshold = float(metadata["threshold"])
        self._interpreter = make_interpreter(model_path=model_path)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._lock = threading.Lock()  # the interpreter is not thread-safe

    @classmethod
    def beside(cls, folder):
        """The segmenter exported into ``folder``, or None when there is none."""
        model_path = os.path.join(folder, SEGMENT_MODEL_FILE)
        metadata_path = os.path.join(folder, SEGMENT_METADATA_FILE)
        if not (os.path.isfile(model_path) and os.path.isfile(metadata_path)):
            return None
        return cls(model_path, read_json(metadata_path))

    def crop_box(self, rgb):
        height, width = rgb.shape[:2]
        if self.crop == "scan":
            return tuple(int(v) for v in image_io.find_scan_box(rgb))
        return (0, height, 0, width)

    def probabilities(self, net_input):
        """P(nodule) [S, S] of one resized crop (uint8 [S, S, 3])."""
        values = np.asarray(net_input, np.float32)[None]
        with self._lock:
            self._interpreter.set_tensor(self._input["index"], values)
            self._interpreter.invoke()
            return np.array(self._interpreter.get_tensor(self._output["index"])[0])

    def locate(self, rgb, box=None, spacing_mm=None):
        """The nodule in a whole frame: outline(s) in its pixels, box, measurements."""
        top, bottom, left, right = box or self.crop_box(rgb)
        crop = rgb[top:bottom, left:right]
        probabilities = self.probabilities(resize_square(crop, self.image_size))
        mask = outline.resize_probabilities(probabilities, *crop.shape[:2]) >= self.threshold
        found, labelled = outline.regions(mask)
        kept = outline.kept_regions(found)
        if not kept:
            return {"outline": None, "outlines": [], "nodule_box": None, "measurements": None,
                    "nodule_found": False, "outline_note": NOTHING_FOUND}
        polygons = outline.shift([outline.trace(labelled == r.label) for r in kept], left, top)
        x0, y0, x1, y1 = outline.box_of_regions(found)
        measurements = outline.measure(polygons[0], spacing_mm)
        return {"outline": _rounded(polygons[0]), "outlines": [_rounded(p) for p in polygons],
                "nodule_box": [x0 + left, y0 + top, x1 + left, y1 + top],
                "measurements": _rounded_values(measurements), "nodule_found": True,
                "outline_note": None if spacing_mm else "measurements in pixels (no usable "
                                                         "pixel spacing in the image)"}
