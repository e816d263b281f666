"""The model card every export carries: ``MODEL_CARD.md`` and the same facts in metadata.json
``model_card``.

``build_card(metadata, study)`` reads what the export knows (its metadata: network, input,
threshold, recalibration, the dataset's manifest summary, the run's own test metrics) and,
when a study exported the model, ``StudyFacts``: the row, the protocol, the pooled
out-of-fold figures with their intervals and calibration, and the external sets' figures.
Text that came from the user (folder names, descriptions, paths) goes through
``markdown_text.plain``, the report's own escape: Markdown's characters escaped, line breaks
as spaces.
"""

import dataclasses
import platform

import numpy as np

import thyroid
from thyroid.datasets import label_meaning
from thyroid.markdown_text import plain
from thyroid.deploy.answer_wording import THRESHOLD_SOURCE_KEY

INTENDED_USE = (
    "Research on thyroid nodule ultrasound: scoring one ultrasound frame for the risk that its "
    "nodule is labelled malignant, to study methods and their errors. Not for screening, "
    "diagnosis or any decision about a patient.")
NO_DATES = ("acquisition dates: none of the sources records them (DDTI's case files and the "
            "report folders carry no exam date that the readers keep)")
LIMITATIONS = (
    "A research tool, not a medical device: it has not been validated for clinical use and "
    "must not be used to make or change a diagnosis or a treatment decision.",
    "Its figures describe the data it was developed on; another scanner, site, population or "
    "way of taking the picture can change them without warning (the external figures, where "
    "there are any, are the only check on other data).",
    "The input is one ultrasound frame cropped to the scan field: it sees neither the other "
    "views nor the patient's history, and a frame without a nodule still gets a score.",
    "The heat map shows which regions raised the score (Grad-CAM of the last feature maps, a "
    "coarse grid), not where the nodule or its boundary is.",
)
@dataclasses.dataclass(frozen=True)
class Estimate:
    """A figure and its 95 % interval (None where there is none)."""
    value: float | None
    low: float | None = None
    high: float | None = None

    @classmethod
    def from_summary(cls, summary, name):
        """``name``, ``name_ci_low`` and ``name_ci_high`` of a pooled summary."""
        return cls(_number(summary.get(name)), _number(summary.get(f"{name}_ci_low")),
                   _number(summary.get(f"{name}_ci_high")))

    @classmethod
    def from_metrics(cls, metrics, name):
        """``{"value", "ci95": [low, high]}`` of ``stats.metrics.evaluate_predictions``."""
        entry = metrics.get(name)
        if not isinstance(entry, dict):  # a bare number: no interval
            return cls(_number(entry) if isinstance(entry, (int, float)) else None)
        low, high = (list(entry.get("ci95") or []) + [None, None])[:2]
        return cls(_number(entry.get("value")), _number(low), _number(high))

    def text(self):
        if self.value is None:
            return "not available"
        if self.low is None or self.high is None:
            return f"{self.value:.3f}"
        return f"{self.value:.3f} (95 % CI {self.low:.3f} to {self.high:.3f})"


def _number(value):
    return None if value is None or not np.isfinite(float(value)) else float(value)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Brier score and logistic calibration (intercept, slope) of the score and of the risk."""
    brier: float | None = None
    intercept: float | None = None
    slope: float | None = None
    brier_risk: float | None = None
    intercept_risk: float | None = None
    slope_risk: float | None = None

    @classmethod
    def from_summary(cls, summary):
        return cls(*(_number(summary.get(name)) for name in (
            "brier", "calibration_intercept", "calibration_slope", "brier_recalibrated",
            "calibration_intercept_recalibrated", "calibration_slope_recalibrated")))


@dataclasses.dataclass(frozen=True)
class Figures:
    """One set of figures of the exported model's row: what they are (``scope``), on how many
    images and patients, discrimination with intervals, and calibration."""
    scope: str
    images: int | None
    patients: int | None
    auc: Estimate
    sensitivity: Estimate
    specificity: Estimate
    patient_auc: Estimate = Estimate(None)
    threshold: float | None = None
    calibration: Calibration = Calibration()

    @classmethod
    def from_summary(cls, scope, summary):
        """From ``stats.pooled.summarize_predictions`` / ``summarize_external`` of one row."""
        return cls(scope, summary.get("images"), summary.get("patients"),
                   Estimate.from_summary(summary, "auc"),
                   Estimate.from_summary(summary, "sensitivity"),
                   Estimate.from_summary(summary, "specificity"),
                   Estimate.from_summary(summary, "patient_auc_mean"),
                   _number(summary.get("threshold")), Calibration.from_summary(summary))

    @classmethod
    def from_metrics(cls, scope, metrics):
        """From a metrics file (``stats.metrics.evaluate_predictions``)."""
        counts = metrics.get("counts") or {}
        threshold = metrics.get("threshold")
        return cls(scope, counts.get("images"), counts.get("patients"),
                   Estimate.from_metrics(metrics, "auc"),
                   Estimate.from_metrics(metrics, "sensitivity"),
                   Estimate.from_metrics(metrics, "specificity"),
                   threshold=_number(threshold) if isinstance(threshold, (int, float)) else None)


@dataclasses.dataclass(frozen=True)
class StudyFacts:
    """What the study that exported a model knows about it and the run does not."""
    row_id: int
    row_label: str
    final_model: str  # how the exported model was made from the row's fits
    protocol: str
    data_description: str
    run: str  # the run folder and when it started
    quick: bool = False
    synthetic: bool = False
    development: Figures | None = None  # pooled out of fold (None on a single split)
    external: tuple = ()  # ((set name, Figures), ...)


@dataclasses.dataclass(frozen=True)
class ModelCard:
    markdown: str
    fields: dict


def software_versions(metadata):
    return {"thyroid": thyroid.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "tensorflow": metadata.get("tensorflow")}


def build_card(metadata, study=None):
    """The card of an export described by ``metadata`` (metadata.json without the card)."""
    from thyroid.deploy.tflite_model import CARD_FILE
    data = metadata.get("data") or {}
    figures = _figures(metadata, study)
    external = [(name, figures_found) for name, figures_found in (study.external if study else ())]
    fields = {
        "file": CARD_FILE,
        "intended_use": INTENDED_USE,
        "label": label_meaning.from_metadata(metadata).detail,
        "training_data": {"description": study.data_description if study else None,
                          "sources": data.get("source_counts"), "splits": data.get("splits"),
                          "dates": NO_DATES},
        "protocol": study.protocol if study else RUN_PROTOCOL,
        "row": {"id": study.row_id, "label": study.row_label} if study else None,
        "final_model": study.final_model if study else "the run's latest checkpoint",
        "run": study.run if study else metadata.get("train_dir"),
        "backbone": {"network": metadata.get("model"),
                     "weights": metadata.get("checkpoint_description"),
                     "input_size": (metadata.get("input") or {}).get("size"),
                     "quantize": metadata.get("quantize")},
        "threshold": metadata.get("threshold"), "risk_threshold": metadata.get("risk_threshold"),
        "threshold_source": metadata.get(THRESHOLD_SOURCE_KEY),
        "figures": [dataclasses.asdict(f) for f in figures],
        "external": [{"name": name, "figures": dataclasses.asdict(f)} for name, f in external],
        "shift": _shift_field(metadata),
        "software": software_versions(metadata),
        "limitations": list(limitations(study)),
    }
    return ModelCard(markdown=card_markdown(metadata, fields, figures, external), fields=fields)


RUN_PROTOCOL = ("one training run, exported by hand (python -m thyroid.export): no study "
                "protocol is recorded; the figures, if any, are the run's own test split's")


def _figures(metadata, study):
    """The development figures: the study's pooled ones, else the run's own test split's."""
    if study is not None and study.development is not None:
        return [study.development]
    test = metadata.get("test_metrics")
    if test and isinstance(test.get("values"), dict):
        return [Figures.from_metrics(f"the run's own test split ({test.get('file')})",
                                     test["values"])]
    return []


def limitations(study):
    found = list(LIMITATIONS)
    if study is not None and study.synthetic:
        found.insert(0, "Trained on synthetic images made by thyroid.synth: for testing the "
                        "software only, never for a real image.")
    if study is not None and study.quick:
        found.insert(0, "Made by a --quick study (tiny inputs, at most two epochs): a smoke "
                        "test whose figures mean nothing.")
    return found


def card_markdown(metadata, fields, figures, external):
    """MODEL_CARD.md: every user string through ``plain``."""
    row = fields["row"]
    title = f"{metadata.get('model')}" + (f", study row {row['id']}" if row else "")
    lines = [f"# Model card: {title}", "",
             "**Research tool, not a medical device: not for diagnosis.**", "",
             "## Intended use", "", INTENDED_USE, "",
             "## What the label means", "", fields["label"], "",
             "## Training data", ""]
    lines += _data_lines(fields["training_data"]) + ["", "## Protocol", "",
                                                     fields["protocol"], ""]
    lines += _model_lines(metadata, fields) + ["", "## Figures", ""]
    if not figures:
        lines += ["No figures: the export found neither a study's pooled figures nor the "
                  "run's own test metrics.", ""]
    for found in figures:
        lines += _figure_lines(found.scope, found)
    for name, found in external:
        lines += _figure_lines(f"External set {plain(name)}: {found.scope}", found)
    if not external:
        lines += ["No external set: the figures above are the only estimate of how the "
                  "model does, all on the data it was developed on.", ""]
    lines += _output_lines(metadata) + _shift_lines(fields["shift"]) + ["## Software", ""]
    lines += [f"- {name}: {version}" for name, version
              in fields["software"].items() if version]
    lines += ["", "## Limitations", ""] + [f"- {text}" for text in fields["limitations"]]
    return "\n".join(lines) + "\n"


def _data_lines(data):
    lines = []
    if data["description"]:
        lines.append(f"- Description: {plain(data['description'])}")
    for kind, source in (data["sources"] or {}).items():
        counts = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value
                           in source.items() if key != "path" and value is not None)
        lines.append(f"- Source {kind}: {plain(source.get('path') or '?')} ({counts})")
    for split, summary in (data["splits"] or {}).items():
        if not isinstance(summary, dict) or not summary.get("images"):
            continue
        by_class = summary.get("original") or {}
        classes = ", ".join(f"{count} {name}" for name, count in by_class.items())
        lines.append(f"- Split {split}: {sum(by_class.values())} original images "
                     f"({classes}) from {summary.get('patients')} patients; "
                     f"{summary.get('images')} images with augmented copies")
    lines.append(f"- {NO_DATES[0].upper()}{NO_DATES[1:]}.")
    return lines


def _model_lines(metadata, fields):
    backbone = fields["backbone"]
    row = fields["row"]
    lines = ["## Model", ""]
    if row:
        lines.append(f"- Study row {row['id']}: {row['label']}")
    chosen = f"from {plain(fields['threshold_source'])}" if fields["threshold_source"] else \
        "its origin not recorded"
    lines += [f"- Backbone: {backbone['network']}, starting weights "
              f"{plain(backbone['weights'] or 'not recorded')}; input {backbone['input_size']} "
              f"x {backbone['input_size']} px; quantization {backbone['quantize']}",
              f"- Final model: {fields['final_model']}",
              f"- Run: {plain(fields['run'] or 'not recorded')}",
              f"- Threshold: {_decimal(fields['threshold'])} on P(malignant) "
              f"(risk {_decimal(fields['risk_threshold'])}), {chosen}"]
    recalibration = metadata.get("recalibration") or {}
    ensemble = metadata.get("ensemble") or {}
    if ensemble:
        lines.append(f"- Fold ensemble of {ensemble.get('folds')} models: "
                     f"{ensemble.get('combine', '')}")
    elif recalibration.get("method") and not recalibration.get("note"):
        lines.append(f"- Risk: {recalibration['method']} recalibration, intercept "
                     f"{_decimal(recalibration.get('intercept'))}, slope "
                     f"{_decimal(recalibration.get('slope'))}, fitted on inner-validation "
                     "predictions only")
    else:
        lines.append(f"- Risk: {recalibration.get('note') or 'equals the score'}")
    return lines


def _decimal(value):
    return "not available" if value is None else f"{float(value):.3f}"


def _figure_lines(title, found):
    calibration = found.calibration
    lines = [f"### {title}", "",
             f"{found.images if found.images is not None else '?'} images, "
             f"{found.patients if found.patients is not None else '?'} patients; 95 % "
             "intervals by bootstrap over patients.", "",
             "| figure | value |", "|---|---|",
             f"| AUC | {found.auc.text()} |",
             f"| sensitivity at the threshold | {found.sensitivity.text()} |",
             f"| specificity at the threshold | {found.specificity.text()} |"]
    if found.patient_auc.value is not None:
        lines.append(f"| patient-level AUC (mean over a patient's images) | "
                     f"{found.patient_auc.text()} |")
    if calibration.brier is not None:
        lines += [f"| Brier score, score / risk | {_decimal(calibration.brier)} / "
                  f"{_decimal(calibration.brier_risk)} |",
                  f"| calibration intercept, score / risk (0 is ideal) | "
                  f"{_decimal(calibration.intercept)} / {_decimal(calibration.intercept_risk)} |",
                  f"| calibration slope, score / risk (1 is ideal) | "
                  f"{_decimal(calibration.slope)} / {_decimal(calibration.slope_risk)} |"]
    return lines + [""]


NO_SHIFT = ("This export carries no shift reference (shift_reference.npz): its answers give "
            "shift null, so nothing says when an image is unlike the development images.")


def _shift_field(metadata):
    """The card's ``shift``: the reference the export carries, or None."""
    found = metadata.get("shift")
    if not isinstance(found, dict):
        return None
    return {"file": found.get("file"), "development_images": found.get("development_images"),
            "unusual_above": found.get("unusual_above"), "meaning": found.get("meaning")}


def _shift_lines(shift):
    lines = ["## Shift score", ""]
    if shift is None:
        return lines + [NO_SHIFT, ""]
    return lines + [
        f"The export carries {shift['file']}, the reference of the "
        f"{shift['development_images']} development images, and every answer gives the "
        f"image's shift: {shift['meaning']}. An unusual image still gets its answer, with a "
        "warning: nothing in the figures above speaks for images like it.", ""]


def _output_lines(metadata):
    features = metadata.get("features") or {}
    cam = metadata.get("cam") or {}
    lines = ["## Outputs", "",
             "- probability: P(malignant), which decides the label at the threshold; the risk "
             "beside it is the probability through the recalibration map"]
    if cam:
        lines.append(f"- cam: Grad-CAM of the {cam.get('target', '')} at layer "
                     f"{cam.get('layer', '')}, drawn by the model itself")
    if features:
        lines.append(f"- features: {features.get('meaning', '')} (layer "
                     f"{features.get('layer') or '?'}, weights "
                     f"{plain(features.get('weights') or '?')})")
    return lines + [""]


@dataclasses.dataclass(frozen=True)
class AdaptationFacts:
    """What the card of an adapted export says about the adaptation (``python -m
    thyroid.adapt``): where it came from, the site's images, what was chosen and applied,
    the decision threshold, the heat map, and the site's own cross-validation as printed."""
    adapted_from: str
    site: str  # the site's images: sources and counts
    method: str
    recalibration: str  # the map, described
    threshold: float
    risk_threshold: float
    heat_map: str
    measured: tuple  # the cross-validation's printed lines
    label: str = ""  # what the site's labels mean (the adapted risk is of them)
    notes: tuple = ()


def adapted_card(original, facts):
    """The card of an adapted export: an "Adapted to a site" section after the title, then the
    card of the export it was adapted from (``original``, a ``ModelCard``), whose figures stay
    that model's, on its development data."""
    lines = original.markdown.splitlines()
    title = f"{lines[0]}, adapted to a site" if lines and lines[0].startswith("# ") else \
        "# Model card, adapted to a site"
    body = lines[1:] if lines and lines[0].startswith("# ") else lines
    section = ["", "**Research tool, not a medical device: not for diagnosis.**", "",
               "## Adapted to a site", "",
               f"This export was adapted by python -m thyroid.adapt from "
               f"{plain(facts.adapted_from)}: the same network, answering through what the "
               "site's own labelled images chose. The sections after this one describe the "
               "export it was adapted from; their figures are that model's, on its development "
               "data, not the adapted model's.", "",
               f"- Site images: {plain(facts.site)}",
               f"- Label: {facts.label or 'not recorded'} (the label section below is the "
               "export's it was adapted from)",
               f"- Chosen by the inner folds' log-loss: {facts.method}",
               f"- Risk: {plain(facts.recalibration)}",
               f"- Threshold: {facts.threshold:.3f} on the adapted score, the risk "
               f"{facts.risk_threshold:.3f} the export it was adapted from acted at",
               f"- Heat map: {facts.heat_map}", "",
               "The site's own cross-validation (every image scored by an adaptation that "
               "never saw it):", "", "```"] + list(facts.measured) + ["```", ""]
    section += [f"- Note: {plain(note)}" for note in facts.notes] + ([""] if facts.notes else [])
    fields = dict(original.fields, adaptation=dataclasses.asdict(facts),
                  threshold=facts.threshold, risk_threshold=facts.risk_threshold,
                  limitations=list(original.fields.get("limitations") or ()) + [ADAPTED_LIMIT])
    markdown = "\n".join([title] + section + _without_notice(body)) + "\n"
    limits = "## Limitations\n\n"
    return ModelCard(markdown=markdown.replace(limits, f"{limits}- {ADAPTED_LIMIT}\n", 1),
                     fields=fields)


ADAPTED_LIMIT = ("Adapted to one site's images: its site figures come from that site's own "
                 "cross-validation, on few images; on other sites it may do worse than the "
                 "export it was adapted from.")


def _without_notice(lines):
    """The original card's lines without its leading notice (the section above repeats it)."""
    notice = "**Research tool, not a medical device: not for diagnosis.**"
    out = list(lines)
    while out and out[0].strip() in ("", notice):
        out.pop(0)
    return [""] + out
