"""Adapting an export to a site's own labelled images: the library behind ``python -m
thyroid.adapt``.

The site's images are read by the project's readers (``datasets.build_sources``, as a build
reads them: every file hashed, byte-identical copies labelled both ways left out) and grouped
as the study groups them: by patient, patients sharing a byte-identical image joined
(``splits.split_units_of_images``; a reader without patient ids makes every image its own
patient). Each image goes through the export as ``predict`` would (the crop and size in its
metadata.json, LiteRT): its P(malignant), its risk and its pooled ``features``. Then
``training.adaptation`` measures the adaptation by the site's own 5 x 3 grouped folds and fits
the one to ship on every image.

The new export is the old one's model files (and its segmentation network, when it has one)
with metadata.json ``adaptation`` (``applied``: what ``deploy.adapted_head`` applies to every
answer; ``adapted_from``; ``measured``: before and after by the outer folds; ``notes``), the
threshold kept as the risk the old export acted at, the label meaning of the site's labels, a
model card that says it was adapted, and, when the old export carries a shift reference, that
reference extended with the site's images (``training.shift_extension``).
"""

import dataclasses
import os

import numpy as np
from absl import logging

from thyroid.datasets import label_meaning, splits
from thyroid.datasets.build_config import BuildConfig, BuildError
from thyroid.datasets.workers import Workers
from thyroid.deploy import adapted_head, model_card
from thyroid.deploy.export import holds_only_export_files, shift_metadata, write_export
from thyroid.deploy.segment import SEGMENT_METADATA_FILE, SEGMENT_MODEL_FILE
from thyroid.deploy.tflite_model import (CARD_FILE, ModelError, TFLiteModel, load_image_file,
                                         model_files)
from thyroid.output_guard import InputPath, check_output_dir
from thyroid.preprocessing.resize import resize_square
from thyroid.progress import Progress
from thyroid.training import adaptation

NO_FEATURES = ("has no features output (exported before the model gave its pooled features): "
               "export it again with python -m thyroid.export")


class SiteError(ValueError):
    """The site's images or the export cannot be adapted (one line: what and why)."""


@dataclasses.dataclass(frozen=True)
class SiteImage:
    """One labelled image of the site: its file, key, 0/1 label and group (its patient, or
    the unit of patients sharing a byte-identical image)."""
    path: str
    key: str
    label: int
    group: str


@dataclasses.dataclass(frozen=True)
class ReadSite:
    """The site's usable labelled images (sorted by key) and what reading them left out."""
    images: tuple
    kinds: tuple  # the source kinds read (``datasets.label_meaning.for_sources``)
    skipped: int
    notes: tuple


def read_site(sources, source_flags=None, max_pixels=None):
    """The ``ReadSite`` of ``{kind: path}``, read and grouped as a build reads and the study
    groups development images."""
    from thyroid.datasets import build_sources
    config = BuildConfig(output_dir="", sources=dict(sources), source_flags=source_flags or {},
                         **({"max_pixels": max_pixels} if max_pixels else {}))
    try:
        with Workers(1) as workers:
            found = build_sources.read_and_decode(config, workers)
    except BuildError as error:
        raise SiteError(str(error)) from None
    usable = sorted(found.usable, key=lambda example: example.key)
    groups = splits.split_units_of_images([e.patient_id for e in usable],
                                          [found.hashes[e.image_path] for e in usable])
    images = tuple(SiteImage(e.image_path, e.key, int(e.label), str(group))
                   for e, group in zip(usable, groups))
    notes = tuple(note for result in found.results.values() for note in result.notes)
    return ReadSite(images, tuple(sorted(sources)), len(found.skipped), notes)


@dataclasses.dataclass(frozen=True)
class ScoredSite:
    """What the export answers for each site image: P(malignant) (a fold ensemble's mean),
    risk, pooled features [N, D] and, when asked for, the scan-field crops at ``crop_size``
    (the shift reference's features are computed from them)."""
    probabilities: np.ndarray
    risks: np.ndarray
    features: np.ndarray
    crops: list | None


def score_site(model, images, max_pixels=None, crop_size=None):
    """Runs the export on every image as ``predict`` does; ``SiteError`` naming a file that
    cannot be read now or an export without ``features``."""
    probabilities, risks, features, crops = [], [], [], [] if crop_size else None
    progress = Progress(len(images), "adapt: the export on the site's images", "images")
    for image in images:
        try:
            rgb = load_image_file(image.path, **({"max_pixels": max_pixels} if max_pixels
                                                  else {}))
        except ValueError as error:  # ImageError: it decoded when read; it changed since
            raise SiteError(f"{image.path}: {error}") from None
        prepared = model.prepare(rgb)
        found = model.outputs(prepared.net_input)
        if found.features is None:
            raise SiteError(f"{model.model_path}: {NO_FEATURES}")
        risk, _ = model.risks(found.probabilities[None])
        probabilities.append(float(np.mean(found.probabilities)))
        risks.append(float(risk[0]))
        features.append(found.features)
        if crops is not None:
            top, bottom, left, right = prepared.box
            crops.append(resize_square(rgb[top:bottom, left:right], crop_size))
        progress.update(1)
    return ScoredSite(np.asarray(probabilities), np.asarray(risks), np.stack(features), crops)


def source_risk_threshold(model):
    """The risk at which the export acts: its ``risk_threshold``, else (a fold ensemble) the
    mean of its fold maps at its threshold, the risk of an image every fold scores there."""
    saved = model.metadata.get("risk_threshold")
    if isinstance(saved, (int, float)):
        return float(saved)
    return float(np.mean([m.apply([model.threshold])[0] for m in model.maps]))


def site_adaptation(adapter):
    """The ``deploy.adapted_head.SiteAdaptation`` of a fitted ``training.adaptation.Adapter``."""
    linear = adapter.linear_head()
    head = None if linear is None else adapted_head.LinearHead(*linear)
    return adapted_head.SiteAdaptation(adapter.method, adapter.recalibration, head)


@dataclasses.dataclass(frozen=True)
class AdaptedExport:
    """What ``adapt_export`` wrote and measured."""
    output_dir: str
    result: adaptation.AdaptationResult
    applied: adapted_head.SiteAdaptation
    threshold: float
    risk_threshold: float
    shift_reference: str | None  # the extended reference's path, None without one
    lines: tuple  # the cross-validation as printed


def check_source_export(model):
    """``SiteError`` for an export this command cannot adapt."""
    if model.adaptation is not None:
        adapted_from = (model.metadata.get(adapted_head.METADATA_KEY) or {}).get("adapted_from")
        raise SiteError(f"{model.model_dir}: already adapted (from {adapted_from}); adapt the "
                        "export it was adapted from")


def adapt_export(model_dir, sources, output_dir, source_flags=None, seed=0, num_samples=1000,
                 checkpoint_dir="checkpoints", max_pixels=None):
    """Adapts the export in ``model_dir`` to the labelled images of ``sources`` ({kind: path})
    and writes the adapted export to ``output_dir``; -> ``AdaptedExport``. Refuses too few
    images or groups of a class (``training.adaptation.AdaptationError``) before running the
    export."""
    flags = source_flags or {}
    inputs = [InputPath("model", model_dir)] + [
        InputPath(flags.get(kind, kind).lstrip("-"), path) for kind, path in sources.items()]
    output_dir = check_output_dir("output_dir", output_dir, inputs,
                                  is_ours=holds_only_export_files)
    try:
        model = TFLiteModel.load(model_dir)
    except ModelError as error:
        raise SiteError(str(error)) from None
    check_source_export(model)
    site = read_site(sources, flags, max_pixels)
    labels = np.asarray([image.label for image in site.images])
    groups = np.asarray([image.group for image in site.images])
    adaptation.check_site(labels, groups)
    reference = _shift_reference(model.model_dir)
    # The reference describes the export's own features, at the export's input size.
    crop_size = model.image_size if reference is not None else None
    scored = score_site(model, site.images, max_pixels, crop_size)
    images = adaptation.SiteImages.checked(scored.features, scored.probabilities, labels,
                                           groups, scored.risks)
    result = adaptation.cross_validate(images, num_samples, seed)
    applied = site_adaptation(adaptation.fit_adapter(images, seed))
    risk_threshold = source_risk_threshold(model)
    threshold = applied.score_threshold(risk_threshold)
    extended = None if reference is None else _extended_reference(
        reference, scored, images, checkpoint_dir, seed, model.image_size)
    adapted = AdaptedExport(output_dir, result, applied, threshold, risk_threshold,
                            None if extended is None else
                            os.path.join(output_dir, _shift_file_name()),
                            tuple(adaptation.report_lines(result)))
    _write(model, site, sources, adapted, extended)
    logging.info("adapted %s (%s) -> %s", model.model_dir, applied.method, output_dir)
    return adapted


def _shift_reference(model_dir):
    """The export's shift reference, or None when it carries none."""
    from thyroid.stats import shift
    path = os.path.join(model_dir, shift.FILE_NAME)
    if not os.path.exists(path):
        return None
    try:
        return shift.read_reference(path)
    except shift.ShiftReferenceError as error:
        raise SiteError(str(error)) from None


def _shift_file_name():
    from thyroid.stats import shift
    return shift.FILE_NAME


def _extended_reference(reference, scored, site, checkpoint_dir, seed, image_size):
    """The export's shift reference extended with the site's images' shift features,
    cross-fitted over the adaptation's outer folds."""
    from thyroid.checkpoints.locate import default_checkpoint_path
    from thyroid.training import shift_extension, shift_features
    checkpoint, exists = default_checkpoint_path(shift_features.network(), checkpoint_dir)
    if not exists:
        raise SiteError(
            f"the export carries a shift reference; extending it to the site's images needs "
            f"{shift_features.MODEL}'s ImageNet checkpoint at {checkpoint} (python -m "
            f"thyroid.checkpoints convert --models={shift_features.MODEL} "
            f"--checkpoint_dir={checkpoint_dir})")
    described = shift_features.description(checkpoint, image_size)
    if described != reference.features:
        raise SiteError(f"the export's shift reference was fitted on other features "
                        f"({reference.features}) than {checkpoint} gives ({described})")
    values = shift_features.image_features(scored.crops, checkpoint, image_size)
    parts = adaptation.grouped_test_parts(site.labels, site.groups, adaptation.OUTER_FOLDS,
                                          seed)
    return shift_extension.extend_reference(reference, values, parts)


def _model_file_bytes(model):
    """{file name: bytes} of the export's model files and of its segmentation network."""
    paths = list(model_files(model.model_path, model.metadata))
    paths += [os.path.join(model.model_dir, name) for name in (SEGMENT_MODEL_FILE,
                                                                SEGMENT_METADATA_FILE)
              if os.path.isfile(os.path.join(model.model_dir, name))]
    found = {}
    for path in paths:
        with open(path, "rb") as f:
            found[os.path.basename(path)] = f.read()
    return found


def original_card(model):
    """The card of the export being adapted: its MODEL_CARD.md with the fields its metadata
    keeps, else one built from its metadata (an export from before the cards)."""
    fields = model.metadata.get("model_card")
    path = os.path.join(model.model_dir, CARD_FILE)
    if isinstance(fields, dict) and os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return model_card.ModelCard(markdown=f.read(), fields=fields)
    return model_card.build_card({k: v for k, v in model.metadata.items() if k != "model_card"})


ADAPTED_RISK_FORMULA = ("risk = 1 / (1 + exp(-(intercept + slope * logit(score)))), the score "
                        "being the adapted export's probability; fitted on the site's labelled "
                        "images' inner out-of-fold scores")
THRESHOLD_SCALE = ("probability: the adapted score (the new head's P(malignant), or the "
                   "export's own with recalibration only), before the site's recalibration "
                   "map, which is increasing: risk_threshold is the same cut on the risk scale")


def _heat_map(model, applied):
    """What the adapted export's heat map shows, in words (None: it draws none)."""
    if applied.head is None:
        return "the export's own Grad-CAM (recalibration only: the head, and so the map, is " \
               "unchanged)"
    if not model.has_feature_map:
        return None
    layer = (model.metadata.get("features") or {}).get("layer") or "?"
    return f"{adapted_head.CAM_MEANING} (maps of {layer})"


def _adapted_metadata(model, site, sources, adapted):
    """metadata.json of the adapted export: the old export's, with the adaptation, the
    threshold kept as a risk, the site labels' meaning and (new head) the new map's source."""
    from thyroid.deploy.answer_wording import THRESHOLD_SOURCE_KEY
    metadata = {key: value for key, value in model.metadata.items() if key != "model_card"}
    applied, result = adapted.applied, adapted.result
    source = model.metadata.get(THRESHOLD_SOURCE_KEY) or "its origin not recorded"
    heat = _heat_map(model, applied)
    metadata.update({
        "threshold": adapted.threshold, "risk_threshold": adapted.risk_threshold,
        "threshold_scale": THRESHOLD_SCALE,
        THRESHOLD_SOURCE_KEY: (
            f"the risk {adapted.risk_threshold:.3f} at which the export it was adapted from "
            f"acted (its threshold from {source}), kept as a risk: the site's recalibration "
            "map carries it to the adapted score"),
        "recalibration": dict(applied.recalibration.to_json(), formula=ADAPTED_RISK_FORMULA),
        label_meaning.METADATA_KEY: label_meaning.for_sources(site.kinds).to_json(),
        adapted_head.METADATA_KEY: {
            "applied": applied.to_json(), "adapted_from": model.model_dir,
            "site": {"sources": dict(sources), "images": result.images, "groups": result.groups,
                     "benign": result.benign, "malignant": result.malignant,
                     "skipped": site.skipped, "reader_notes": list(site.notes)},
            "measured": result.to_json(), "report": list(adapted.lines),
            "heat_map": heat, "notes": _notes(adapted)}})
    if applied.head is not None:
        metadata["cam"] = None if heat is None else {
            "layer": (model.metadata.get("features") or {}).get("layer"),
            "target": "logit of the new head", "method": adapted_head.CAM_MEANING,
            "combine": None}
    return metadata


def _notes(adapted):
    from thyroid.training.shift_extension import EXTENSION_NOTE
    notes = list(adapted.result.notes)
    if adapted.shift_reference:
        notes.append(EXTENSION_NOTE)
    return notes


def _write(model, site, sources, adapted, extended):
    """Writes the adapted export: model files (and segmentation), the extended shift
    reference, labels, model card and, last, metadata.json."""
    files = _model_file_bytes(model)
    if extended is not None:
        from thyroid.stats import shift
        files[shift.FILE_NAME] = shift.reference_bytes(extended)
    metadata = _adapted_metadata(model, site, sources, adapted)
    if extended is not None:  # the answers score shift against the extended reference
        metadata["shift"] = shift_metadata(extended)
    meta = metadata[adapted_head.METADATA_KEY]
    facts = model_card.AdaptationFacts(
        adapted_from=model.model_dir,
        site=(f"{', '.join(f'{kind} {path}' for kind, path in sorted(sources.items()))}: "
              f"{adapted.result.images} labelled images in {adapted.result.groups} groups "
              f"({adapted.result.benign} benign, {adapted.result.malignant} malignant)"),
        method=adapted.applied.method, recalibration=adapted.applied.recalibration.describe(),
        threshold=adapted.threshold, risk_threshold=adapted.risk_threshold,
        heat_map=meta["heat_map"] or "none: the export it was adapted from gives no "
                                     "feature_map, from which the new head's map is drawn",
        measured=adapted.lines, notes=tuple(meta["notes"]),
        label=label_meaning.for_sources(site.kinds).detail)
    layout = (model.metadata.get("ensemble") or {}).get("layout") or "single"
    write_export(adapted.output_dir, files, metadata, layout,
                 card=model_card.adapted_card(original_card(model), facts))
