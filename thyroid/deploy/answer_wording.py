"""How ``predict`` and the web app word an export's answer: what its number is (the label's
meaning, ``datasets.label_meaning``) and where its threshold came from, both read from
metadata.json; an export written before these fields existed gets neutral wording."""

import dataclasses

from thyroid.datasets import label_meaning

# metadata.json's key for the threshold's origin (written by the export).
THRESHOLD_SOURCE_KEY = "threshold_source"
UNRECORDED_THRESHOLD_SOURCE = "not recorded in this export"


@dataclasses.dataclass(frozen=True)
class AnswerWording:
    meaning: label_meaning.LabelMeaning
    threshold: float
    threshold_source: str

    @classmethod
    def from_metadata(cls, metadata, threshold):
        source = metadata.get(THRESHOLD_SOURCE_KEY)
        return cls(label_meaning.from_metadata(metadata), float(threshold),
                   source if isinstance(source, str) and source else
                   UNRECORDED_THRESHOLD_SOURCE)

    def json_fields(self):
        """The keys every JSON answer carries: what the number is and the threshold's origin."""
        return {"label_meaning": self.meaning.answer, "label_meaning_kind": self.meaning.kind,
                "threshold_source": self.threshold_source}

    def summary_line(self, ensemble=False):
        """``predict``'s line under its table."""
        spread = " (+-SD across fold models)" if ensemble else ""
        return (f"P(malignant) is the model's {self.meaning.answer}; risk: recalibrated{spread}. "
                f"Label at threshold {self.threshold:g} on P(malignant), from "
                f"{self.threshold_source}. {self.meaning.detail}")
