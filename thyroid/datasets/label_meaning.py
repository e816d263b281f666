"""What label 1 ("malignant") stands for, by the sources the labels came from.

DDTI's labels are TIRADS ratings (4a and above = 1), not pathology, so a model trained on them
gives the risk of such a rating; the other readers take a diagnosis (a report's, a class
folder's or a CSV column's) as the label. The export writes the meaning into metadata.json
(``label_meaning``) and the report, the web app and ``predict`` word their answers by it; an
export written before the field existed says neither (``UNSTATED``).
"""

import dataclasses

# The key in an export's metadata.json.
METADATA_KEY = "label_meaning"
# Readers whose label is a TIRADS rating rather than a diagnosis.
TIRADS_SOURCES = ("ddti",)


@dataclasses.dataclass(frozen=True)
class LabelMeaning:
    """``kind``: ``tirads``, ``malignancy`` or ``unstated``; ``answer``: what the model's
    number is, as a phrase ("risk of a TIRADS 4a or above rating"); ``score_title`` and
    ``risk_title``: how a page heads the raw score and the recalibrated risk; ``detail``: one
    sentence on where the labels came from."""
    kind: str
    answer: str
    score_title: str
    risk_title: str
    detail: str

    def to_json(self):
        return dataclasses.asdict(self)


TIRADS = LabelMeaning(
    "tirads", "risk of a TIRADS 4a or above rating",
    "Model score for a TIRADS 4a or above rating", "Risk of a TIRADS 4a or above rating",
    "The labels include DDTI's, which are TIRADS ratings (4a and above = 1), not pathology: "
    "the number is the risk of such a rating, not of malignancy.")
MALIGNANCY = LabelMeaning(
    "malignancy", "probability of malignancy",
    "Probability of malignancy (model score)", "Recalibrated risk of malignancy",
    "The labels are diagnoses (a report's, a class folder's or a CSV column's benign / "
    "malignant), so the number is a probability of malignancy as those diagnoses define it.")
UNSTATED = LabelMeaning(
    "unstated", "score for the label 'malignant'",
    "Model score for the label 'malignant'", "Recalibrated risk",
    "This export does not record what its training labels meant (TIRADS ratings or "
    "diagnoses); read the number as the score of the label the model was trained on.")
MEANINGS = {meaning.kind: meaning for meaning in (TIRADS, MALIGNANCY, UNSTATED)}


def for_sources(kinds):
    """The meaning of labels read by the source kinds ``kinds`` (``ddti``, ``local``,
    ``folders``, ``csv``): any TIRADS-labelled source makes the label a TIRADS rating (the
    model learnt it alongside the diagnoses); no source at all, unstated."""
    kinds = set(kinds)
    if not kinds:
        return UNSTATED
    return TIRADS if kinds & set(TIRADS_SOURCES) else MALIGNANCY


def from_metadata(metadata):
    """The meaning an export's metadata.json records (its ``kind``; the wording is this
    version's), ``UNSTATED`` when it records none or one this version does not know."""
    saved = (metadata or {}).get(METADATA_KEY)
    kind = saved.get("kind") if isinstance(saved, dict) else None
    return MEANINGS.get(kind, UNSTATED)
