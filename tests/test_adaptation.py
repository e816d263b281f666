"""Adapting an export to a site's labelled images (training.adaptation): inner folds choose
between recalibration and a new head, the site's own cross-validation measures it, and too few
images or groups are refused."""

import json

import numpy as np
import pytest

from thyroid.training import adaptation

DIMENSION = 16


def _site(seed, base_direction_weight, images=180, groups=110):
    """A shifted site: the label shows along one feature direction, while the export's score
    follows another (it learnt what marked malignancy at its own site) and runs high by an
    offset. Groups of one to three images share a patient's features up to noise."""
    rng = np.random.default_rng(seed)
    group_of_image = np.sort(np.r_[np.arange(groups), rng.integers(0, groups, images - groups)])
    group_labels = (rng.random(groups) < 0.4).astype(int)
    labels = group_labels[group_of_image]
    patient = rng.normal(size=(groups, DIMENSION))[group_of_image]
    features = patient + 0.5 * rng.normal(size=(images, DIMENSION))
    features[:, 0] += 1.6 * labels                    # what the site's malignancy looks like
    old_direction = features[:, 1] + base_direction_weight * features[:, 0]
    probabilities = 1 / (1 + np.exp(-(1.5 * old_direction + 1.0)))
    return adaptation.SiteImages.checked(features, probabilities, labels,
                                         [f"p{g}" for g in group_of_image])


def test_a_new_head_improves_the_auc_of_a_shifted_site_by_its_own_cross_validation():
    site = _site(seed=0, base_direction_weight=0.15)
    result = adaptation.cross_validate(site, num_samples=200, seed=0)
    print("\n".join(adaptation.report_lines(result)))
    assert result.images == 180 and result.groups == 110 and not result.notes
    assert result.before.auc.value < 0.7
    assert result.after.auc.value > result.before.auc.value + 0.1
    assert result.delong_p < 0.05
    assert all(fold.method == adaptation.NEW_HEAD for fold in result.folds)
    assert sum(fold.test_images for fold in result.folds) == 180
    assert np.all(np.isfinite(result.risks))
    # The export runs high; the adapted risks are calibrated in the large.
    assert abs(result.after.calibration_intercept) < abs(result.before.calibration_intercept)
    after_at_0_2 = [nb for nb in result.after.net_benefit if nb.threshold == 0.2][0]
    before_at_0_2 = [nb for nb in result.before.net_benefit if nb.threshold == 0.2][0]
    assert after_at_0_2.value.value > before_at_0_2.value.value
    assert after_at_0_2.value.low <= after_at_0_2.value.value <= after_at_0_2.value.high
    saved = json.loads(json.dumps(result.to_json()))     # JSON-ready, no NaN
    assert saved["after"]["auc"]["value"] == pytest.approx(result.after.auc.value)
    assert len(saved["folds"]) == adaptation.OUTER_FOLDS


def test_an_export_that_still_ranks_well_is_only_recalibrated():
    site = _site(seed=1, base_direction_weight=6.0)      # the export's score follows the label
    adapter = adaptation.fit_adapter(site, seed=0)
    losses = dict(adapter.inner_log_loss)
    print(losses)
    assert adapter.method == adaptation.RECALIBRATE and adapter.head is None
    assert losses[adaptation.RECALIBRATE] <= losses[adaptation.NEW_HEAD]
    risks = adapter.risks(site.features, site.probabilities)
    order = np.argsort(site.probabilities)
    assert np.all(np.diff(risks[order]) >= -1e-12)        # a recalibration keeps the ranking
    assert risks.mean() < site.probabilities.mean()        # and pulls the high scores down


def _labels_groups(benign_groups, malignant_groups, per_group=3):
    labels = [0] * (benign_groups * per_group) + [1] * (malignant_groups * per_group)
    groups = [f"g{i // per_group}" for i in range(len(labels))]
    return labels, groups


@pytest.mark.parametrize("labels, groups, words", [
    (*_labels_groups(12, 0), "0 malignant patient groups"),
    (*_labels_groups(0, 12), "0 benign patient groups"),
    (*_labels_groups(10, 4), "4 malignant patient groups"),
    (*_labels_groups(9, 9, per_group=1), "18 labelled images"),
])
def test_too_few_images_or_groups_of_a_class_are_refused_in_one_line(labels, groups, words):
    with pytest.raises(adaptation.AdaptationError) as caught:
        adaptation.SiteImages.checked(np.zeros((len(labels), 3)), np.full(len(labels), 0.5),
                                      labels, groups)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_each_image_its_own_group_is_noted_and_bad_arrays_are_refused():
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(15), np.ones(15)].astype(int)
    features = rng.normal(size=(30, 4)) + labels[:, None]
    site = adaptation.SiteImages.checked(features, np.full(30, 0.5), labels,
                                         [str(i) for i in range(30)])
    result = adaptation.cross_validate(site, num_samples=50, seed=0)
    assert result.notes == (adaptation.IMAGE_GROUPS_NOTE,)
    assert any("optimistic" in line for line in adaptation.report_lines(result))
    with pytest.raises(ValueError, match="differ in length"):
        adaptation.SiteImages.checked(features[:29], np.full(30, 0.5), labels, labels)
    with pytest.raises(ValueError, match="within"):
        adaptation.SiteImages.checked(features, np.full(30, 1.5), labels, labels)
    with pytest.raises(ValueError, match="0 .benign. or 1"):
        adaptation.SiteImages.checked(features, np.full(30, 0.5), labels * 2, labels)
