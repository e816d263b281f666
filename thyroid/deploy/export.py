"""TFLite export of a fine-tuned classifier (the library behind ``python -m thyroid.export``).

Rebuilds the graph of a ``finetune`` run (input float32 [1, S, S, 3] with values 0..255, i.e.
the resized scan crop), restores the latest checkpoint and converts it with
``TFLiteConverter.from_session``. Outputs, by name: ``probability`` [1] (P(malignant)), ``cam``
[1, h, w] (Grad-CAM of the head at the last feature maps' resolution, ``deploy.head_cam``),
``features`` [1, D] (``features_metadata``: where fine-tuning left a frozen prefix, its output
averaged over space, ``frozen_network.prefix_features_of``, which are the shift score's
features too; else the head's pooled input) and ``feature_map`` [1, h', w', D], the
maps ``features`` is the spatial mean of (a head fitted later on ``features``, such as a
site's adaptation, draws its own Grad-CAM from them: ``deploy.adapted_head``). ``int8``
applies post-training full-integer quantization calibrated on ~100 training images; that
model takes uint8 pixels and still outputs floats. Writes ``model.tflite``, ``labels.txt``,
``MODEL_CARD.md`` (when given the card) and ``metadata.json`` (each atomically; metadata.json
last).
"""

import dataclasses
import datetime
import os
import re

import numpy as np
from absl import logging

from thyroid import LABEL_NAMES
from thyroid.checkpoint_paths import latest_checkpoint
from thyroid.compat import tf, tf1
from thyroid.datasets import label_meaning, shards
from thyroid.output_guard import InputPath, check_output_dir
from thyroid.deploy.answer_wording import THRESHOLD_SOURCE_KEY
from thyroid.deploy.head_cam import head_cam, head_weights, last_feature_map
from thyroid.deploy.tflite_model import (CAM_OUTPUT, CARD_FILE, ENSEMBLE_OUTPUT,
                                         FEATURE_MAP_OUTPUT, FEATURES_FROM_HEAD,
                                         FEATURES_FROM_PREFIX, FEATURES_OUTPUT, METADATA_FILE,
                                         MODEL_FILE, PROBABILITY_OUTPUT, make_interpreter)
from thyroid.stats import shift
from thyroid.stats.recalibration import RecalibrationMap
from thyroid.training.scoring import load_recalibration, metrics_file_name
from thyroid.io_utils import (atomic_write_bytes, atomic_write_json, atomic_write_text,
                              read_json)
from thyroid.nets import get_network
from thyroid.restore import build_restore_fn
from thyroid.training.frozen_network import PREFIX_POOLING, prefix_features_of
from thyroid.training.model import build_logits, malignant_probability
from thyroid.training.run_config import RunConfig

SUPPORTED_MODELS = ("mobilenet_v1", "efficientnet_lite0")
QUANTIZE_MODES = ("none", "int8")
INPUT_NAME = "image"
OUTPUT_NAME = PROBABILITY_OUTPUT
REPRESENTATIVE_COUNT = 100
METADATA_FORMAT = 1
# A fold ensemble exported as one file per fold.
FOLD_FILE_PATTERN = re.compile(r"model_fold\d+\.tflite")


class ExportError(Exception):
    """The train_dir cannot be exported (wrong model or mode, no checkpoint, bad arguments)."""


@dataclasses.dataclass(frozen=True)
class ExportPaths:
    """Where an export wrote. ``layout``: ``single`` (one model), ``one_model`` (a fold
    ensemble in one file) or ``files`` (a fold ensemble as one file per fold; ``model`` is
    then the folder, which ``predict`` and the web app load)."""
    output_dir: str
    model: str
    labels: str
    metadata: str
    layout: str = "single"
    shift_reference: str | None = None  # shift_reference.npz, when the export carries one


@dataclasses.dataclass
class GraphHandles:
    inputs: object       # float32 [batch, S, S, 3], 0..255
    logits: object       # [batch, 2]
    probability: object  # [batch] P(malignant)
    end_points: dict     # the backbone's end points
    cam: object          # [batch, h, w] Grad-CAM of the logit difference (deploy.head_cam)
    features: object     # [batch, D] pooled features (``features_source`` says which)
    feature_map: object  # [batch, h, w, D]: ``features`` is its mean over space

    def outputs(self):
        """The exported outputs, in the order metadata.json lists them."""
        return [self.probability, self.cam, self.features, self.feature_map]


def load_run(train_dir):
    """-> (RunConfig, NetworkSpec, checkpoint prefix) of an exportable training directory."""
    config = RunConfig.load(train_dir)
    if config.model not in SUPPORTED_MODELS:
        raise ExportError(f"{train_dir}: model {config.model!r} cannot be exported; "
                          f"supported: {', '.join(SUPPORTED_MODELS)}")
    if config.mode != "finetune":
        raise ExportError(f"{train_dir}: mode {config.mode!r} cannot be exported; "
                          "only 'finetune' runs map an image to a probability")
    checkpoint = latest_checkpoint(train_dir)
    if checkpoint is None:
        raise ExportError(f"{train_dir}: no trained checkpoint (checkpoint file missing)")
    return config, get_network(config.model), checkpoint


def freezes_prefix(spec, config):
    """Whether fine-tuning left the network's frozen prefix as it started (it trained only
    its default trainable scopes or fewer): the prefix's pooled output is then the export's
    ``features``, the same for every run that started from the same weights."""
    return (spec.frozen_prefix is not None and config.mode == "finetune"
            and set(config.trainable_scopes) <= set(spec.trainable_scopes))


def features_metadata(spec, config):
    """metadata.json's ``features``: which layer the exported ``features`` pool."""
    if freezes_prefix(spec, config):
        return {"source": FEATURES_FROM_PREFIX, "layer": spec.frozen_prefix_end_point,
                "pooling": PREFIX_POOLING, "image_size": int(config.image_size),
                "weights": config.checkpoint_description or "the run's starting weights",
                "meaning": "mean over space of the frozen prefix's output: layers fine-tuning "
                           "never changes; the shift score's features"}
    return {"source": FEATURES_FROM_HEAD, "layer": spec.bottleneck_endpoint,
            "weights": "fine-tuned",
            "meaning": "the pooled features the classifier head reads (this network has no "
                       "frozen prefix, or the run trained layers below it)"}


def build_probability_graph(spec, image_size, batch_size=1, prefix_features=False):
    """Builds image (0..255) -> P(malignant), its Grad-CAM map and pooled features in the
    default graph, in inference mode. ``prefix_features``: the network as frozen prefix + the
    trained rest (the variables and arithmetic of the whole network), with the prefix's output
    averaged over space (``frozen_network.prefix_features_of``, the shift score's features) as
    ``features``; otherwise the features are the head's pooled input."""
    inputs = tf1.placeholder(tf.float32, [batch_size, image_size, image_size, 3], name=INPUT_NAME)
    if prefix_features:
        prefix = spec.frozen_prefix(spec.preprocess(inputs))
        logits, end_points = build_logits(spec, "finetune", prefix, is_training=False,
                                          uses_frozen_prefix=True)
        features, pooled_map = prefix_features_of(prefix), prefix
    else:
        logits, end_points = build_logits(spec, "finetune", inputs, is_training=False,
                                          uses_frozen_prefix=False)
        # The head's input is the spatial mean of the last feature maps (global_pool).
        features, pooled_map = end_points[spec.bottleneck_endpoint], None
    probability = tf.identity(malignant_probability(logits), name=OUTPUT_NAME)
    _, feature_map = last_feature_map(end_points)
    cam = head_cam(feature_map, end_points[spec.bottleneck_endpoint],
                   head_weights(spec.head_scope))
    return GraphHandles(inputs, logits, probability, end_points, tf.identity(cam, name=CAM_OUTPUT),
                        tf.identity(features, name=FEATURES_OUTPUT),
                        tf.identity(feature_map if pooled_map is None else pooled_map,
                                    name=FEATURE_MAP_OUTPUT))


def restore_session(sess, checkpoint):
    """Restores every variable of the current graph from ``checkpoint`` (errors if one is missing)."""
    build_restore_fn(checkpoint, exclude_scopes=(), var_list=tf1.global_variables())(sess)


def tf_probabilities(train_dir, images, batch_size=16):
    """P(malignant) from the TF graph of ``train_dir`` for uint8/float images [N, S, S, 3]."""
    config, spec, checkpoint = load_run(train_dir)
    images = np.asarray(images, np.float32)
    with tf.Graph().as_default():
        handles = build_probability_graph(spec, config.image_size, batch_size=None)
        with tf1.Session() as sess:
            restore_session(sess, checkpoint)
            out = [sess.run(handles.probability, {handles.inputs: images[i:i + batch_size]})
                   for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros([0], np.float32)


def representative_images(dataset_dir, image_size, count=REPRESENTATIVE_COUNT, seed=0):
    """Up to ``count`` training images (already scan-cropped by build_tfrecords), resized.
    The split is streamed and only the chosen records decoded, however large it is."""
    from thyroid.preprocessing.resize import resize_square
    total = len(shards.load_split_metadata(dataset_dir, "train"))
    if total == 0:
        raise ExportError(f"{dataset_dir}: no training images to calibrate int8 quantization")
    order = np.random.RandomState(seed).permutation(total)[:count]
    rank = {int(index): position for position, index in enumerate(order)}
    chosen = [None] * len(order)
    for index, record in enumerate(shards.iter_split(dataset_dir, "train")):
        if index in rank:
            chosen[rank[index]] = resize_square(shards.decode_image(record.encoded), image_size)
    return np.stack(chosen)


def convert_session(sess, inputs, outputs, quantize="none", calibration=None):
    """TFLite bytes of ``inputs`` -> ``outputs`` (tensors of ``sess``'s graph), their names
    kept as the model's output names."""
    converter = tf1.lite.TFLiteConverter.from_session(sess, [inputs], list(outputs))
    if quantize == "int8":
        def representative_dataset():
            for image in calibration:
                yield [image[None].astype(np.float32)]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32
    return converter.convert()


def _dataset_info(dataset_dir):
    info = {"dataset_dir": dataset_dir, "protocol": None, "splits": None, "crop": None}
    path = os.path.join(dataset_dir, "manifest.json")
    if not os.path.exists(path):
        logging.warning("%s not found; metadata.json will not describe the data", path)
        return info
    manifest = read_json(path)
    info["protocol"] = manifest.get("protocol")
    info["crop"] = manifest.get("crop")
    info["sources"] = sorted(manifest.get("sources") or {})
    splits = manifest.get("splits")
    if isinstance(splits, dict):
        info["splits"] = {name: {k: v for k, v in summary.items()
                                 if k in ("images", "patients", "original", "total")}
                          if isinstance(summary, dict) else summary
                          for name, summary in splits.items()}
    if manifest.get("warning"):
        info["warning"] = manifest["warning"]
    info["source_counts"] = _sources_info(manifest.get("sources"))
    return info


def _sources_info(sources):
    """Each source's kind, folder and labelled counts, as the build's manifest records them."""
    if not isinstance(sources, dict):
        return None
    keys = ("path", "cases", "labelled_cases", "images", "labelled_images", "excluded_cases")
    return {kind: {k: entry.get(k) for k in keys} for kind, entry in sorted(sources.items())
            if isinstance(entry, dict)}


def _test_metrics(train_dir, config):
    """The test split's metrics and the file they came from: only the run's own test split,
    never another split's or another dataset's."""
    path = os.path.join(train_dir, metrics_file_name("test"))
    if not os.path.exists(path):
        logging.warning("%s not found; metadata.json will carry no test metrics", path)
        return None
    try:
        values = read_json(path)
    except (OSError, ValueError) as error:
        logging.warning("cannot read %s: %s", path, error)
        return None
    if values.get("split", "test") != "test":
        logging.warning("%s holds %s metrics, not test; left out", path, values.get("split"))
        return None
    problem = _foreign_dataset(values, config)
    if problem:
        logging.warning("%s %s; left out of metadata.json", path, problem)
        return None
    return {"file": os.path.basename(path), "values": values}


def _foreign_dataset(values, config):
    """Why the metrics are not of the run's own test split ('' when they are)."""
    if not values.get("dataset_fingerprint"):
        return "does not say which dataset it scored"
    if os.path.realpath(values.get("dataset_dir", "")) != os.path.realpath(config.dataset_dir):
        return f"scored {values.get('dataset_dir')}, not the run's {config.dataset_dir}"
    try:
        current = shards.split_fingerprint(config.dataset_dir, "test")
    except (OSError, ValueError) as error:
        return f"cannot be checked against the run's dataset ({error})"
    if current != values["dataset_fingerprint"]:
        return "scored a test split whose shards have changed since"
    return ""


def preprocessing_description(spec_name, image_size, crop):
    scaling = {"mobilenet_v1": "x / 127.5 - 1 (inside the model)",
               "efficientnet_lite0": "(x - 127) / 128 (inside the model)"}[spec_name]
    crop_text = {"scan": "crop to the ultrasound scan field (thyroid.datasets.images.crop, 'scan')",
                 "roi": "crop to the nodule ROI at training; at prediction time (no polygons) "
                        "the scan-field crop",
                 "none": "no crop"}.get(crop, crop)
    return (f"RGB; {crop_text}; bilinear resize of the whole crop to {image_size}x{image_size} "
            f"(thyroid.preprocessing.resize.resize_square); pixel values 0..255; {scaling}")


def holds_only_export_files(directory):
    """Whether every entry of ``directory`` is one an export writes (or its temporary)."""
    from thyroid.deploy.segment import SEGMENT_METADATA_FILE, SEGMENT_MODEL_FILE
    from thyroid.stats.shift import FILE_NAME as SHIFT_REFERENCE_FILE
    ours = {MODEL_FILE, METADATA_FILE, CARD_FILE, shards.LABELS_NAME, SEGMENT_MODEL_FILE,
            SEGMENT_METADATA_FILE, SHIFT_REFERENCE_FILE}
    return all(name in ours or name.startswith(".tmp-") or FOLD_FILE_PATTERN.fullmatch(name)
               for name in os.listdir(directory))


SHIFT_MEANING = ("an image's shift is the percentage (0-100) of the development images, each "
                 "scored by a reference fitted without it, that lie nearer the development "
                 "images than it does (Mahalanobis distance of the features output); above "
                 f"{shift.UNUSUAL_ABOVE:g} the image is unusual: far from the images the model "
                 "was developed and evaluated on, which does not make its answer wrong")


def _shift_mismatch(reference, spec, config, features, quantize):
    """Why the model's ``features`` output is not what ``reference`` was fitted on ('' when
    it is: the same prefix, pooling, input size and starting weights, unquantized)."""
    from thyroid.training import shift_features
    if features.get("source") != FEATURES_FROM_PREFIX or spec.name != shift_features.MODEL:
        return f"the model's features output is {spec.name}'s {features.get('layer')}"
    if quantize != "none":
        return f"a {quantize} model's features are not the float features it was fitted on"
    try:
        expected = shift_features.description(config.checkpoint_path, config.image_size)
    except (OSError, ValueError) as error:
        return f"the run's starting weights cannot be checked ({error})"
    if reference.features != expected:
        return f"it was fitted on other features ({reference.features}, not {expected})"
    return ""


def shift_files(reference_path, spec, config, features, quantize="none"):
    """({shift_reference.npz: bytes}, metadata.json's ``shift``) for an export whose
    ``features`` output (``features_metadata``) is what the reference at ``reference_path``
    was fitted on; ({}, None), the reason logged, for another reference or another kind of
    features, or no ``reference_path``. An unreadable reference is an ExportError."""
    if not reference_path:
        return {}, None
    try:
        reference = shift.read_reference(reference_path)
    except shift.ShiftReferenceError as error:
        raise ExportError(str(error)) from None
    problem = _shift_mismatch(reference, spec, config, features, quantize)
    if problem:
        logging.warning("%s not exported: %s", reference_path, problem)
        return {}, None
    with open(reference_path, "rb") as f:
        content = f.read()
    return {shift.FILE_NAME: content}, shift_metadata(reference)


def shift_metadata(reference):
    """metadata.json's ``shift``: the reference an export carries (``TFLiteModel`` loads the
    file it names)."""
    return {"file": shift.FILE_NAME, "features": reference.features,
            "dimension": reference.dimension,
            "development_images": int(reference.development_scores.size),
            "unusual_above": shift.UNUSUAL_ABOVE, "meaning": SHIFT_MEANING}


def export_model(train_dir, output_dir, quantize="none", representative_count=REPRESENTATIVE_COUNT,
                 seed=0, threshold_source=None, study=None, shift_reference=None):
    """Exports ``train_dir``'s latest checkpoint to ``output_dir``; returns ExportPaths.
    ``threshold_source``: where the run's threshold came from, in words (a study says its
    operating point); default: the run's own threshold setting. ``study``: a
    ``model_card.StudyFacts`` when a study exports (its figures go in the model card).
    ``shift_reference``: a shift_reference.npz the export carries when it was fitted on the
    model's own ``features`` (``shift_files``)."""
    if quantize not in QUANTIZE_MODES:
        raise ExportError(f"quantize must be one of {QUANTIZE_MODES}, not {quantize!r}")
    train_dir = os.path.abspath(train_dir)
    output_dir = check_output_dir("output_dir", output_dir, [InputPath("train_dir", train_dir)],
                                  is_ours=holds_only_export_files)
    config, spec, checkpoint = load_run(train_dir)
    size = config.image_size
    calibration = None
    if quantize == "int8":
        calibration = representative_images(config.dataset_dir, size, representative_count, seed)
    with tf.Graph().as_default():
        handles = build_probability_graph(spec, size, batch_size=1,
                                          prefix_features=freezes_prefix(spec, config))
        with tf1.Session() as sess:
            restore_session(sess, checkpoint)
            model_bytes = convert_session(sess, handles.inputs, handles.outputs(), quantize,
                                          calibration)
    recalibration = load_recalibration(train_dir)
    metadata = base_metadata(spec, config, quantize, input_details(model_bytes),
                             threshold_source)
    metadata.update({
        "output": {"name": OUTPUT_NAME, "shape": [1], "dtype": "float32",
                   "meaning": "P(malignant) = softmax(logits)[1]"},
        "outputs": output_metadata(model_bytes, ensemble=False),
        "cam": cam_metadata(last_feature_map(handles.end_points)[0], ensemble=False),
        "features": features_metadata(spec, config),
        "recalibration": recalibration_metadata(recalibration),
        "risk_threshold": float((recalibration or RecalibrationMap()).apply(config.threshold)),
        "test_metrics": _test_metrics(train_dir, config),
        "train_dir": train_dir,
        "checkpoint": checkpoint,
        "calibration_images": None if calibration is None else int(len(calibration)),
    })
    files, metadata["shift"] = shift_files(shift_reference, spec, config, metadata["features"],
                                           quantize)
    paths = write_export(output_dir, {MODEL_FILE: model_bytes, **files}, metadata, study=study)
    logging.info("exported %s (%s, %d bytes) -> %s", train_dir, quantize, len(model_bytes),
                 paths.model)
    return paths


OUTPUT_MEANINGS = {
    PROBABILITY_OUTPUT: "P(malignant) = softmax(logits)[1]",
    ENSEMBLE_OUTPUT: "each fold model's P(malignant) = softmax(logits)[1]",
    CAM_OUTPUT: "Grad-CAM of the logit difference (malignant - benign) at the last feature "
                "maps' resolution, before any scaling",
    FEATURES_OUTPUT: "pooled features (metadata features says which layer)",
    FEATURE_MAP_OUTPUT: "the feature maps whose mean over space is features",
}
ENSEMBLE_CAM = ("the mean of the fold models' maps, each divided by its own maximum")


def output_metadata(model_bytes, ensemble):
    """metadata.json's ``outputs``: each output of the model, by name, with its shape."""
    details = make_interpreter(model_content=model_bytes).get_output_details()
    found = {}
    for detail in details:
        meaning = OUTPUT_MEANINGS.get(detail["name"], "")
        if ensemble and detail["name"] == CAM_OUTPUT:
            meaning = f"Grad-CAM: {ENSEMBLE_CAM}"
        found[detail["name"]] = {"shape": [int(v) for v in detail["shape"]],
                                 "dtype": np.dtype(detail["dtype"]).name, "meaning": meaning}
    return found


def cam_metadata(layer, ensemble):
    """metadata.json's ``cam``: how the exported map is made."""
    return {"layer": layer, "target": "logit difference (malignant - benign)",
            "method": "closed-form Grad-CAM of the head (thyroid.deploy.head_cam), inside the "
                      "model", "combine": ENSEMBLE_CAM if ensemble else None}


THRESHOLD_SCALE = ("probability: the model's own P(malignant), before recalibration (the "
                   "recalibration map is increasing, so risk_threshold is the same cut on the "
                   "risk scale)")


def run_threshold_source(config):
    """The threshold's origin when the caller does not say: the training run's setting."""
    return (f"the training run's threshold setting ({config.threshold:g}, train's "
            "--threshold), not chosen by the export")


def base_metadata(spec, config, quantize, details, threshold_source=None):
    """What every export's metadata.json says about the input, preprocessing and data, what
    its label means (from the sources the data was built from) and where its threshold came
    from."""
    size = config.image_size
    dataset = _dataset_info(config.dataset_dir)
    crop = dataset.get("crop") or "scan"
    return {
        "format": METADATA_FORMAT,
        "model": spec.name,
        "mode": config.mode,
        "quantize": quantize,
        "input": {"name": INPUT_NAME, "shape": [1, size, size, 3], "size": size,
                  "dtype": details["dtype"], "range": [0, 255],
                  "quantization": details["quantization"]},
        "labels": list(LABEL_NAMES),
        "crop": crop,
        "preprocessing": preprocessing_description(spec.name, size, crop),
        "threshold": float(config.threshold),
        "threshold_scale": THRESHOLD_SCALE,
        THRESHOLD_SOURCE_KEY: threshold_source or run_threshold_source(config),
        label_meaning.METADATA_KEY:
            label_meaning.for_sources(dataset.get("sources") or ()).to_json(),
        "checkpoint_description": config.checkpoint_description,
        "data": dataset,
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tensorflow": tf.__version__,
        "notice": "Research tool, not a medical device: not for diagnosis.",
    }


def recalibration_metadata(recalibration):
    """metadata.json's ``recalibration``: the run's map from probability to risk, or the
    identity with the reason when the run has none."""
    if recalibration is None:
        recalibration = RecalibrationMap(note="the run carries no recalibration map (trained "
                                              "outside a study): risk = probability")
    return dict(recalibration.to_json(), formula=RISK_FORMULA)


RISK_FORMULA = ("risk = 1 / (1 + exp(-(intercept + slope * logit(probability)))), fitted on "
                "inner-validation predictions only; on DDTI-labelled data the label is a TIRADS "
                "rating of 4a or above, not pathology")


def write_export(output_dir, model_files, metadata, layout="single", study=None, card=None):
    """Writes ``model_files`` ({name: bytes}), labels.txt, MODEL_CARD.md (its fields go in
    metadata.json ``model_card``) and, last, metadata.json (its presence marks a complete
    export); -> ExportPaths. ``study``: the study's facts for the card, or None; ``card``: a
    ``model_card.ModelCard`` made by the caller instead (an adapted export's)."""
    from thyroid.deploy.model_card import build_card
    os.makedirs(output_dir, exist_ok=True)
    model = (os.path.join(output_dir, MODEL_FILE) if MODEL_FILE in model_files
             else os.path.abspath(output_dir))
    paths = ExportPaths(output_dir=os.path.abspath(output_dir), model=model,
                        labels=os.path.join(output_dir, shards.LABELS_NAME),
                        metadata=os.path.join(output_dir, METADATA_FILE), layout=layout)
    for name, content in model_files.items():
        atomic_write_bytes(os.path.join(output_dir, name), content)
    if shift.FILE_NAME in model_files:
        paths = dataclasses.replace(paths, shift_reference=os.path.join(output_dir,
                                                                        shift.FILE_NAME))
    shards.write_labels_file(output_dir)
    card = card or build_card(metadata, study)
    atomic_write_text(os.path.join(output_dir, CARD_FILE), card.markdown)
    atomic_write_json(paths.metadata, dict(metadata, model_card=card.fields))
    return paths


def input_details(model_bytes):
    interpreter = make_interpreter(model_content=model_bytes)
    detail = interpreter.get_input_details()[0]
    scale, zero_point = detail["quantization"]
    quantization = None if scale == 0 else {"scale": float(scale), "zero_point": int(zero_point)}
    return {"dtype": np.dtype(detail["dtype"]).name, "quantization": quantization}
