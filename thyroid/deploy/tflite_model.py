"""Loading an exported model (model.tflite + metadata.json) and predicting one image.

    model = TFLiteModel.load("OUT")            # or "OUT/model.tflite"
    result = model.predict(rgb)                # rgb: uint8 HxWx3, the whole ultrasound frame
    result.probability, result.risk, result.label_name

The image goes through the training pipeline's preprocessing: the crop recorded in
metadata.json (``thyroid.datasets.images.crop``), then ``resize_square``. ``probability`` is
the model's own P(malignant) and decides the label at metadata.json's threshold; ``risk`` is
it through the recalibration map metadata.json carries (the identity for an export without
one). A fold ensemble (metadata ``ensemble``: one model with an output per fold, or one file
per fold) gives the mean of its fold probabilities, the mean of their risks (each through its
fold's map) and ``spread``, the SD of those risks. An export that carries a shift reference
(metadata.json ``shift``, ``shift_reference.npz``) adds ``shift``, how far the image's
``features`` output lies from the development images' (percent, ``stats.shift``), and
``unusual`` (shift above 99); without one both are None. ``explain_prepared`` adds the heat map the
model draws itself (output ``cam``, Grad-CAM of its head: ``deploy.head_cam``); no TensorFlow
is needed. An export adapted to a site (metadata.json ``adaptation``, written by ``python -m
thyroid.adapt``) answers through its adaptation (``deploy.adapted_head``): its recalibration
map, and its own head and heat map where it chose a new head; every caller sees the same
``outputs``. Interpreters are not thread-safe, so calls are serialised with a lock.
"""

import dataclasses
import os
import threading
import warnings

import numpy as np

from thyroid import LABEL_NAMES
from thyroid.datasets import images as image_io
from thyroid.deploy.adapted_head import AdaptationError, SiteAdaptation
from thyroid.io_utils import read_json
from thyroid.preprocessing.resize import resize_square
from thyroid.stats import shift
from thyroid.stats.recalibration import RecalibrationMap

MODEL_FILE = "model.tflite"
METADATA_FILE = "metadata.json"
CARD_FILE = "MODEL_CARD.md"
# The exported model's outputs, by name (metadata.json ``outputs`` describes them).
PROBABILITY_OUTPUT = "probability"
ENSEMBLE_OUTPUT = "fold_probabilities"  # a fold ensemble in one file: [1, K]
CAM_OUTPUT = "cam"
FEATURES_OUTPUT = "features"
FEATURE_MAP_OUTPUT = "feature_map"  # [1, h, w, D]: features is its mean over space
# Where ``features`` come from (metadata.json ``features.source``).
FEATURES_FROM_PREFIX = "frozen_prefix"
FEATURES_FROM_HEAD = "head_input"
MAX_PIXELS = image_io.DEFAULT_MAX_PIXELS  # refuse decompression bombs


class ModelError(Exception):
    """The model folder is incomplete or unreadable."""


def _interpreter_class():
    """LiteRT's interpreter (the serving install's); else tf.lite's (deprecated but shipped
    with TensorFlow), for a research install made without it."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError:
        pass
    try:
        from thyroid.compat import tf
    except ImportError:
        raise ModelError("no TFLite interpreter: pip install ai-edge-litert (or pip install .)") \
            from None
    return tf.lite.Interpreter


def make_interpreter(model_path=None, model_content=None):
    """A TFLite interpreter on 2 threads, tensors allocated."""
    Interpreter = _interpreter_class()
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
    if not os.path.isfile(model_path) and not _lists_fold_files(metadata_path):
        raise ModelError(f"{model_path}: no such model file (run python -m thyroid.export)")
    if not os.path.isfile(metadata_path):
        raise ModelError(f"{metadata_path}: missing; it is written by python -m thyroid.export "
                         "next to model.tflite")
    return model_path, metadata_path


def _lists_fold_files(metadata_path):
    """Whether metadata.json describes a fold ensemble exported as one file per fold."""
    try:
        ensemble = read_json(metadata_path).get("ensemble") or {}
    except (OSError, ValueError):
        return False
    return ensemble.get("layout") == "files"


def model_files(model_path, metadata):
    """The TFLite files to run: the fold files of an ensemble exported as files, else one."""
    ensemble = metadata.get("ensemble") or {}
    if ensemble.get("layout") != "files":
        return [model_path]
    folder = os.path.dirname(os.path.abspath(model_path))
    paths = [os.path.join(folder, os.path.basename(name)) for name in ensemble["files"]]
    for path in paths:
        if not os.path.isfile(path):
            raise ModelError(f"{path}: missing; metadata.json lists it as a fold model")
    return paths


def fold_maps(metadata):
    """One recalibration map per fold output (one for a single model)."""
    ensemble = metadata.get("ensemble")
    if ensemble:
        return [RecalibrationMap.from_json(m) for m in ensemble["recalibration"]]
    return [RecalibrationMap.from_json(metadata.get("recalibration"))]


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
    """``probability``: the model's own P(malignant) (a fold ensemble's mean), which decides
    ``label`` at ``threshold``; ``risk``: recalibrated; ``spread``: the SD of a fold ensemble's
    risks (None for one model); ``shift``: how far the image lies from the development images
    (percent, ``stats.shift``) and ``unusual``: shift above 99, both None for an export
    without a shift reference."""
    probability: float
    risk: float
    spread: float | None
    label: int
    label_name: str
    threshold: float
    shift: float | None = None
    unusual: bool | None = None

    def as_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Outputs:
    """What one model file answers for one image: ``probabilities`` [k] (one per fold model it
    holds), ``cam`` [h, w] (None when the file has no ``cam`` output), ``features`` [D] and
    ``feature_map`` [h', w', D] (each None when the file lacks it)."""
    probabilities: np.ndarray
    cam: np.ndarray | None
    features: np.ndarray | None
    feature_map: np.ndarray | None = None


def _output_by_name(details, path):
    """(probability, cam, features, feature_map): output details, None for one the file
    lacks. An export from before the named outputs has one output, the probability."""
    named = {detail["name"]: detail for detail in details}
    probability = named.get(PROBABILITY_OUTPUT) or named.get(ENSEMBLE_OUTPUT)
    if probability is None and len(details) == 1:
        probability = details[0]
    if probability is None:
        raise ModelError(f"{path}: no output named {PROBABILITY_OUTPUT!r} or "
                         f"{ENSEMBLE_OUTPUT!r} (outputs: {', '.join(sorted(named))})")
    return (probability, named.get(CAM_OUTPUT), named.get(FEATURES_OUTPUT),
            named.get(FEATURE_MAP_OUTPUT))


class _Runner:
    """One interpreter, its input quantization and its outputs, read by name."""

    def __init__(self, path):
        self.interpreter = make_interpreter(model_path=path)
        self.input = self.interpreter.get_input_details()[0]
        self.probability, self.cam, self.features, self.feature_map = _output_by_name(
            self.interpreter.get_output_details(), path)

    def _read(self, detail):
        if detail is None:
            return None
        return np.asarray(self.interpreter.get_tensor(detail["index"]), np.float64)

    def run(self, image):
        values = np.asarray(image, np.float32)[None]
        dtype = self.input["dtype"]
        if dtype in (np.uint8, np.int8):
            scale, zero_point = self.input["quantization"]
            info = np.iinfo(dtype)
            values = np.clip(np.round(values / scale) + zero_point, info.min, info.max)
        self.interpreter.set_tensor(self.input["index"], values.astype(dtype))
        self.interpreter.invoke()
        cam, features = self._read(self.cam), self._read(self.features)
        feature_map = self._read(self.feature_map)
        return Outputs(self._read(self.probability).ravel(),
                       None if cam is None else cam.reshape(cam.shape[-2:]),
                       None if features is None else features.ravel(),
                       None if feature_map is None else feature_map.reshape(
                           feature_map.shape[-3:]))


def scaled_to_peak(cam):
    """A map divided by its maximum: [0, 1], all zeros when it has no positive value."""
    cam = np.asarray(cam, np.float64)
    peak = float(cam.max()) if cam.size else 0.0
    return cam / peak if peak > 0 else np.zeros_like(cam)


def combine(outputs):
    """One file's outputs as they are; fold files' (one fold each): their probabilities side by
    side, the mean of their peak-scaled maps, the first fold's features and feature maps (such
    members share no frozen layers, so no features are common to them)."""
    if len(outputs) == 1:
        return outputs[0]
    cams = [o.cam for o in outputs]
    cam = None if any(c is None for c in cams) else np.mean([scaled_to_peak(c) for c in cams],
                                                            axis=0)
    return Outputs(np.concatenate([o.probabilities for o in outputs]), cam, outputs[0].features,
                   outputs[0].feature_map)


def load_shift_reference(model_dir, metadata, features):
    """The export's shift reference (metadata.json ``shift``), or None when it has none; a
    ModelError naming the file when it is missing, unreadable or of another dimension than
    the model's ``features`` output (``features``: that output's detail, or None)."""
    found = metadata.get("shift")
    if not found:
        return None
    path = os.path.join(model_dir, os.path.basename(str(found.get("file") or shift.FILE_NAME)))
    try:
        reference = shift.read_reference(path)
    except shift.ShiftReferenceError as error:
        raise ModelError(f"{error} (metadata.json lists it)") from None
    width = int(np.prod(features["shape"][1:])) if features is not None else None
    if width != reference.dimension:
        raise ModelError(f"{path}: fitted on {reference.dimension} features, but the model's "
                         f"features output has {width}")
    return reference


class TFLiteModel:
    def __init__(self, model_path, metadata):
        self.model_path = model_path
        self.metadata = metadata
        self.image_size = int(metadata["input"]["size"])
        self.threshold = float(metadata.get("threshold", 0.5))
        self.crop = metadata.get("crop", "scan")
        self.labels = tuple(metadata.get("labels") or LABEL_NAMES)
        try:
            self.adaptation = SiteAdaptation.from_metadata(metadata)
        except AdaptationError as error:
            raise ModelError(f"{model_path}: metadata.json adaptation: {error}") from None
        # An adapted export has one score and one map, whatever it was adapted from.
        self.maps = [self.adaptation.recalibration] if self.adaptation else fold_maps(metadata)
        self._runners = [_Runner(path) for path in model_files(model_path, metadata)]
        self.shift_reference = load_shift_reference(self.model_dir, metadata,
                                                    self._runners[0].features)
        self._lock = threading.Lock()
        if self.adaptation and self.adaptation.head and \
                any(runner.features is None for runner in self._runners):
            raise ModelError(f"{model_path}: metadata.json adaptation has a new head but the "
                             f"model has no {FEATURES_OUTPUT!r} output")

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

    @property
    def is_ensemble(self):
        """Whether answers combine fold models (an adapted export answers with one score)."""
        return bool(self.metadata.get("ensemble")) and self.adaptation is None

    def prepare(self, rgb):
        """Whole frame -> the crop recorded at export, resized to the model's input size."""
        box = crop_box(rgb, self.crop)
        top, bottom, left, right = box
        cropped = rgb[top:bottom, left:right]
        return Prepared(rgb=rgb, box=box, net_input=resize_square(cropped, self.image_size))

    @property
    def has_cam(self):
        """Whether the answers carry a heat map: every model file draws its own Grad-CAM map
        (``cam`` output), or, for an adapted export with a new head, gives the feature maps
        that head's map is drawn from."""
        if self.adaptation is not None and self.adaptation.head is not None:
            return self.has_feature_map
        return all(runner.cam is not None for runner in self._runners)

    @property
    def has_feature_map(self):
        """Whether every model file gives the maps its ``features`` pool (``feature_map``)."""
        return all(runner.feature_map is not None for runner in self._runners)

    @property
    def card_path(self):
        """MODEL_CARD.md beside the model, or None when the export has none."""
        path = os.path.join(self.model_dir, CARD_FILE)
        return path if os.path.isfile(path) else None

    def outputs(self, net_input):
        """Every output for one prepared image (uint8 or float 0..255 [S, S, 3]), the fold
        files' combined (``combine``)."""
        with self._lock:
            found = combine([runner.run(net_input) for runner in self._runners])
        if self.adaptation is not None:
            found = self._adapted(found)
        if found.probabilities.size != len(self.maps):
            raise ModelError(f"{self.model_path}: {found.probabilities.size} outputs but "
                             f"{len(self.maps)} recalibration maps in metadata.json")
        return found

    def _adapted(self, found):
        """The adapted export's outputs: its one score and the heat map of its own head."""
        probability, cam = self.adaptation.apply(found.probabilities, found.cam,
                                                 found.features, found.feature_map)
        return Outputs(np.asarray([probability], np.float64), cam, found.features,
                       found.feature_map)

    def fold_probabilities(self, net_inputs):
        """P(malignant) of each fold model [N, K] (K = 1 for one model) for prepared uint8 (or
        float 0..255) inputs [N, S, S, 3]."""
        rows = [self.outputs(image).probabilities for image in net_inputs]
        return np.asarray(rows, np.float64).reshape(len(rows), len(self.maps))

    def probabilities(self, net_inputs):
        """P(malignant) [N] (a fold ensemble's mean) for prepared inputs [N, S, S, 3]."""
        return self.fold_probabilities(net_inputs).mean(axis=1).astype(np.float32)

    def risks(self, fold_probabilities):
        """(risk [N], spread [N] or None) from ``fold_probabilities`` [N, K]."""
        risks = np.stack([m.apply(fold_probabilities[:, k]) for k, m in enumerate(self.maps)],
                         axis=1)
        spread = np.std(risks, axis=1, ddof=1) if risks.shape[1] > 1 else None
        return risks.mean(axis=1), spread

    def decide(self, probability, risk=None, spread=None):
        probability = float(probability)
        label = int(probability >= self.threshold)
        return Prediction(probability=probability,
                          risk=float(probability if risk is None else risk),
                          spread=None if spread is None else float(spread), label=label,
                          label_name=self.labels[label], threshold=self.threshold)

    def prediction(self, found):
        """The Prediction of one image's ``Outputs``, with its shift when the export carries
        a reference."""
        folds = found.probabilities[None]
        risk, spread = self.risks(folds)
        decided = self.decide(float(np.float32(folds.mean())), risk[0],
                              None if spread is None else spread[0])
        if self.shift_reference is not None:
            value = float(self.shift_reference.shift(found.features[None])[0])
            decided.shift, decided.unusual = value, bool(shift.is_unusual(value))
        return decided

    def predict_prepared(self, prepared):
        return self.prediction(self.outputs(prepared.net_input))

    def explain_prepared(self, prepared):
        """(Prediction, heat [h, w] in [0, 1] or None without a ``cam`` output): one run of
        the model gives both."""
        found = self.outputs(prepared.net_input)
        heat = None if found.cam is None else scaled_to_peak(found.cam).astype(np.float32)
        return self.prediction(found), heat

    def predict(self, rgb):
        return self.predict_prepared(self.prepare(rgb))
