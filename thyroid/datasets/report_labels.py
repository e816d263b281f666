"""Labels from free-text pathology / ultrasound reports, with negation, uncertainty and context.

A report is cut into clauses (at . ; , : and line ends). Each phrase of the diagnosis table found
in a clause becomes one piece of evidence, whose kind depends on the words around it:

- history ("family history of", "previous", "anxious about") or an indication / request
  ("rule out", "to exclude", "assess for", lines headed "Indication:") -> ignored;
- uncertainty ("suspicious for", "possible", "cannot be excluded", "unlikely") -> uncertain
  ("suspicious" when it leans malignant, which ``suspicious_as_malignant`` turns into malignant);
- negation ("no", "not", "without", "negative for", "ruled out", "excluded", "free") of a
  malignant phrase -> benign statement; of a benign phrase ("not benign") -> uncertain;
- otherwise the phrase's own label. Benign phrases are statements ("benign", "Bethesda II") or
  conditions that may coexist with cancer ("goiter", "thyroiditis").

Lines headed diagnosis / impression / conclusion decide when they hold any evidence; else the
whole report does. Malignant and a benign statement together are a conflict; uncertainty
without a malignant finding excludes the report; TI-RADS (1-3 benign, 4-5 malignant) counts
only when nothing else does.
"""

import collections
import re

from thyroid import BENIGN, MALIGNANT

DIAGNOSIS_LABELS = {
    "cancerous": MALIGNANT, "cancer": MALIGNANT, "malignant": MALIGNANT,
    "malignancy": MALIGNANT, "carcinoma": MALIGNANT, "ptc": MALIGNANT, "lymphoma": MALIGNANT,
    "metastatic": MALIGNANT,
    "benign": BENIGN, "benign nodule": BENIGN, "normal": BENIGN, "simple goiter": BENIGN,
    "multinodular goiter": BENIGN, "toxic goiter": BENIGN, "goiter": BENIGN,
    "thyroiditis": BENIGN, "colloid nodule": BENIGN, "adenomatous nodule": BENIGN,
    "hyperplastic nodule": BENIGN, "follicular adenoma": BENIGN,
}
# Benign phrases that deny cancer outright; the other benign phrases may sit beside a cancer.
BENIGN_STATEMENTS = ("benign", "benign nodule")
UNCERTAIN_PHRASES = {
    "suspicious": "suspicious", "indeterminate": "uncertain", "atypia": "uncertain",
    "follicular neoplasm": "uncertain", "undetermined significance": "uncertain",
}
BRITISH = {"goitre": "goiter", "tumour": "tumor", "favour": "favor", "haemorrhag": "hemorrhag"}
HEADINGS = ("diagnosis", "impression", "conclusion", "final diagnosis", "opinion")
CONTEXT_HEADINGS = {"indication": "indication", "clinical indication": "indication",
                    "reason for": "indication", "request": "indication",
                    "clinical question": "indication", "referral": "indication",
                    "history": "history", "clinical history": "history",
                    "family history": "history", "past history": "history"}


def _cue(words):
    return re.compile(r"\b(?:" + "|".join(words) + r")\b")


HISTORY_CUES = _cue([r"history", r"h/o", r"previous(?:ly)?", r"prior", r"past", r"anxious",
                     r"worried", r"concerned", r"fear", r"mother", r"father", r"sister",
                     r"brother", r"aunt", r"uncle", r"grand\w+", r"relatives?", r"family"])
SUSPICIOUS_PRE = _cue([r"suspicious (?:for|of)", r"suspicion (?:for|of)", r"concerning for",
                       r"worrisome for", r"suggestive of", r"suspected"])
UNCERTAIN_PRE = _cue([r"possible", r"possibly", r"probable", r"probably", r"likely",
                      r"unlikely", r"may (?:be|represent)", r"could be", r"cannot exclude",
                      r"can not exclude", r"cannot rule out", r"not excluding", r"favor",
                      r"question of", r"differential", r"versus", r"vs", r"borderline",
                      r"uncertain", r"equivocal", r"indeterminate for"])
POST_UNCERTAIN = _cue([r"(?:is |was )?(?:cannot be|can not be|could not be|not be|not) "
                       r"(?:excluded|ruled out)",
                       r"(?:is |was )?(?:suspected|possible|likely|unlikely|questionable)"])
REQUEST_PRE = _cue([r"rule out", r"r/o", r"to exclude", r"exclude", r"assess for", r"to assess",
                    r"evaluate for", r"evaluation for", r"query", r"screen(?:ing)? for",
                    r"check for", r"investigate", r"referred", r"request(?:ed)?", r"indication"])
NEGATION_PRE = _cue([r"no", r"not", r"non", r"without", r"negative for", r"free of",
                     r"absence of", r"absent", r"nor", r"neither", r"never", r"ruled out",
                     r"excluded", r"excludes"])
NEGATION_POST = _cue([r"(?:is |was |has been |been )?(?:ruled out|excluded)", r"free",
                      r"negative", r"absent", r"not (?:seen|identified|detected|found|present)"])
TIRADS = re.compile(r"\b(?:acr )?(?:ti ?rads|tr)\s*(?:category|score|grade|class)?\s*:?\s*"
                    r"([1-5])\s*([abc])?\b")
BETHESDA = re.compile(r"\bbethesda\s*(?:category|class|cat|diagnostic category)?\s*:?\s*"
                      r"(vi|v|iv|iii|ii|i|[1-6])\b")
BETHESDA_KIND = {"i": None, "1": None, "ii": "benign", "2": "benign", "iii": "uncertain",
                 "3": "uncertain", "iv": "uncertain", "4": "uncertain", "v": "suspicious",
                 "5": "suspicious", "vi": "malignant", "6": "malignant"}
PRE_WINDOW = 6  # words before a phrase that a negation or hedge may govern
POST_WINDOW = 5

Evidence = collections.namedtuple("Evidence", "kind phrase clause")
Decision = collections.namedtuple("Decision", "label text reason")


def normalise(text):
    text = text.lower().replace("-", " ").replace("_", " ")
    for british, american in BRITISH.items():
        text = text.replace(british, american)
    return re.sub(r"\s+", " ", text).strip()


def _clauses(line):
    for clause in re.split(r"[.;,:\n]|\bbut\b|\bhowever\b", normalise(line)):
        if clause.strip():
            yield clause.strip()


def _last_words(text, count):
    return " ".join(text.split()[-count:])


def _first_words(text, count):
    return " ".join(text.split()[:count])


def _phrase_pattern(table):
    phrases = sorted({normalise(p) for p in list(table) + list(UNCERTAIN_PHRASES)},
                     key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(re.escape(p) for p in phrases) + r")\b")


def _context_kind(before, after, base_kind):
    """The kind of one phrase found with ``before`` / ``after`` text in its clause."""
    if HISTORY_CUES.search(before):
        return "history"
    near_before, near_after = _last_words(before, PRE_WINDOW), _first_words(after, POST_WINDOW)
    if SUSPICIOUS_PRE.search(near_before):
        return "suspicious" if base_kind == "malignant" else "uncertain"
    if UNCERTAIN_PRE.search(near_before) or POST_UNCERTAIN.match(near_after):
        return "uncertain"
    if REQUEST_PRE.search(before):
        return "indication"
    if NEGATION_PRE.search(near_before) or NEGATION_POST.match(near_after):
        negated = {"malignant": "benign", "benign": "uncertain", "condition": "uncertain"}
        return negated.get(base_kind, "ignored")
    return base_kind


def _base_kind(phrase, table):
    if phrase in UNCERTAIN_PHRASES:
        return UNCERTAIN_PHRASES[phrase]
    label = table.get(phrase)
    if label == MALIGNANT:
        return "malignant"
    return "benign" if phrase in BENIGN_STATEMENTS else "condition"


def clause_evidence(clause, table, pattern, line_kind=None):
    """Evidence of one normalised clause; ``line_kind`` overrides (indication/history lines)."""
    found = []
    for match in pattern.finditer(clause):
        phrase = match.group(0)
        kind = _context_kind(clause[:match.start()], clause[match.end():],
                             _base_kind(phrase, table))
        found.append(Evidence(line_kind or kind, phrase, clause))
    for match in BETHESDA.finditer(clause):
        kind = BETHESDA_KIND[match.group(1)]
        if kind:
            found.append(Evidence(line_kind or kind, match.group(0), clause))
    for match in TIRADS.finditer(clause):
        kind = "tirads_malignant" if int(match.group(1)) >= 4 else "tirads_benign"
        found.append(Evidence(line_kind or kind, match.group(0), clause))
    return found


def _line_kind(line):
    text = normalise(line)
    for heading, kind in CONTEXT_HEADINGS.items():
        if text.startswith(heading):
            return kind
    return None


def report_evidence(lines, table):
    pattern = _phrase_pattern(table)
    normalised_table = {normalise(p): label for p, label in table.items()}
    evidence = []
    for line in lines:
        line_kind = _line_kind(line)
        for clause in _clauses(line):
            if clause in HEADINGS or clause in CONTEXT_HEADINGS:
                continue
            evidence += clause_evidence(clause, normalised_table, pattern, line_kind)
    return evidence


def _words(items):
    seen = []
    for item in items:
        if item.clause not in seen:
            seen.append(item.clause)
    return " | ".join(seen)


def decide(evidence, suspicious_as_malignant=False):
    """Decision(label or None, deciding words, reason) from a list of Evidence."""
    if suspicious_as_malignant:
        evidence = [e._replace(kind="malignant") if e.kind == "suspicious" else e
                    for e in evidence]
    by_kind = collections.defaultdict(list)
    for item in evidence:
        by_kind[item.kind].append(item)
    malignant, statements = by_kind["malignant"], by_kind["benign"]
    uncertain = by_kind["uncertain"] + by_kind["suspicious"]
    benign = statements + by_kind["condition"]
    if malignant and statements:
        return Decision(None, _words(malignant + statements), "conflicting")
    if malignant:
        return Decision(MALIGNANT, _words(malignant), "")
    if uncertain:
        return Decision(None, _words(uncertain), "uncertain")
    if benign:
        return Decision(BENIGN, _words(benign), "")
    tirads_m, tirads_b = by_kind["tirads_malignant"], by_kind["tirads_benign"]
    if tirads_m and tirads_b:
        return Decision(None, _words(tirads_m + tirads_b), "conflicting")
    if tirads_m or tirads_b:
        return Decision(MALIGNANT if tirads_m else BENIGN, _words(tirads_m + tirads_b), "")
    ignored = by_kind["indication"] + by_kind["history"]
    if ignored:
        return Decision(None, _words(ignored), "indication or history only")
    return Decision(None, "", "no recognisable diagnosis")


def _decisive(evidence):
    return [e for e in evidence if e.kind not in ("indication", "history", "ignored")]


def explain(lines, table, suspicious_as_malignant=False):
    """Decision for a report's lines: headed lines decide when they hold decisive evidence."""
    headed = [line for line in lines if normalise(line).startswith(HEADINGS)]
    headed_evidence = report_evidence(headed, table)
    if _decisive(headed_evidence):
        return decide(headed_evidence, suspicious_as_malignant)
    return decide(report_evidence(lines, table), suspicious_as_malignant)
