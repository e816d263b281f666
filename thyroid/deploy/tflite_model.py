"""Loading an exported model (model.tflite + metadata.json) and predicting one image.

    model = TFLiteModel.load("OUT")            # or "OUT/model.tflite"
    result = model.predict(rgb)                # rgb: uint8 HxWx3, the whole ultrasound frame
    result.probability, result.label_name

The image goes through the training pipeline's preprocessing: the crop recorded in
metadata.json (``thyroid.datasets.images.crop``), then ``resize_square``. The interpreter is
not thread-safe, so calls are serialised with a lock.
"""

import dataclasses
import os
import threading
import warnings

import numpy as np

from thyroid import LABEL_NAMES
from thyroid.datasets import images as image_io
from thyroid.io_utils import read_json
from thyroid.preprocessing.resize import resize_square

MODEL_FILE = "model.tflite"
METADATA_FILE = "metadata.json"
MAX_PIXELS = image_io.DEFAULT_MAX_PIXELS  # refuse decompression bombs


class ModelError(Exception):
    """The model folder is incomplete or unreadable."""


def make_interpreter(model_path=None, model_content=None):
    """A TFLite interpreter: LiteRT when installed, else tf.lite (deprecated but shipped)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from thyroid.compat import tf
        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_path=model_path, model_content=model_content,
                                  num_threads=2)
    interpreter.allocate_tensors()
    return interpreter


def resolve_model_paths(model):
    """'OUT' or 'OUT/model.tflite' -> (model.tflite path, metadata.json path)."""
    if os.path.isdir(model):
        model_path = os.path.join(model, MODEL_FILE)
    else:
        model_path = model
    metadata_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), METADATA_FILE)
    if not os.path.isfile(model_path):
        raise ModelError(f"{model_path}: no such model file (run python -m thyroid.export)")
    if not os.path.isfile(metadata_path):
        raise ModelError(f"{metadata_path}: missing; it is written by python -m thyroid.export "
                         "next to model.tflite")
    return model_path, metadata_path


def load_image_file(path, max_pixels=image_io.DEFAULT_MAX_PIXELS):
    """Reads an image file as uint8 HxWx3 or raises image_io.ImageError with the reason."""
    if not os.path.exists(path):
        raise image_io.ImageError("no such file")
    if os.path.isdir(path):
        raise image_io.ImageError("a folder with no image files")
    try:
        return image_io.load_image(path, max_pixels)
    except OSError as error:
        raise image_io.ImageError(f"cannot read: {error.strerror or error}") from error


def crop_box(rgb, crop):
    """(top, bottom, left, right) the prediction crop keeps. 'roi' needs polygons, which a new
    image lacks, so it falls back to the scan crop as thyroid.datasets.images.crop_roi does."""
    height, width = rgb.shape[:2]
    if crop in ("scan", "roi"):
        return tuple(int(v) for v in image_io.find_scan_box(rgb))
    if crop == "none":
        return (0, height, 0, width)
    raise ModelError(f"unknown crop {crop!r} in metadata.json")


@dataclasses.dataclass
class Prepared:
    """An image ready for the network: ``net_input`` uint8 [S, S, 3] and where it came from."""
    rgb: np.ndarray
    box: tuple
    net_input: np.ndarray


@dataclasses.dataclass
class Prediction:
    probability: float
    label: int
    label_name: str
    threshold: float

    def as_dict(self):
        return dataclasses.asdict(self)


class TFLiteModel:
    def __init__(self, model_path, metadata):
        self.model_path = model_path
        self.metadata = metadata
        self.image_size = int(metadata["input"]["size"])
        self.threshold = float(metadata.get("threshold", 0.5))
        self.crop = metadata.get("crop", "scan")
        self.labels = tuple(metadata.get("labels") or LABEL_NAMES)
        self._interpreter = make_interpreter(model_path=model_path)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model):
        model_path, metadata_path = resolve_model_paths(model)
        try:
            metadata = read_json(metadata_path)
        except (OSError, ValueError) as error:
            raise ModelError(f"{metadata_path}: unreadable ({error})") from error
        return cls(model_path, metadata)

    @property
    def model_dir(self):
        return os.path.dirname(os.path.abspath(self.model_path))

    def prepare(self, rgb):
        """Whole frame -> the crop recorded at export, resized to the model's input size."""
        box = crop_box(rgb, self.crop)
        top, bottom, left, right = box
        cropped = rgb[top:bottom, left:right]
        return Prepared(rgb=rgb, box=box, net_input=resize_square(cropped, self.image_size))

    def probabilities(self, net_inputs):
        """P(malignant) for already prepared uint8 (or float 0..255) inputs [N, S, S, 3]."""
        out = np.zeros([len(net_inputs)], np.float32)
        dtype = self._input["dtype"]
        scale, zero_point = self._input["quantization"]
        for i, image in enumerate(net_inputs):
            values = np.asarray(image, np.float32)[None]
            if dtype in (np.uint8, np.int8):
                info = np.iinfo(dtype)
                values = np.clip(np.round(values / scale) + zero_point, info.min, info.max)
            with self._lock:
                self._interpreter.set_tensor(self._input["index"], values.astype(dtype))
                self._interpreter.invoke()
                result = self._interpreter.get_tensor(self._output["index"])
            out[i] = float(np.asarray(result).reshape(-1)[0])
        return out

    def decide(self, probability):
        probability = float(probability)
        label = int(probability >= self.threshold)
        return Prediction(probability=probability, label=label, label_name=self.labels[label],
                          threshold=self.threshold)

    def predict_prepared(self, prepared):
        return self.decide(self.probabilities(prepared.net_input[None])[0])

    def predict(self, rgb):
        return self.predict_prepared(self.prepare(rgb))
