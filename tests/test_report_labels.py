"""Report wording -> label: negation, exclusion, indication, history, uncertainty, conflicts."""

import pytest

from thyroid.datasets import report_labels, word_reports

B, M = 0, 1
# (report lines, expected label, reason when the label is None)
PHRASINGS = [
    # plain findings
    (["Diagnosis: papillary carcinoma"], M, ""),
    (["Diagnosis: Papillary thyroid carcinoma, classic type"], M, ""),
    (["Diagnosis: malignant neoplasm"], M, ""),
    (["Conclusion: follicular carcinoma"], M, ""),
    (["Diagnosis: benign nodule"], B, ""),
    (["Impression: multinodular goitre"], B, ""),
    (["Diagnosis: Hashimoto thyroiditis"], B, ""),
    (["Diagnosis: colloid nodule"], B, ""),
    (["Diagnosis: multinodular goiter with papillary carcinoma"], M, ""),
    # negated or excluded malignancy -> benign
    (["Diagnosis: negative for malignancy"], B, ""),
    (["Cytology: no malignant cells"], B, ""),
    (["Diagnosis: no evidence of carcinoma"], B, ""),
    (["Conclusion: malignancy ruled out"], B, ""),
    (["Diagnosis: carcinoma excluded"], B, ""),
    (["Diagnosis: nodule without malignancy"], B, ""),
    (["Result: cancer-free"], B, ""),
    (["Diagnosis: non-cancerous"], B, ""),
    (["Diagnosis: not malignant"], B, ""),
    (["Biopsy ruled out malignancy"], B, ""),
    (["Diagnosis: benign follicular nodule, no malignancy"], B, ""),
    (["Diagnosis: Benign tumour, malignancy was excluded"], B, ""),
    # history never labels
    (["Diagnosis: benign colloid nodule. Family history of thyroid cancer."], B, ""),
    (["Diagnosis: benign nodule in a patient whose mother had thyroid cancer"], B, ""),
    (["Patient is anxious about cancer. Diagnosis: pending"], None, "indication or history only"),
    (["History: previous papillary carcinoma", "Diagnosis: awaiting histology"], None,
     "indication or history only"),
    (["Diagnosis: simple goiter", "Past history of breast cancer"], B, ""),
    # indication / request never labels
    (["Indication: rule out malignancy", "Diagnosis: see addendum"], None,
     "indication or history only"),
    (["Request: FNA to exclude carcinoma"], None, "indication or history only"),
    (["Referred to assess for malignancy", "Diagnosis: benign nodule"], B, ""),
    (["Clinical question: ?malignancy", "Impression: thyroiditis"], B, ""),
    # "not benign" is never benign
    (["Diagnosis: not benign"], None, "uncertain"),
    (["Diagnosis: gland not normal"], None, "uncertain"),
    # uncertainty excludes by default
    (["Diagnosis: suspicious for papillary carcinoma"], None, "uncertain"),
    (["Diagnosis: malignancy cannot be excluded"], None, "uncertain"),
    (["Diagnosis: unlikely to be malignant"], None, "uncertain"),
    (["Diagnosis: possible carcinoma"], None, "uncertain"),
    (["Cytology: Bethesda III, atypia of undetermined significance"], None, "uncertain"),
    (["Cytology: Bethesda IV, follicular neoplasm"], None, "uncertain"),
    (["Cytology: Bethesda V"], None, "uncertain"),
    (["Diagnosis: probably benign"], None, "uncertain"),
    # Bethesda and TI-RADS forms
    (["Cytology: Bethesda II"], B, ""),
    (["Cytology: Bethesda category VI"], M, ""),
    (["Impression: ACR TI-RADS 5"], M, ""),
    (["Impression: TR3 nodule"], B, ""),
    (["Impression: TIRADS 4b nodule"], M, ""),
    (["Diagnosis: benign on cytology", "Impression: TI-RADS 4"], B, ""),
    # conflicts are excluded, not guessed
    (["Diagnosis: benign nodule; papillary carcinoma"], None, "conflicting"),
    (["Findings: TI-RADS 2 left, TI-RADS 5 right"], None, "conflicting"),
    # nothing known
    (["Diagnosis: pending review"], None, "no recognisable diagnosis"),
    ([], None, "no recognisable diagnosis"),
    # diagnosis lines decide over the rest of the report
    (["Findings: suspicious for carcinoma on ultrasound", "Final diagnosis: benign nodule"], B, ""),
]


@pytest.mark.parametrize("lines, label, reason", PHRASINGS,
                         ids=[" / ".join(p[0])[:60] or "empty" for p in PHRASINGS])
def test_phrasing(lines, label, reason):
    decision = word_reports.explain_diagnosis(lines)
    assert (decision.label, decision.reason) == (label, reason), decision
    assert word_reports.diagnosis_label(lines)[0] == label
    if label is not None:
        assert decision.text  # the deciding words are recorded


def test_table_has_forty_phrasings_covering_every_outcome():
    assert len(PHRASINGS) >= 40
    outcomes = {(label, reason) for _, label, reason in PHRASINGS}
    assert {(M, ""), (B, ""), (None, "uncertain"), (None, "conflicting"),
            (None, "indication or history only"), (None, "no recognisable diagnosis")} <= outcomes


def test_suspicious_as_malignant_flag():
    lines = ["Diagnosis: suspicious for papillary carcinoma"]
    assert word_reports.explain_diagnosis(lines, suspicious_as_malignant=True).label == M
    assert word_reports.explain_diagnosis(["Cytology: Bethesda V"],
                                          suspicious_as_malignant=True).label == M
    # other uncertainty stays excluded
    assert word_reports.explain_diagnosis(["Diagnosis: possible carcinoma"],
                                   suspicious_as_malignant=True).label is None


def test_deciding_words_name_the_clause():
    decision = word_reports.explain_diagnosis(["Patient anxious",
                                               "Diagnosis: no evidence of carcinoma"])
    assert decision.label == B and "no evidence of carcinoma" in decision.text


def test_normalise_british_spellings():
    assert report_labels.normalise("Multinodular Goitre; tumour") == "multinodular goiter; tumor"
