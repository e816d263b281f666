"""One training run, any mode: the function behind ``python -m thyroid.train``."""

import dataclasses
import os
import time

from absl import logging

from thyroid.nets import default_checkpoint_path, get_network
from thyroid.training import MODES
from thyroid.training.inputs import load_split_inputs
from thyroid.training.loop import LoopOptions, steps_for_epochs, train_graph_model
from thyroid.training import svm
from thyroid.training.run_config import RunConfig

DEFAULT_LEARNING_RATES = {"scratch": 1e-3, "bottleneck_fc": 1e-3, "finetune": 1e-4}


class MissingCheckpointError(FileNotFoundError):
    """An ImageNet checkpoint a row needs is absent; the message says how to get it."""


@dataclasses.dataclass
class TrainOptions:
    model: str
    mode: str
    dataset_dir: str
    train_dir: str
    checkpoint_path: str | None = None
    checkpoint_dir: str = "checkpoints"
    checkpoint_exclude_scopes: tuple = ()
    trainable_scopes: tuple = ()
    ignore_missing_vars: bool = False
    allow_random_init: bool = False
    use_prefix_cache: bool = True
    image_size: int = 0
    optimizer: str = "adam"
    learning_rate: float = 0.0
    batch_size: int = 32
    max_number_of_steps: int = 0
    num_epochs: float = 10.0
    class_weight: str = "balanced"
    svm_standardize: bool = False
    svm_class_weight: str | None = None
    cache_dir: str = ""
    seed: int = 0
    log_every_n_steps: int = 10
    save_interval_steps: int = 100
    eval_every_n_steps: int = 50


@dataclasses.dataclass
class TrainResult:
    train_dir: str
    seconds: float
    steps: int
    checkpoint_description: str


def fix_command(model):
    if model == "efficientnet_lite0":
        return "python -m thyroid.checkpoints convert --model=efficientnet_lite0"
    return f"python -m thyroid.checkpoints download --models={model}"


def resolve_pretrained(spec, options):
    """(checkpoint path or None, description) for the frozen / restored part."""
    if options.mode == "scratch":
        return None, "random init (trained from scratch)"
    if options.checkpoint_path:
        return options.checkpoint_path, f"ImageNet ({options.checkpoint_path})"
    path, exists = default_checkpoint_path(spec, options.checkpoint_dir)
    if exists:
        return path, f"ImageNet ({path})"
    if options.allow_random_init:
        logging.warning("%s: no checkpoint at %s; using RANDOM weights (--allow_random_init)",
                        spec.name, path)
        return None, "random init (no ImageNet checkpoint)"
    raise MissingCheckpointError(
        f"{spec.name}: ImageNet checkpoint not found at {path}. Get it with: {fix_command(spec.name)} "
        "(or pass --checkpoint_path, or --allow_random_init to use random weights)")


def uses_prefix_cache(spec, mode, trainable_scopes, enabled):
    """The VGG prefix cache applies when nothing below the cached layer is trained."""
    if mode != "finetune" or not enabled or spec.frozen_prefix is None:
        return False
    return set(trainable_scopes) <= set(spec.trainable_scopes)


def train(options):
    if options.mode not in MODES:
        raise ValueError(f"--mode must be one of {MODES}, not {options.mode!r}")
    spec = get_network(options.model)
    if options.mode == "scratch" and spec.imagenet_logits is not None:
        logging.info("scratch mode: %s starts from random weights", spec.name)
    checkpoint_path, description = resolve_pretrained(spec, options)
    trainable_scopes = tuple(options.trainable_scopes) or tuple(spec.trainable_scopes)
    config = RunConfig(
        model=spec.name, mode=options.mode, dataset_dir=os.path.abspath(options.dataset_dir),
        image_size=options.image_size or spec.default_image_size,
        checkpoint_path=os.path.abspath(checkpoint_path) if checkpoint_path else None,
        checkpoint_description=description,
        cache_dir=os.path.abspath(options.cache_dir or os.path.join(options.dataset_dir, "activation_cache")),
        trainable_scopes=trainable_scopes,
        uses_frozen_prefix=uses_prefix_cache(spec, options.mode, trainable_scopes, options.use_prefix_cache),
        seed=options.seed)
    os.makedirs(options.train_dir, exist_ok=True)
    config.save(options.train_dir)
    started = time.monotonic()
    train_inputs = load_split_inputs(config, "train")
    if options.mode == "bottleneck_svm":
        model = svm.fit_svm(train_inputs.values, train_inputs.labels, options.svm_standardize,
                            options.svm_class_weight, options.seed)
        svm.save_svm(model, options.train_dir)
        steps = 1
    else:
        validation_inputs = load_split_inputs(config, "validation")
        max_steps = options.max_number_of_steps or steps_for_epochs(
            options.num_epochs, len(train_inputs.labels), options.batch_size)
        loop_options = LoopOptions(
            max_number_of_steps=max_steps, batch_size=options.batch_size,
            optimizer=options.optimizer,
            learning_rate=options.learning_rate or DEFAULT_LEARNING_RATES[options.mode],
            class_weight=options.class_weight,
            checkpoint_exclude_scopes=tuple(options.checkpoint_exclude_scopes),
            ignore_missing_vars=options.ignore_missing_vars,
            log_every_n_steps=options.log_every_n_steps,
            save_interval_steps=options.save_interval_steps,
            eval_every_n_steps=options.eval_every_n_steps)
        steps = train_graph_model(config, options.train_dir, loop_options, train_inputs, validation_inputs)
    seconds = time.monotonic() - started
    logging.info("%s/%s trained in %.1fs -> %s", spec.name, options.mode, seconds, options.train_dir)
    return TrainResult(options.train_dir, seconds, steps, description)
