"""Threshold rules on crafted validation scores where the answer is known by hand."""

import pytest
from absl import flags

from thyroid.stats import operating_point as op

# Ten images; sorted by score the labels read 0 0 0 1 0 1 1 0 1 1.
SCORES = [0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90]
LABELS = [0, 0, 0, 1, 0, 1, 1, 0, 1, 1]


def test_parse_accepts_the_four_rules():
    assert op.parse_operating_point("youden") == op.OperatingPoint("youden", None)
    assert op.parse_operating_point(" Sensitivity:0.9 ") == ("sensitivity", 0.9)
    assert op.parse_operating_point("specificity:1") == ("specificity", 1.0)
    assert op.parse_operating_point("fixed:0.5") == ("fixed", 0.5)


@pytest.mark.parametrize("text,reason", [
    ("", "expected youden"), ("youden:1", "expected youden"), ("sensitivity", "expected"),
    ("precision:0.9", "expected"), ("fixed:abc", "not a number"),
    ("specificity:1.5", r"outside \[0, 1\]"), ("fixed:-0.1", "outside")])
def test_parse_rejects_bad_strings_in_one_line(text, reason):
    with pytest.raises(op.OperatingPointError, match=reason) as error:
        op.parse_operating_point(text)
    assert "\n" not in str(error.value) and repr(text) in str(error.value)


def test_flag_checker():
    assert op.operating_point_flag_checker("youden") is True
    with pytest.raises(flags.ValidationError, match="bad operating point"):
        op.operating_point_flag_checker("sens:0.9")


def test_youden_picks_hand_computed_threshold():
    # Labels 0 0 0 1 1 0 1 1 at 0.1 .. 0.8: t=0.4 gives sens 4/4, spec 3/4, J = 0.75;
    # the runner-up J is 0.5.
    labels = [0, 0, 0, 1, 1, 0, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    assert op.choose_threshold("youden", labels, scores) == 0.4
    # On SCORES, t=0.3 (sens 5/5, spec 3/5) and t=0.5 (4/5, 4/5) tie at J = 0.6.
    assert op.choose_threshold("youden", LABELS, SCORES) == 0.5


def test_youden_tie_takes_highest_threshold():
    # t=0.3 (sens 1, spec 1/2) and t=0.7 (sens 1/2, spec 1) tie at J = 0.5.
    labels, scores = [0, 1, 0, 1], [0.1, 0.3, 0.5, 0.7]
    assert op.choose_threshold("youden", labels, scores) == 0.7


def test_sensitivity_rule_highest_threshold_reaching_target():
    assert op.choose_threshold("sensitivity:0.8", LABELS, SCORES) == 0.5   # 4/5
    assert op.choose_threshold("sensitivity:0.81", LABELS, SCORES) == 0.3  # needs 5/5
    assert op.choose_threshold("sensitivity:1.0", LABELS, SCORES) == 0.3


def test_specificity_rule_lowest_threshold_reaching_target():
    assert op.choose_threshold("specificity:0.8", LABELS, SCORES) == 0.5   # 4/5 below
    assert op.choose_threshold("specificity:0.6", LABELS, SCORES) == 0.3   # 3/5 below
    assert op.choose_threshold("specificity:1.0", LABELS, SCORES) == 0.8   # all 5 below
    # Above every score: nothing called malignant, specificity 1.
    assert op.choose_threshold("specificity:1.0", [1, 0], [0.2, 0.9]) > 0.9


def test_ties_in_scores_are_one_candidate():
    labels, scores = [0, 1, 0, 1], [0.2, 0.2, 0.2, 0.9]
    # At 0.2 sens 1 spec 0; at 0.9 sens 1/2 spec 1 (J 0.5); above 0.9 J 0.
    assert op.choose_threshold("youden", labels, scores) == 0.9


def test_fixed_and_degenerate_fallback():
    assert op.choose_threshold("fixed:0.3", [], []) == 0.3
    assert op.choose_threshold("youden", [1, 1, 1], [0.2, 0.4, 0.9]) == op.FALLBACK_THRESHOLD
    assert op.choose_threshold("specificity:0.9", [], []) == op.FALLBACK_THRESHOLD
