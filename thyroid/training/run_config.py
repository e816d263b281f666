"""Every setting of one training run, validated once and saved whole in its train_dir.

``RunConfig`` is built from flags by ``thyroid.train`` or by the study, checked by
``validate()`` and handed to training, evaluation and export. ``train`` resolves the
defaults (image size, learning rate, step count, scopes, checkpoint) before saving, so
``run_config.json`` says exactly how the run was trained and ``RunConfig.load`` rebuilds it.
"""

import dataclasses
import os
import sys

from absl import logging

from thyroid.flag_errors import FlagValueError
from thyroid.io_utils import atomic_write_json, read_json

FILE_NAME = "run_config.json"
FORMAT = 2
MODES = ("scratch", "bottleneck_svm", "bottleneck_fc", "finetune", "bottleneck_logreg")
# Modes fitted by scikit-learn on cached activations in one go (no steps, no checkpoints).
FEATURE_CLASSIFIER_MODES = ("bottleneck_svm", "bottleneck_logreg")
OPTIMIZERS = ("adam", "sgd", "momentum", "rmsprop")
CLASS_WEIGHTS = ("balanced", "none")
SVM_CLASS_WEIGHTS = (None, "balanced")
DEFAULT_LEARNING_RATES = {"scratch": 1e-3, "bottleneck_svm": 1e-3, "bottleneck_fc": 1e-3,
                          "finetune": 1e-4, "bottleneck_logreg": 1e-3}
MAX_IMAGE_SIZE = 1024
MAX_BATCH_SIZE = 4096
MAX_STEPS = 10_000_000
MAX_EPOCHS = 10_000.0
MAX_LEARNING_RATE = 10.0
MAX_INTERVAL = 1_000_000
# Where a value may be 0, 0 means "the default resolved at training time".
INTEGER_RANGES = {
    "image_size": (0, MAX_IMAGE_SIZE), "batch_size": (1, MAX_BATCH_SIZE),
    "max_number_of_steps": (0, MAX_STEPS), "seed": (0, 2**31 - 1),
    "log_every_n_steps": (1, MAX_INTERVAL), "save_interval_steps": (1, MAX_INTERVAL),
    "eval_every_n_steps": (1, MAX_INTERVAL), "early_stopping_patience": (0, MAX_INTERVAL),
}


class ConfigError(FlagValueError):
    """A setting is out of range or inconsistent; ``flag`` names it, ``value`` is what was given."""


class OldFormatError(ValueError):
    """A run_config.json this version cannot read."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    model: str
    mode: str
    dataset_dir: str
    # ImageNet checkpoint of the frozen / restored part; None: resolved from checkpoint_dir.
    checkpoint_path: str | None = None
    checkpoint_dir: str = "checkpoints"
    checkpoint_exclude_scopes: tuple = ()
    # Start from every weight of checkpoint_path (a run of this network with this head, such
    # as a previous study's exported model): nothing excluded, the head included.
    restore_all: bool = False
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
    # bottleneck_logreg: end points pooled into the features; () = the network's own list.
    feature_layers: tuple = ()
    cache_dir: str = ""
    seed: int = 0
    log_every_n_steps: int = 10
    save_interval_steps: int = 100
    eval_every_n_steps: int = 50
    # The validation interval in epochs of the training part (fractions allowed); 0 = use
    # eval_every_n_steps. Resolved to steps when training starts (``eval_interval_steps``),
    # so the interval, and the early-stopping patience counted in evaluations, grow with the
    # training set instead of ending a larger run after the same number of steps.
    eval_every_n_epochs: float = 0.0
    threshold: float = 0.5
    # Cross-validation: the fold file (datasets.folds) and which fold of which repeat this run
    # trains on (fold -1: every image, the refit); None = the shards' own splits.
    fold_file: str | None = None
    cv_repeat: int = 0
    cv_fold: int = 0
    # Keep the checkpoint with the best validation AUC and predict from it (early stopping).
    keep_best_checkpoint: bool = False
    # With keep_best_checkpoint: stop once this many validation evaluations in a row have not
    # beaten the best one (0 = train for every step); with eval_every_n_epochs, patience x
    # that many epochs.
    early_stopping_patience: int = 0
    # Filled in by training: what the weights started from, and whether VGG fine-tuning
    # trained from cached frozen-prefix activations.
    checkpoint_description: str = ""
    uses_frozen_prefix: bool = False

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def validate(self, check_dataset=True):
        """Raises ConfigError naming the first bad setting; returns self.

        The checks that need no network come first, so most mistakes are reported before
        TensorFlow loads.
        """
        _check_choice("mode", self.mode, MODES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        _check_choice("svm_class_weight", self.svm_class_weight, SVM_CLASS_WEIGHTS)
        for name, (low, high) in INTEGER_RANGES.items():
            _check_range(name, getattr(self, name), low, high)
        _check_range("learning_rate", self.learning_rate, 0.0, MAX_LEARNING_RATE,
                     "0 = the mode's default")
        _check_range("threshold", self.threshold, 0.0, 1.0)
        if not 0.0 < self.num_epochs <= MAX_EPOCHS:
            raise ConfigError("num_epochs", self.num_epochs, f"must be in (0, {MAX_EPOCHS:g}]")
        _check_range("eval_every_n_epochs", self.eval_every_n_epochs, 0.0, MAX_EPOCHS,
                     "0 = --eval_every_n_steps")
        _check_range("cv_repeat", self.cv_repeat, 0, MAX_INTERVAL)
        _check_range("cv_fold", self.cv_fold, -1, MAX_INTERVAL, "-1 = every image")
        if self.restore_all and not self.checkpoint_path:
            raise ConfigError("restore_all", True, "needs a checkpoint_path to restore from")
        if self.fold_file and not os.path.isfile(self.fold_file):
            raise ConfigError("fold_file", self.fold_file, "no such file")
        if check_dataset:
            check_dataset_dir(self.dataset_dir)
        self._validate_network()
        return self

    def _validate_network(self):
        from thyroid.nets import NETWORK_NAMES, get_network
        _check_choice("model", self.model, NETWORK_NAMES)
        spec = get_network(self.model)
        if self.mode == "bottleneck_logreg" and not (self.feature_layers or spec.feature_layers):
            raise ConfigError("feature_layers", "", f"{self.model} has no default layer list; "
                              "name its end points (comma-separated)")
        if self.image_size and self.image_size < spec.min_image_size:
            raise ConfigError("image_size", self.image_size,
                              f"{self.model} needs at least {spec.min_image_size} "
                              f"(0 = its default {spec.default_image_size})")

    def to_dict(self):
        return dataclasses.asdict(self)

    def save(self, train_dir, argv=None):
        """Writes run_config.json: every setting, the package version and the command line."""
        from thyroid import __version__
        atomic_write_json(os.path.join(train_dir, FILE_NAME), {
            "format": FORMAT, "thyroid_version": __version__,
            "command_line": list(sys.argv if argv is None else argv), "config": self.to_dict()})

    @classmethod
    def load(cls, train_dir):
        path = os.path.join(train_dir, FILE_NAME)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: not a training directory (no {FILE_NAME})")
        return cls.from_saved(read_json(path), path)

    @classmethod
    def from_saved(cls, saved, path=FILE_NAME):
        if saved.get("format") == FORMAT:
            values = dict(saved["config"])
        elif "format" not in saved and "model" in saved:
            values = _from_first_format(saved)
        else:
            raise OldFormatError(f"{path}: format {saved.get('format')!r} is not readable by this "
                                 f"version (expects {FORMAT}); retrain the run with thyroid.train")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise OldFormatError(f"{path}: unknown settings {', '.join(unknown)}; it was written by "
                                 "another version of thyroid: retrain the run or remove them")
        for key in ("checkpoint_exclude_scopes", "trainable_scopes", "feature_layers"):
            values[key] = tuple(values.get(key, ()))
        return cls(**values)


def _from_first_format(saved):
    """The first run_config.json kept no training settings: load what it has, defaults for the rest."""
    values = {key: value for key, value in saved.items() if key != "extra"}
    logging.warning("run_config.json of the first format: optimizer, learning rate, batch size and "
                    "steps were not recorded; their defaults are shown instead")
    return values


def _check_choice(flag, value, choices):
    if value not in choices:
        allowed = ", ".join(str(choice) for choice in choices)
        raise ConfigError(flag, value, f"must be one of {allowed}")


def _check_range(flag, value, low, high, note=""):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(flag, value, f"must be in [{low:g}, {high:g}]" + (f" ({note})" if note else ""))


def check_dataset_dir(dataset_dir, split="train"):
    """The folder exists and holds shards of ``split`` (from thyroid.build_tfrecords)."""
    if not dataset_dir:
        raise ConfigError("dataset_dir", dataset_dir, "is required (a folder of TFRecord shards)")
    if not os.path.isdir(dataset_dir):
        raise ConfigError("dataset_dir", dataset_dir, "no such folder")
    try:  # listed, not globbed: the folder's own name may hold glob wildcards ([, *, ?)
        names = os.listdir(dataset_dir)
    except OSError as error:
        raise ConfigError("dataset_dir", dataset_dir,
                          f"cannot read ({error.strerror or error})") from error
    if not any(n.startswith(f"{split}-") and n.endswith(".tfrecord") for n in names):
        raise ConfigError("dataset_dir", dataset_dir, f"holds no {split}-*.tfrecord shards; "
                          "build them with python -m thyroid.build_tfrecords")
