"""Every setting of one dataset build, validated once and saved whole in its manifest.

``BuildConfig`` is made from flags by ``thyroid.build_tfrecords`` (or by the study for its
development and external sets), checked by ``validate()`` and handed to
``thyroid.datasets.build.build``. The manifest keeps it under ``build_config``, resolved: an
evaluation-only build records the fractions and augmentation it really used.
"""

import dataclasses
import os
from typing import Dict

from thyroid.datasets import folders, images
from thyroid.preprocessing.augmentation_kinds import AUGMENTATIONS
from thyroid.preprocessing.tta import VIEW_NAMES
from thyroid.datasets.workers import MAX_WORKERS
from thyroid.datasets.sources import SOURCE_FLAGS, ReaderOptions, SourceError, check_sources

PROTOCOLS = ("patient", "image")
MAX_AUGMENT_COPIES = 100
MAX_SHARDS = 1000
MAX_SEED = 2 ** 31 - 1
MAX_PIXELS_LIMIT = 10 ** 9


class BuildError(Exception):
    """The build cannot go on (bad settings, unusable sources or existing output)."""


class ConfigError(BuildError, ValueError):
    """A setting out of range or inconsistent; ``flag`` names it, ``value`` is what was given."""

    def __init__(self, flag, value, reason):
        super().__init__(f"--{flag}={value}: {reason}")
        self.flag, self.value, self.reason = flag, value, reason


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    output_dir: str
    # {source kind: path}; the kinds of sources.SOURCE_FLAGS (ddti, local, folders, csv).
    sources: Dict[str, str]
    protocol: str = "patient"
    validation_fraction: float = 0.15
    test_fraction: float = 0.2
    augment_copies: int = 2
    # How the copies are made (preprocessing.augmentation_kinds): "standard" or "ultrasound".
    augmentation: str = "standard"
    crop: str = "scan"
    # One test-time view (preprocessing.tta.VIEW_NAMES) of every image, taken after its crop;
    # None: the image itself. Evaluation-only builds alone: a view set is scored, never trained.
    view: str | None = None
    num_shards: int = 2
    seed: int = 0
    overwrite: bool = False
    # Every labelled image to test, unaugmented: an external set. test_fraction=1 with
    # validation_fraction=0 means the same.
    evaluation_only: bool = False
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    reader_options: ReaderOptions = dataclasses.field(default_factory=ReaderOptions)
    # How the caller's command line names each source kind, for its errors ({}: the flags of
    # thyroid.build_tfrecords, sources.SOURCE_FLAGS).
    source_flags: Dict[str, str] = dataclasses.field(default_factory=dict)
    # Processes that decode, crop, augment and encode the images; 0 = every core this process
    # may use. It changes how fast the build runs, never what it writes.
    num_workers: int = 0

    def __post_init__(self):
        # Own copies: a caller changing its dict afterwards must not change a frozen config.
        object.__setattr__(self, "sources", dict(self.sources or {}))
        object.__setattr__(self, "source_flags", dict(self.source_flags or {}))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def flags(self):
        """{kind: flag} naming every source kind in errors."""
        return dict(SOURCE_FLAGS, **self.source_flags)

    def resolved(self):
        """The settings the build uses: evaluation-only means no validation split, every
        image in test and no augmentation, whichever way it was asked for."""
        if not (self.evaluation_only
                or (self.test_fraction == 1 and self.validation_fraction == 0)):
            return self
        return self.replace(evaluation_only=True, validation_fraction=0.0, test_fraction=1.0,
                            augment_copies=0)

    def validate(self, check_paths=True):
        """Raises ConfigError naming the first bad setting, or BuildError naming the flag of
        a source that cannot be read (``check_paths``); returns self."""
        if not self.output_dir:
            raise ConfigError("output_dir", self.output_dir, "give a folder")
        _check_choice("protocol", self.protocol, PROTOCOLS)
        _check_choice("crop", self.crop, images.CROP_MODES + images.VARIANT_CROPS)
        _check_range("augment_copies", self.augment_copies, 0, MAX_AUGMENT_COPIES)
        _check_choice("augmentation", self.augmentation, AUGMENTATIONS)
        if self.view is not None:
            _check_choice("view", self.view, VIEW_NAMES)
            if not self.resolved().evaluation_only:
                raise ConfigError("view", self.view, "a test-time view is built for "
                                  "evaluation only (--evaluation_only)")
        _check_range("num_shards", self.num_shards, 1, MAX_SHARDS)
        _check_range("seed", self.seed, 0, MAX_SEED)
        _check_range("max_pixels", self.max_pixels, 1, MAX_PIXELS_LIMIT)
        _check_range("num_workers", self.num_workers, 0, MAX_WORKERS)
        self._validate_fractions()
        self._validate_reader_options()
        if not self.sources:
            raise BuildError(f"give at least one of {', '.join(self.flags().values())}")
        if check_paths:
            try:
                check_sources(self.sources, self.flags())
            except SourceError as error:
                raise BuildError(str(error)) from error
        return self

    def _validate_fractions(self):
        _check_range("validation_fraction", self.validation_fraction, 0.0, 1.0)
        _check_range("test_fraction", self.test_fraction, 0.0, 1.0)
        if self.resolved().evaluation_only:
            return
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ConfigError("test_fraction", self.test_fraction,
                              "--validation_fraction + --test_fraction must leave images to "
                              "train on (or use --evaluation_only)")

    def _validate_reader_options(self):
        options = self.reader_options
        if isinstance(options.patient_id_regex, str):
            try:
                folders.compile_patient_regex(options.patient_id_regex)
            except folders.ReaderError as error:
                raise ConfigError("patient_id_regex", options.patient_id_regex,
                                  str(error).split(": ", 1)[-1]) from error
        table = options.diagnosis_table
        if isinstance(table, str) and not os.path.isfile(table):
            raise ConfigError("diagnosis_table", table, "no such file")

    def to_dict(self):
        """Every setting of what the build writes (the manifest's ``build_config``); the worker
        count is how it ran and goes beside the build time (``build_workers``)."""
        values = dataclasses.asdict(self)
        del values["num_workers"]
        return values


def _check_choice(flag, value, choices):
    if value not in choices:
        raise ConfigError(flag, value, f"must be one of {', '.join(map(str, choices))}")


def _check_range(flag, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(flag, value, f"must be in [{low:g}, {high:g}]")
