import json
import os

import numpy as np
import pytest

from thyroid.datasets import synthetic as synth, synthetic_scans
from thyroid.datasets import ddti, images, word_reports
from thyroid.datasets.ddti import parse_polygons

from study_runs import snapshot


def test_same_seed_gives_identical_bytes(tmp_path):
    synth.generate(str(tmp_path / "a"), num_cases=6, seed=3, width=160, height=104)
    synth.generate(str(tmp_path / "b"), num_cases=6, seed=3, width=160, height=104)
    synth.generate(str(tmp_path / "c"), num_cases=6, seed=4, width=160, height=104)
    first, second = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert first == second
    assert any(name.endswith("report.docx") for name in first)
    assert snapshot(tmp_path / "c") != first


def test_layout(synthetic_root):
    ddti_names = os.listdir(synthetic_root / "ddti")
    xmls = [n for n in ddti_names if n.endswith(".xml")]
    jpgs = [n for n in ddti_names if n.endswith(".jpg")]
    assert len(xmls) == 30 and len(jpgs) > 30  # some patients get several images
    for name in jpgs:
        assert name.split("_")[0] + ".xml" in xmls
    patients = sorted(os.listdir(synthetic_root / "local"))
    assert len(patients) == 30
    for patient in patients:
        files = os.listdir(synthetic_root / "local" / patient)
        assert "report.docx" in files
        assert any(images.is_image_file(f) for f in files)
    extensions = {os.path.splitext(f)[1] for p in patients
                  for f in os.listdir(synthetic_root / "local" / p)}
    assert {".jpg", ".png", ".bmp", ".docx"} <= extensions


def test_ddti_tirads_and_polygons(synthetic_root):
    result = ddti.read(str(synthetic_root / "ddti"))
    tirads = {e.tirads for e in result.labelled}
    assert tirads <= {"2", "3", "4a", "4b", "4c", "5"} and len(tirads) > 2
    assert {e.label for e in result.labelled} == {0, 1}
    assert result.excluded  # some empty TIRADS, like DDTI
    with_polygon = [e for e in result.examples if e.polygons]
    assert with_polygon and result.marks_without_polygon
    height, width = images.load_image(with_polygon[0].image_path).shape[:2]
    for x, y in with_polygon[0].polygons[0]:
        assert 0 <= x <= width and 0 <= y <= height


def test_local_reports_map_to_labels(synthetic_root):
    result = word_reports.read(str(synthetic_root / "local"))
    assert {e.label for e in result.labelled} == {0, 1}
    assert result.counts()["labelled_cases"] >= 25


def test_scan_crop_removes_bottom_text_band():
    rng = np.random.default_rng(0)
    nodule = synthetic_scans.sample_nodule(rng, 1)
    plain, _ = synthetic_scans.render_image(np.random.default_rng(1), nodule, band_text="")
    texted, _ = synthetic_scans.render_image(np.random.default_rng(1), nodule,
                                             band_text="TIRADS 5 (5)")
    text_rows = np.nonzero(np.any(plain != texted, axis=(1, 2)))[0]
    assert text_rows.size  # the text was drawn
    top, bottom, left, right = images.find_scan_box(texted)
    assert bottom <= text_rows.min()
    assert np.array_equal(images.crop_scan(plain), images.crop_scan(texted))
    # The crop keeps the field, not a sliver of it.
    assert (bottom - top) > 0.7 * 360 and (right - left) > 0.6 * 560


def test_classes_overlap_but_differ_and_some_labels_disagree_with_appearance():
    rng = np.random.default_rng(0)
    benign = [synthetic_scans.sample_nodule(rng, 0) for _ in range(1000)]
    malignant = [synthetic_scans.sample_nodule(rng, 1) for _ in range(1000)]
    benign_aspect = np.array([n["aspect"] for n in benign])
    malignant_aspect = np.array([n["aspect"] for n in malignant])
    # On average the classic signs hold ...
    assert malignant_aspect.mean() > benign_aspect.mean() + 0.3
    assert (np.mean([n["calcifications"] for n in malignant])
            > np.mean([n["calcifications"] for n in benign]) + 2)
    # ... but not for every nodule: suspicious-looking benign, bland malignant.
    assert np.mean(benign_aspect > 1) > 0.05 and np.mean(malignant_aspect < 1) > 0.05
    assert any(n["kind"] == "solid" for n in benign) and any(n["kind"] == "iso" for n in malignant)
    # Label noise near the documented rate (binomial sd over 2000 draws is about 0.007).
    disagree = np.mean([n["appearance"] != n["label"] for n in benign + malignant])
    assert abs(disagree - synthetic_scans.LABEL_NOISE) < 0.025
    # Brightness alone cannot separate: many benign nodules (cysts) are darker than the typical
    # malignant one, many (iso/hyperechoic) brighter.
    benign_echo = np.array([n["echo"] for n in benign])
    typical_malignant = np.median([n["echo"] for n in malignant])
    assert np.mean(benign_echo < typical_malignant) > 0.2
    assert np.mean(benign_echo > typical_malignant) > 0.2


def test_latent_score_leaves_room_between_chance_and_perfect():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 4000)
    suspicion = [synthetic_scans.sample_nodule(rng, int(label))["suspicion"]
                 for label in labels]
    # The best any model could do from the appearance: well above chance, clearly below 1.
    assert 0.8 < roc_auc_score(labels, suspicion) < 0.93


def test_synth_svg_is_ddti_json():
    polygons = parse_polygons(synth._svg_json([(1.0, 2.0), (3.0, 4.0), (5.0, 1.0)]))
    assert polygons == [[(1.0, 2.0), (3.0, 4.0), (5.0, 1.0)]]
    assert json.loads(synth._svg_json([(1, 2)]))[0]["points"][0] == {"x": 1, "y": 2}


@pytest.mark.parametrize("label", [0, 1])
def test_render_is_fast_enough_and_sized(label):
    nodule = synthetic_scans.sample_nodule(np.random.default_rng(5), label)
    rgb, polygon = synthetic_scans.render_image(np.random.default_rng(label), nodule)
    assert rgb.shape == (360, 560, 3) and rgb.dtype == np.uint8 and len(polygon) > 10
