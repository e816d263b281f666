"""A fold ensemble exported for the phone and the web app: the K fold models of one row.

When every fold fine-tuned the same frozen lower layers (the prefix cache: identical prefix
weights in every fold's checkpoint), one TFLite model holds the frozen prefix once and K copies
of the trained layers (``fold<k>/`` scopes), so it grows by the trained layers only; its output
``fold_probabilities`` [1, K] holds each fold model's P(malignant). Otherwise (e.g. folds
trained from random weights, where every layer differs) each fold is its own file,
``model_fold<k>.tflite``. Either way ``deploy.tflite_model.TFLiteModel`` averages: probability
= the mean of the fold probabilities, risk = the mean of the fold risks (each through its
fold's recalibration map), spread = the SD of those risks.

Every layout also draws Grad-CAM: the one-file ensemble's ``cam`` is the mean of its members'
maps, each scaled to its own maximum (``deploy.head_cam``), and its ``features`` are the shared
frozen prefix's pooled output (``feature_map``: the prefix's maps); a fold file carries its own
model's ``cam``, ``features`` and ``feature_map``, which ``TFLiteModel`` combines the same way
(features and maps: the first fold's, since such members share no frozen layers).
"""

import numpy as np
from absl import logging

from thyroid.checkpoint_paths import literal
from thyroid.compat import tf, tf1
from thyroid.deploy.export import (INPUT_NAME, OUTPUT_NAME, RISK_FORMULA, ExportError,
                                   base_metadata, build_probability_graph, cam_metadata,
                                   convert_session, features_metadata, freezes_prefix,
                                   holds_only_export_files, input_details, load_run,
                                   output_metadata, restore_session, shift_files,
                                   write_export)
from thyroid.deploy.head_cam import head_cam, head_weights, last_feature_map, scaled_to_peak
from thyroid.output_guard import InputPath, check_output_dir
from thyroid.deploy.tflite_model import (CAM_OUTPUT, ENSEMBLE_OUTPUT, FEATURE_MAP_OUTPUT,
                                         FEATURES_OUTPUT, MODEL_FILE)
from thyroid.training.frozen_network import prefix_features_of
from thyroid.training.loop import prediction_checkpoint
from thyroid.training.model import build_logits, malignant_probability

FOLD_SCOPE = "fold{}"
COMBINE = ("probability = mean of the fold models' P(malignant); risk = mean of their risks, "
           "each through its own fold's recalibration map; spread = SD of those risks")


def fold_runs(train_dirs):
    """[(config, spec, checkpoint)] of the fold models: the checkpoint each fold predicted
    its test fold from (the best inner-validation one)."""
    runs = []
    for train_dir in train_dirs:
        config, spec, _ = load_run(train_dir)
        runs.append((config, spec, prediction_checkpoint(config, train_dir)))
    kinds = {(config.model, config.image_size) for config, _, _ in runs}
    if len(kinds) != 1:
        raise ExportError(f"the fold models differ in network or input size: {sorted(kinds)}")
    return runs


def _prefix_variable_names(spec, image_size):
    with tf.Graph().as_default():
        inputs = tf1.placeholder(tf.float32, [1, image_size, image_size, 3])
        spec.frozen_prefix(spec.preprocess(inputs))
        return [v.op.name for v in tf1.global_variables()]


def shares_prefix(runs):
    """Whether every fold froze the same lower layers, with identical weights."""
    config, spec, _ = runs[0]
    if spec.frozen_prefix is None or not all(c.uses_frozen_prefix for c, _, _ in runs):
        return False
    readers = [tf.train.load_checkpoint(literal(checkpoint)) for _, _, checkpoint in runs]
    for name in _prefix_variable_names(spec, config.image_size):
        first = readers[0].get_tensor(name)
        if any(not np.array_equal(first, reader.get_tensor(name)) for reader in readers[1:]):
            logging.info("fold models differ in frozen weight %s: one file per fold", name)
            return False
    return True


def build_ensemble_graph(spec, image_size, count):
    """image (0..255) -> [1, count] fold probabilities, the members' mean peak-scaled Grad-CAM
    and the prefix's pooled features (and the prefix's maps they pool): the frozen prefix once,
    the trained layers once per fold under ``fold<k>/``. -> (inputs, [probabilities, cam,
    features, feature_map])."""
    inputs = tf1.placeholder(tf.float32, [1, image_size, image_size, 3], name=INPUT_NAME)
    prefix = spec.frozen_prefix(spec.preprocess(inputs))
    probabilities, cams = [], []
    for k in range(count):
        scope = FOLD_SCOPE.format(k)
        with tf1.variable_scope(scope):
            logits, end_points = build_logits(spec, "finetune", prefix, is_training=False,
                                              uses_frozen_prefix=True)
        probabilities.append(malignant_probability(logits))
        _, feature_map = last_feature_map(end_points)
        cams.append(scaled_to_peak(head_cam(feature_map, end_points[spec.bottleneck_endpoint],
                                            head_weights(f"{scope}/{spec.head_scope}"))))
    outputs = [tf.stack(probabilities, axis=1, name=ENSEMBLE_OUTPUT),
               tf.identity(tf.add_n(cams) / float(count), name=CAM_OUTPUT),
               tf.identity(prefix_features_of(prefix), name=FEATURES_OUTPUT),
               tf.identity(prefix, name=FEATURE_MAP_OUTPUT)]
    return inputs, outputs


def _restore(sess, checkpoint, mapping):
    """Restores {checkpoint name: variable}; a name the checkpoint lacks is an ExportError."""
    shapes = tf.train.load_checkpoint(literal(checkpoint)).get_variable_to_shape_map()
    missing = sorted(name for name, var in mapping.items()
                     if shapes.get(name) != var.shape.as_list())
    if missing:
        raise ExportError(f"{checkpoint}: missing or reshaped {', '.join(missing[:5])}")
    tf1.train.Saver(mapping).restore(sess, literal(checkpoint))


def one_model_bytes(runs):
    """The ensemble as one TFLite model sharing the frozen prefix."""
    _, spec, _ = runs[0]
    with tf.Graph().as_default():
        inputs, outputs = build_ensemble_graph(spec, runs[0][0].image_size, len(runs))
        variables = tf1.global_variables()
        with tf1.Session() as sess:
            prefix = {v.op.name: v for v in variables if not v.op.name.startswith("fold")}
            _restore(sess, runs[0][2], prefix)
            for k, (_, _, checkpoint) in enumerate(runs):
                scope = FOLD_SCOPE.format(k) + "/"
                _restore(sess, checkpoint, {v.op.name[len(scope):]: v for v in variables
                                            if v.op.name.startswith(scope)})
            return convert_session(sess, inputs, outputs)


def fold_file_bytes(run):
    """One fold model as its own TFLite file (outputs ``probability`` [1], ``cam``,
    ``features``, ``feature_map``)."""
    config, spec, checkpoint = run
    with tf.Graph().as_default():
        handles = build_probability_graph(spec, config.image_size, batch_size=1,
                                          prefix_features=freezes_prefix(spec, config))
        with tf1.Session() as sess:
            restore_session(sess, checkpoint)
            return convert_session(sess, handles.inputs, handles.outputs())


def export_ensemble(train_dirs, maps, threshold, output_dir, threshold_source=None,
                    study=None, shift_reference=None):
    """Exports the fold models of ``train_dirs`` (with their recalibration ``maps``) as one
    ensemble judged at ``threshold`` on the mean probability (``threshold_source``: where it
    came from, in words); -> ExportPaths. ``study``: the study's facts for the model card
    (``model_card.StudyFacts``), or None. ``shift_reference``: carried when it was fitted on
    the ensemble's ``features`` (the shared prefix's: never the one-file-per-fold layout)."""
    if not train_dirs or len(train_dirs) != len(maps):
        raise ExportError("a fold ensemble needs one recalibration map per fold model")
    output_dir = check_output_dir("output_dir", output_dir,
                                  [InputPath("train_dir", d) for d in train_dirs],
                                  is_ours=holds_only_export_files)
    runs = fold_runs(train_dirs)
    if shares_prefix(runs):
        layout, files = "one_model", {MODEL_FILE: one_model_bytes(runs)}
        output = {"name": ENSEMBLE_OUTPUT, "shape": [1, len(runs)], "dtype": "float32",
                  "meaning": "each fold model's P(malignant) = softmax(logits)[1]"}
    else:
        layout = "files"
        files = {f"model_fold{k}.tflite": fold_file_bytes(run) for k, run in enumerate(runs)}
        output = {"name": OUTPUT_NAME, "shape": [1], "dtype": "float32",
                  "meaning": "P(malignant) of the file's fold model"}
    config, spec, _ = runs[0]
    first = next(iter(files.values()))
    metadata = base_metadata(spec, config.replace(threshold=float(threshold)), "none",
                             input_details(first),
                             threshold_source or "the threshold given to the ensemble's export")
    metadata.update({
        "output": output, "outputs": output_metadata(first, ensemble=layout == "one_model"),
        "cam": cam_metadata(feature_map_name(spec, config.image_size), ensemble=True),
        "features": _ensemble_features(spec, runs, layout),
        "recalibration": None, "train_dir": None, "test_metrics": None,
        "ensemble": {"folds": len(runs), "layout": layout, "files": sorted(files),
                     "combine": COMBINE, "risk_formula": RISK_FORMULA,
                     "recalibration": [m.to_json() for m in maps],
                     "train_dirs": [str(d) for d in train_dirs],
                     "checkpoints": [checkpoint for _, _, checkpoint in runs]},
        "threshold_scale": "probability: the mean of the fold models' P(malignant), before "
                           "recalibration"})
    if layout == "files" and shift_reference:
        logging.warning("%s not exported: the fold files share no frozen prefix, so no "
                        "features output is the shift score's", shift_reference)
        shift_reference = None
    shift_found, metadata["shift"] = shift_files(shift_reference, spec, config,
                                                 metadata["features"])
    paths = write_export(output_dir, {**files, **shift_found}, metadata, layout, study=study)
    logging.info("exported a %d-fold ensemble (%s, %d bytes) -> %s", len(runs), layout,
                 sum(len(b) for b in files.values()), paths.output_dir)
    return paths


def _ensemble_features(spec, runs, layout):
    """metadata.json's ``features``: the shared prefix's (one file), else the first fold's."""
    found = features_metadata(spec, runs[0][0])
    if layout == "files":
        found = dict(found, meaning=found["meaning"] + "; the first fold model's (the fold "
                     "files share no frozen layers)")
    return found


def feature_map_name(spec, image_size):
    """The end point Grad-CAM reads (``head_cam.last_feature_map``) in ``spec``'s network."""
    with tf.Graph().as_default():
        inputs = tf1.placeholder(tf.float32, [1, image_size, image_size, 3])
        _, end_points = build_logits(spec, "finetune", inputs, is_training=False)
        return last_feature_map(end_points)[0]
