"""The training loop of the graph modes (scratch, bottleneck_fc, finetune).

Feeds each step's batch through placeholders, its rows read from disk when indexed
(``training.inputs`` hands over ``row_files.RowFile``s, so a split of any size costs one
batch of memory; a tf.data pipeline would add start-up cost and no speed). Resumes from the latest
checkpoint in train_dir; the batch order depends only on (seed, epoch) and dropout
masks only on (seed, global step) (``thyroid.nets.step_random``), so a resumed run sees
the same batches and masks as an uninterrupted one and ends with the same weights.
"""

import dataclasses
import math
import os
import time

import numpy as np
from absl import logging

from thyroid.checkpoint_paths import latest_checkpoint, literal
from thyroid.stats import graph_metrics, metrics
from thyroid.io_utils import atomic_write_json, read_json
from thyroid.compat import tf, tf1
from thyroid.nets import get_network
from thyroid.progress import Progress
from thyroid.restore import (FrozenWeights, build_restore_fn, in_scopes, initialize_and_restore,
                             variables_in_scopes, warn_unmatched_scopes)
from thyroid.training.model import build_logits, malignant_probability
from thyroid.scopes import parse_scopes
from thyroid.training.run_config import OPTIMIZERS

CHECKPOINTS_KEPT = 2  # the newest checkpoints kept in a train_dir, across restarts too


def class_weights(labels, how):
    """Per-class loss weights; 'balanced' gives each class the same total weight."""
    if how == "none":
        return np.ones(2, np.float32)
    if how != "balanced":
        raise ValueError(f"--class_weight must be 'balanced' or 'none', not {how!r}")
    counts = np.bincount(np.asarray(labels, np.int64), minlength=2).astype(np.float64)
    return np.where(counts > 0, counts.sum() / (2.0 * np.maximum(counts, 1)), 0.0).astype(np.float32)


def batch_indices(step, num_examples, batch_size, seed):
    """Indices of the batch at ``step``: a fresh permutation each epoch, fixed by the seed."""
    start = step * batch_size
    picks = []
    while len(picks) < batch_size:
        epoch, offset = divmod(start + len(picks), num_examples)
        order = np.random.RandomState(seed + epoch).permutation(num_examples)
        picks.extend(order[offset:offset + batch_size - len(picks)])
    return np.asarray(picks)


BEST_DIR = "best"
BEST_FILE = "best.json"


def validation_score(labels, probs):
    """(AUC, -log loss): higher is better; the loss breaks ties and stands in where the
    validation set lacks a class (AUC undefined)."""
    auc = metrics.auc_score(labels, probs)
    clipped = np.clip(np.asarray(probs, np.float64), 1e-7, 1 - 1e-7)
    log_loss = -np.mean(np.where(np.asarray(labels) == 1, np.log(clipped), np.log1p(-clipped)))
    return (-1.0 if math.isnan(auc) else float(auc), -float(log_loss))


def read_best(train_dir):
    """best.json of a run that keeps its best checkpoint: {step, validation_auc, ...} or None."""
    path = os.path.join(train_dir, BEST_FILE)
    return read_json(path) if os.path.exists(path) else None


class BestCheckpoint:
    """Keeps the checkpoint with the best validation score in <train_dir>/best/."""

    def __init__(self, train_dir, saved=None):
        self.train_dir = train_dir
        # Relative paths in the state file: TensorFlow is given literal() aliases.
        self.saver = tf1.train.Saver(saved, max_to_keep=1, save_relative_paths=True)
        best = read_best(train_dir)
        self.score = tuple(best["score"]) if best else None
        self.step = int(best["step"]) if best else 0

    def stale(self, step, patience, eval_every_n_steps):
        """True once ``patience`` evaluations in a row have not improved on the best.
        Counted from the best step, so a resumed run stops where an uninterrupted one would."""
        return patience > 0 and self.score is not None and \
            step - self.step >= patience * eval_every_n_steps

    def offer(self, sess, step, labels, probs):
        score = validation_score(labels, probs)
        if self.score is not None and score <= self.score:
            return
        self.score, self.step = score, int(step)
        self.saver.save(sess, literal(os.path.join(self.train_dir, BEST_DIR, "model.ckpt")),
                        global_step=step)
        atomic_write_json(os.path.join(self.train_dir, BEST_FILE), {
            "step": int(step), "validation_auc": score[0] if score[0] >= 0 else None,
            "validation_log_loss": -score[1], "score": list(score)})


def make_optimizer(name, learning_rate):
    if name == "adam":
        return tf1.train.AdamOptimizer(learning_rate)
    if name == "sgd":
        return tf1.train.GradientDescentOptimizer(learning_rate)
    if name == "momentum":
        return tf1.train.MomentumOptimizer(learning_rate, momentum=0.9)
    if name == "rmsprop":
        return tf1.train.RMSPropOptimizer(learning_rate)
    raise ValueError(f"--optimizer must be one of {OPTIMIZERS}, not {name!r}")


def predict_probabilities(sess, probs, inputs, is_training, values, batch_size=16):
    out = [sess.run(probs, {inputs: values[i:i + batch_size], is_training: False})
           for i in range(0, len(values), batch_size)]
    return np.concatenate(out) if out else np.zeros([0], np.float32)


def add_frozen_prefix_weights(spec, image_size, exclude_scopes=()):
    """Adds the frozen layers' weights to a graph that trains on their cached output, as a
    ``FrozenWeights``. They are never computed with; they are restored from the pretrained
    checkpoint and saved with every checkpoint (``saveables``), so the run holds the whole
    network (evaluation on new images, export, Grad-CAM)."""
    weights = FrozenWeights(exclude_scopes)
    with tf1.name_scope("unused_frozen_prefix"), \
            tf1.variable_scope("", custom_getter=weights.getter):
        spec.frozen_prefix(tf1.placeholder(tf.float32, [None, image_size, image_size, 3]))
    return weights


def saved_weights(frozen_prefix=None):
    """{checkpoint name: variable or frozen weight} of everything a run's checkpoints hold."""
    saved = {variable.op.name: variable for variable in tf1.global_variables()}
    if frozen_prefix is not None:
        saved.update(frozen_prefix.saveables)
    return saved


def restore_run(sess, saver, saved, latest, config, frozen_prefix=None):
    """Resumes from the run's ``latest`` checkpoint (``saved``: its names and weights). One
    written before runs kept their frozen prefix lacks those weights; they come from the
    pretrained checkpoint they were cached from, which is read only then. Anything else
    missing fails in ``saver.restore``, naming it."""
    in_checkpoint = set(tf.train.load_checkpoint(literal(latest)).get_variable_to_shape_map())
    missing = {name for name in saved if name not in in_checkpoint}
    if not missing or frozen_prefix is None or not missing <= set(frozen_prefix.saveables):
        saver.restore(sess, literal(latest))
        return
    logging.info("%s lacks %d weights of the frozen layers; restoring them from %s", latest,
                 len(missing), config.checkpoint_path)
    sess.run(frozen_prefix.restore_op(config.checkpoint_path))
    tf1.train.Saver({name: saved[name] for name in saved if name in in_checkpoint}).restore(
        sess, literal(latest))


def regularization_losses_in(scopes):
    """The weight penalties of the layers under ``scopes``: a frozen layer's penalty is a
    constant with no gradient, which would only cost time at every step."""
    scopes = parse_scopes(scopes)
    return [penalty for penalty in tf1.losses.get_regularization_losses()
            if in_scopes(penalty.op.name, scopes)]


def training_objective(mode, trainable_scopes, loss):
    """(variables to update, loss + their weight penalties): fine-tuning trains and penalises
    only ``trainable_scopes``; the other modes train everything."""
    if mode == "finetune":
        variables = variables_in_scopes(trainable_scopes)
        penalties = regularization_losses_in(trainable_scopes)
    else:
        variables = tf1.trainable_variables()
        penalties = tf1.losses.get_regularization_losses()
    return variables, tf.add_n([loss] + penalties)


def recover_saved_checkpoints(saver, train_dir):
    """Tells a new Saver which checkpoints earlier runs kept, so that its ``max_to_keep``
    also deletes theirs (by default it only knows the ones it wrote itself)."""
    state = tf1.train.get_checkpoint_state(train_dir)
    if state is not None and state.all_model_checkpoint_paths:
        saver.recover_last_checkpoints([literal(p) for p in state.all_model_checkpoint_paths])


@dataclasses.dataclass
class TrainingGraph:
    """The handles of one run's training graph that the step loop feeds and runs."""
    inputs: object
    labels: object
    is_training: object
    probs: object
    global_step: object
    total_loss: object
    train_op: object
    step_summaries: object
    validation_labels: object
    validation_probs: object
    validation_summaries: object
    saver: object
    saved: list
    best: object
    frozen_prefix: object
    model_variables: list


def _optimisation(config, train_inputs, labels, logits, global_step, model_variables):
    """(total loss, train op) of the run's objective over its trainable scopes."""
    weights = tf.gather(tf.constant(class_weights(train_inputs.labels, config.class_weight)), labels)
    loss = tf1.losses.sparse_softmax_cross_entropy(labels, logits, weights=weights)
    if config.mode == "finetune":
        warn_unmatched_scopes(config.trainable_scopes, model_variables, "--trainable_scopes")
    train_variables, total_loss = training_objective(config.mode, config.trainable_scopes, loss)
    if not train_variables:
        raise ValueError(f"nothing to train: --trainable_scopes {config.trainable_scopes} "
                         "match no trainable variable")
    learning_rate = tf.constant(config.learning_rate, tf.float32)
    with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
        train_op = make_optimizer(config.optimizer, learning_rate).minimize(
            total_loss, global_step=global_step, var_list=train_variables)
    tf1.summary.scalar("losses/total_loss", total_loss)
    tf1.summary.scalar("learning_rate", learning_rate)
    return total_loss, train_op


def build_training_graph(config, train_dir, train_inputs, validation_inputs):
    """Builds the run's training graph in the current default graph."""
    spec = get_network(config.model)
    tf1.set_random_seed(config.seed)
    global_step = tf1.train.get_or_create_global_step()
    inputs = tf1.placeholder(train_inputs.values.dtype, [None] + list(train_inputs.values.shape[1:]),
                             name="inputs")
    labels = tf1.placeholder(tf.int64, [None], name="labels")
    is_training = tf1.placeholder_with_default(False, [], name="is_training")
    logits, _ = build_logits(spec, config.mode, inputs, is_training, config.uses_frozen_prefix)
    probs = malignant_probability(logits)
    frozen_prefix = add_frozen_prefix_weights(spec, config.image_size,
                                              config.checkpoint_exclude_scopes) \
        if config.uses_frozen_prefix else None
    model_variables = [v for v in tf1.global_variables() if v is not global_step]
    total_loss, train_op = _optimisation(config, train_inputs, labels, logits, global_step,
                                         model_variables)
    graph_metrics.add_metric_summaries(
        graph_metrics.metric_ops(labels, probs, config.threshold), "train")
    step_summaries = tf1.summary.merge_all()
    validation_labels = tf1.placeholder(tf.int64, [None])
    validation_probs = tf1.placeholder(tf.float32, [None])
    validation_summaries = tf1.summary.merge(graph_metrics.add_metric_summaries(
        graph_metrics.metric_ops(validation_labels, validation_probs, config.threshold),
        "validation"))
    saved = saved_weights(frozen_prefix)
    keep_best = config.keep_best_checkpoint and validation_inputs is not None and \
        len(validation_inputs.labels) > 0
    return TrainingGraph(inputs, labels, is_training, probs, global_step, total_loss, train_op,
                         step_summaries, validation_labels, validation_probs,
                         validation_summaries, tf1.train.Saver(
                             saved, max_to_keep=CHECKPOINTS_KEPT, save_relative_paths=True),
                         saved, BestCheckpoint(train_dir, saved) if keep_best else None,
                         frozen_prefix, model_variables)


def _start_session(sess, graph, config, train_dir, latest, restore_pretrained, writer):
    """Restores the run's latest checkpoint, or initialises it from the pretrained weights."""
    if latest is not None:
        restore_run(sess, graph.saver, graph.saved, latest, config, graph.frozen_prefix)
        if config.checkpoint_path:
            logging.info("Ignoring --checkpoint_path because a checkpoint already exists in %s",
                         train_dir)
        return
    initialize_and_restore(sess, restore_pretrained)
    if graph.frozen_prefix is not None:  # uses_frozen_prefix implies a pretrained checkpoint
        sess.run(graph.frozen_prefix.restore_op(config.checkpoint_path))
    writer.add_graph(sess.graph)


def train_graph_model(config, train_dir, train_inputs, validation_inputs):
    """Trains until ``config.max_number_of_steps``; returns the final global step."""
    with tf.Graph().as_default():
        graph = build_training_graph(config, train_dir, train_inputs, validation_inputs)
        latest = latest_checkpoint(train_dir)
        recover_saved_checkpoints(graph.saver, train_dir)
        restore_pretrained = None
        if latest is None and config.mode == "finetune" and config.checkpoint_path:
            restore_pretrained = build_restore_fn(
                config.checkpoint_path, config.checkpoint_exclude_scopes,
                config.ignore_missing_vars, var_list=graph.model_variables)
        writer = tf1.summary.FileWriter(train_dir)
        with tf1.Session() as sess:
            _start_session(sess, graph, config, train_dir, latest, restore_pretrained, writer)
            step = int(sess.run(graph.global_step))
            if step >= config.max_number_of_steps or (graph.best is not None and graph.best.stale(
                    step, config.early_stopping_patience, config.eval_every_n_steps)):
                logging.info("%s already finished at step %d", train_dir, step)
                return step
            return run_steps(sess, graph, config, train_dir, train_inputs, validation_inputs,
                             writer, step)


def _evaluate_validation(sess, graph, config, validation_inputs, writer, step):
    """Validation summaries at ``step``; -> whether early stopping ends the run here."""
    val_probs = predict_probabilities(sess, graph.probs, graph.inputs, graph.is_training,
                                      validation_inputs.values)
    writer.add_summary(sess.run(graph.validation_summaries, {
        graph.validation_labels: validation_inputs.labels, graph.validation_probs: val_probs}), step)
    if graph.best is None:
        return False
    graph.best.offer(sess, step, validation_inputs.labels, val_probs)
    if graph.best.stale(step, config.early_stopping_patience, config.eval_every_n_steps):
        logging.info("early stop at step %d: no better validation score since step %d", step,
                     graph.best.step)
        return True
    return False


def run_steps(sess, graph, config, train_dir, train_inputs, validation_inputs, writer, step):
    """The step loop from ``step``: updates, summaries, validation, checkpoints."""
    logging.info("training %s/%s from step %d to %d", config.model, config.mode, step,
                 config.max_number_of_steps)
    progress = Progress(config.max_number_of_steps - step, f"train {config.model}/{config.mode}",
                        "steps")
    started = time.monotonic()
    validates = validation_inputs is not None and len(validation_inputs.labels)
    while step < config.max_number_of_steps:
        idx = batch_indices(step, len(train_inputs.labels), config.batch_size, config.seed)
        feed = {graph.inputs: train_inputs.values[idx], graph.labels: train_inputs.labels[idx],
                graph.is_training: True}
        last = step + 1 == config.max_number_of_steps
        log_now = (step + 1) % config.log_every_n_steps == 0 or last
        # Summaries come from the same forward pass as the update, not a second one.
        fetched = sess.run([graph.total_loss, graph.train_op]
                           + ([graph.step_summaries] if log_now else []), feed)
        step_loss = fetched[0]
        step += 1
        if not np.isfinite(step_loss):
            raise FloatingPointError(f"loss became {step_loss} at step {step}; "
                                     "lower --learning_rate")
        progress.update()
        if log_now:
            writer.add_summary(fetched[2], step)
        if validates and (step % config.eval_every_n_steps == 0 or last):
            last = _evaluate_validation(sess, graph, config, validation_inputs, writer, step) or last
        if step % config.save_interval_steps == 0 or last:
            graph.saver.save(sess, literal(os.path.join(train_dir, "model.ckpt")),
                             global_step=step)
        if last:
            break
    writer.flush()
    logging.info("trained %d steps in %.1fs; loss %.4f", progress.done,
                 time.monotonic() - started, step_loss)
    return step


def prediction_checkpoint(config, train_dir):
    """The best-validation checkpoint of a run that keeps one, else the latest."""
    if config.keep_best_checkpoint:
        best = latest_checkpoint(os.path.join(train_dir, BEST_DIR))
        if best is not None:
            return best
    return latest_checkpoint(train_dir)


def load_and_predict(config, train_dir, split_inputs, batch_size=16):
    """P(malignant) for ``split_inputs`` from the run's checkpoint (``prediction_checkpoint``)."""
    latest = prediction_checkpoint(config, train_dir)
    if latest is None:
        raise FileNotFoundError(f"{train_dir}: no trained checkpoint to evaluate")
    spec = get_network(config.model)
    with tf.Graph().as_default():
        inputs = tf1.placeholder(split_inputs.values.dtype, [None] + list(split_inputs.values.shape[1:]))
        is_training = tf1.placeholder_with_default(False, [])
        logits, _ = build_logits(spec, config.mode, inputs, is_training, config.uses_frozen_prefix)
        probs = malignant_probability(logits)
        saver = tf1.train.Saver(tf1.global_variables())
        with tf1.Session() as sess:
            saver.restore(sess, literal(latest))
            return predict_probabilities(sess, probs, inputs, is_training, split_inputs.values, batch_size)
