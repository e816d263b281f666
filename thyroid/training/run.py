"""One training run, any mode: the library function behind ``python -m thyroid.train``."""

import dataclasses
import math
import os
import time

import numpy as np
from absl import logging

from thyroid.checkpoints.locate import resolve_pretrained
from thyroid.nets import get_network
from thyroid.training import logreg, svm
from thyroid.training.inputs import load_split_inputs
from thyroid.training.loop import train_graph_model
from thyroid.training.frozen_network import resolve_layers
from thyroid.output_guard import InputPath, check_output_dir
from thyroid.training.run_config import DEFAULT_LEARNING_RATES
from thyroid.training.run_config import FILE_NAME as RUN_CONFIG_FILE
from thyroid.training.train_dir_lock import LOCK_FILE, locked_train_dir


@dataclasses.dataclass
class TrainResult:
    train_dir: str
    seconds: float
    steps: int
    checkpoint_description: str
    config: object


def steps_for_epochs(num_epochs, num_examples, batch_size):
    return max(1, math.ceil(num_epochs * num_examples / batch_size))


def eval_interval_steps(config, num_examples):
    """Steps between validation evaluations: ``eval_every_n_epochs`` of ``num_examples``
    training examples when set (at least one step), else ``eval_every_n_steps``."""
    if not config.eval_every_n_epochs:
        return config.eval_every_n_steps
    return max(1, round(config.eval_every_n_epochs * num_examples / config.batch_size))


def resolve_steps(config, num_examples):
    """``config`` with its step count (from ``num_epochs`` unless given) and validation
    interval (from ``eval_every_n_epochs`` when set) for a training part of ``num_examples``."""
    return config.replace(
        max_number_of_steps=config.max_number_of_steps or steps_for_epochs(
            config.num_epochs, num_examples, config.batch_size),
        eval_every_n_steps=eval_interval_steps(config, num_examples))


def uses_prefix_cache(spec, mode, trainable_scopes, enabled, checkpoint_path):
    """The frozen-prefix cache applies when nothing below the cached layer is trained and the
    frozen layers come from a checkpoint (random frozen layers could not be saved with the run
    the way they were cached)."""
    if mode != "finetune" or not enabled or spec.frozen_prefix is None or not checkpoint_path:
        return False
    return set(trainable_scopes) <= set(spec.trainable_scopes)


def resolve(config):
    """``config`` with every default that needs no data filled in (the step count needs data)."""
    spec = get_network(config.model)
    checkpoint_path, description = resolve_pretrained(
        spec.name, config.mode, config.checkpoint_path, config.checkpoint_dir, config.allow_random_init)
    trainable_scopes = tuple(config.trainable_scopes) or tuple(spec.trainable_scopes)
    return config.replace(
        dataset_dir=os.path.abspath(config.dataset_dir),
        fold_file=os.path.abspath(config.fold_file) if config.fold_file else None,
        image_size=config.image_size or spec.default_image_size,
        checkpoint_path=os.path.abspath(checkpoint_path) if checkpoint_path else None,
        # A caller that names its checkpoint may say what it is (a previous run's model).
        checkpoint_description=(config.checkpoint_description
                                 if config.checkpoint_path and config.checkpoint_description
                                 else description),
        checkpoint_exclude_scopes=(() if config.restore_all else
                                   tuple(config.checkpoint_exclude_scopes)
                                   or tuple(spec.exclude_scopes)),
        trainable_scopes=trainable_scopes,
        learning_rate=config.learning_rate or DEFAULT_LEARNING_RATES[config.mode],
        feature_layers=(resolve_layers(spec, config.feature_layers)
                        if config.mode == "bottleneck_logreg" else tuple(config.feature_layers)),
        cache_dir=os.path.abspath(config.cache_dir or os.path.join(config.dataset_dir, "activation_cache")),
        uses_frozen_prefix=uses_prefix_cache(spec, config.mode, trainable_scopes, config.use_prefix_cache,
                                              checkpoint_path))


def holds_a_run(directory):
    """Whether ``directory`` is a train_dir (its config or its lock; training writes both)."""
    return any(os.path.exists(os.path.join(directory, name))
               for name in (RUN_CONFIG_FILE, LOCK_FILE))


def train(config, train_dir, argv=None):
    """Trains ``config`` into ``train_dir`` (resuming from its latest checkpoint); -> TrainResult.

    ``argv``: the command line recorded in run_config.json (default: this process's).
    Holds the train_dir's lock throughout: a second trainer there fails at once
    (``TrainDirBusyError``) instead of overwriting this run's files.
    """
    config = resolve(config.validate())
    if config.mode == "scratch" and get_network(config.model).imagenet_logits is not None:
        logging.info("scratch mode: %s starts from random weights", config.model)
    train_dir = check_output_dir("train_dir", train_dir, [
        InputPath("dataset_dir", config.dataset_dir),
        InputPath("checkpoint_path", config.checkpoint_path)], is_ours=holds_a_run)
    os.makedirs(train_dir, exist_ok=True)
    with locked_train_dir(train_dir):
        return _train_locked(config, train_dir, argv)


def _train_locked(config, train_dir, argv):
    started = time.monotonic()
    train_inputs = load_split_inputs(config, "train")
    if config.mode == "bottleneck_svm":
        config = config.replace(max_number_of_steps=1)
        config.save(train_dir, argv)
        model = svm.fit_svm(train_inputs.values, train_inputs.labels, config.svm_standardize,
                            config.svm_class_weight, config.seed)
        svm.save_svm(model, train_dir)
        steps = 1
    elif config.mode == "bottleneck_logreg":
        config = config.replace(max_number_of_steps=1)
        config.save(train_dir, argv)
        fit_logreg_run(config, train_dir, train_inputs)
        steps = 1
    else:
        config = resolve_steps(config, len(train_inputs.labels))
        config.save(train_dir, argv)
        validation_inputs = load_split_inputs(config, "validation")
        steps = train_graph_model(config, train_dir, train_inputs, validation_inputs)
    seconds = time.monotonic() - started
    logging.info("%s/%s trained in %.1fs -> %s", config.model, config.mode, seconds, train_dir)
    return TrainResult(train_dir, seconds, steps, config.checkpoint_description, config)


def fit_logreg_run(config, train_dir, train_inputs):
    """Fits and saves the logistic regression on the original images of the training part.

    The fixed augmented copies are left out: the mirror average is this mode's augmentation,
    and the copies' near-duplicate features would only weigh their patients more.
    """
    originals = train_inputs
    if train_inputs.augmented is not None:
        originals = train_inputs.subset(np.flatnonzero(~np.asarray(train_inputs.augmented, bool)))
    model, selection = logreg.fit_logreg(originals.values, originals.labels,
                                         originals.patient_ids, config.seed)
    logreg.save_logreg(model, selection, train_dir)
