"""What each kind of job leaves in its result: one dataclass per kind (``study.kinds`` names
it), saved in ``result.json`` as JSON and read back typed by ``from_json``, which refuses
anything else (an unknown or missing field, a value of another type) with a ValueError naming
the field. Nested values that are another module's own JSON form stay in that form: a
recalibration map (``RecalibrationMap.to_json``), a single split's metrics
(``stats.metrics.evaluate_predictions``), the outline set's summary (``datasets.outlines``).
"""

import dataclasses
import types
import typing

from thyroid.stats.pooled import RowFigures


@dataclasses.dataclass(frozen=True)
class Sources:
    """data: where the development images are, and how the report names them."""
    ddti_dir: str | None
    local_dir: str | None
    description: str
    image_dir: str | None = None
    csv: str | None = None


@dataclasses.dataclass(frozen=True)
class ShardsPayload:
    """shards and external_shards: the dataset folder (and how long the build took)."""
    dataset_dir: str
    build_seconds: float | None = None
    # --init_from: this study's images checked against the previous run's (none shared).
    previous_run_checked: int | None = None


@dataclasses.dataclass(frozen=True)
class CheckpointsPayload:
    models: list


@dataclasses.dataclass(frozen=True)
class OutlinesPayload:
    summary: dict  # the outline set's own summary (datasets.outlines.counts)


@dataclasses.dataclass(frozen=True)
class FeaturesPayload:
    input: str | None = None  # what the row's network is fed (training.model.input_kind)
    outlined_images: int | None = None  # the localisation rows: images with an outline


@dataclasses.dataclass(frozen=True)
class LocalisationFacts:
    """A localisation row's fold (study.localisation_fitting.run_fold)."""
    members: dict  # member -> its C selection (training.logreg)
    member_test_probabilities: dict  # member -> probabilities, in the fold's record order
    nodule_found: dict  # part -> [found, images]
    segmentation: list | None = None  # row 12: the test outlines' evaluation records


@dataclasses.dataclass(frozen=True)
class FoldFit:
    """fit, cross-validated: one (repeat, fold); its records are in records.json."""
    repeat: int
    fold: int
    threshold: float
    best_epochs: float | None
    seconds: float
    checkpoint: str = ""
    recalibration: dict = dataclasses.field(default_factory=dict)
    validation: dict = dataclasses.field(default_factory=dict)  # {labels, probs}
    localisation: LocalisationFacts | None = None


@dataclasses.dataclass(frozen=True)
class SplitFit:
    """fit, single split: the test metrics (stats.metrics.evaluate_predictions)."""
    metrics: dict
    checkpoint: str
    train_seconds: float
    train_dir: str


@dataclasses.dataclass(frozen=True)
class ExternalCheckPayload:
    """external_check (datasets.duplicates.ExternalCheck): pairs {external, development, ...}."""
    exact: list
    near: list
    external_images: int
    development_images: int
    near_bits: int

    def excluded_keys(self):
        return {pair["external"] for pair in self.exact}


@dataclasses.dataclass(frozen=True)
class RefitPayload:
    train_dir: str
    recalibration: dict


@dataclasses.dataclass(frozen=True)
class EnsemblePayload:
    folds: int


@dataclasses.dataclass(frozen=True)
class VariantPayload:
    dataset_dir: str
    images: int


@dataclasses.dataclass(frozen=True)
class Movement:
    """How far P(malignant) moved under one crop variant (study.robustness)."""
    median: float | None
    share_over_limit: float | None
    images: int


@dataclasses.dataclass(frozen=True)
class RobustnessPayload:
    variants: dict[str, Movement]


@dataclasses.dataclass(frozen=True)
class SegmentPayload:
    segment_dir: str
    images: int


@dataclasses.dataclass(frozen=True)
class ShiftPayload:
    """shift (study.shift_scores): the development images' reference, cross-fitted over the
    study's folds (``reference``: its shift_reference.npz; ``features``: what its features
    are), the per-image scores file, and each external image's shift (percent) by image key."""
    reference: str
    features: str
    development_images: int
    development_unusual: int
    scores: str
    external: dict[str, float] | None = None


@dataclasses.dataclass(frozen=True)
class ExportPayload:
    """export: the model file, or None when no row could be exported."""
    exported: str | None = None
    row_id: int | None = None
    refit: bool = False
    folds: int | None = None
    layout: str | None = None
    segment: str | None = None  # segment.tflite beside it (row 12)
    shift_reference: str | None = None  # shift_reference.npz in the export, when it has one


@dataclasses.dataclass(frozen=True)
class PooledPayload:
    """pooled: every row's figures out of fold and, with external sets, of the refit and the
    fold ensemble; ``external`` is the final model's."""
    summaries: dict[int, RowFigures]
    final_model: str
    external: dict[int, RowFigures] | None = None
    external_refit: dict[int, RowFigures] | None = None
    external_folds: dict[int, RowFigures] | None = None


@dataclasses.dataclass(frozen=True)
class ViewsPayload:
    """tta_views: {view name: dataset folder} of the development images and of the external
    set ({} without one)."""
    development: dict[str, str]
    external: dict[str, str]


@dataclasses.dataclass(frozen=True)
class TtaFold:
    """One fold under test-time augmentation: the threshold and recalibration map chosen on
    its inner validation's TTA scores, and those scores (``{labels, probs}``: the final
    model's map is fitted on every fold's)."""
    repeat: int
    fold: int
    threshold: float
    recalibration: dict
    validation: dict


@dataclasses.dataclass(frozen=True)
class TtaPayload:
    """tta: every fold's choices (its records are in records.json, the external set's too)."""
    folds: list[TtaFold]
    external_images: int | None = None


@dataclasses.dataclass(frozen=True)
class VariantFigures:
    """One compared variant of the rows (an augmentation, or test-time augmentation): its
    figures per row, pooled out of fold and (its final model) on the external set, and
    DeLong's p against the row itself on the same images."""
    out_of_fold: dict[int, RowFigures]
    p_vs_plain: dict[int, float | None]
    external: dict[int, RowFigures] | None = None
    external_p_vs_plain: dict[int, float | None] | None = None


@dataclasses.dataclass(frozen=True)
class ComparisonPayload:
    """comparison: {variant name (the augmentation's, or "tta"): its figures}."""
    variants: dict[str, VariantFigures]


@dataclasses.dataclass(frozen=True)
class ReportPayload:
    summary: str  # summary.md's path


def to_json(payload):
    return dataclasses.asdict(payload)


def from_json(hint, value, where="payload"):
    """``value`` (JSON) as ``hint``: a payload dataclass, a union of them, or a field's type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return from_json(arg, value, where)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0] if len(errors) == 1 else " / ".join(errors))
    if hint is RowFigures:
        try:
            return RowFigures.from_json(value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: {error}") from None
    if dataclasses.is_dataclass(hint):
        return _dataclass(hint, value, where)
    return _plain(hint, origin or hint, args, value, where)


def _dataclass(cls, value, where):
    if not isinstance(value, dict):
        raise ValueError(f"{where}: a {cls.__name__} mapping expected, not "
                         f"{type(value).__name__}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r} for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    missing = [name for name, field in fields.items() if name not in value
               and field.default is dataclasses.MISSING
               and field.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{where}: missing field {missing[0]!r} of {cls.__name__}")
    return cls(**{name: from_json(hints[name], item, f"{where}.{name}")
                  for name, item in value.items()})


def _plain(hint, kind, args, value, where):
    """A value of a built-in type (ints stand for floats; JSON's keys are text)."""
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind in (int, bool, str) and type(value) is kind:
        return value
    if kind in (list, tuple) and isinstance(value, list):
        items = [from_json(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)] \
            if args else value
        return tuple(items) if kind is tuple else items
    if kind is dict and isinstance(value, dict):
        if not args:
            return value
        return {_key(args[0], key, where): from_json(args[1], item, f"{where}.{key}")
                for key, item in value.items()}
    raise ValueError(f"{where}: {getattr(kind, '__name__', kind)} expected, not "
                     f"{type(value).__name__}")


def _key(hint, key, where):
    if hint is int:
        try:
            return int(key)
        except ValueError:
            raise ValueError(f"{where}: key {key!r} is not a row id") from None
    return key
