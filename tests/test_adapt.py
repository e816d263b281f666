"""``python -m thyroid.adapt``: the shared quick study's export adapted to a synthetic site drawn
as another scanner would (its own cross-validation improves the AUC), the adapted export used
by ``predict`` unchanged (the new head's score, its own heat map, the extended shift
reference), a one-class site refused in one line; and the pieces: the head's closed-form map,
the threshold kept as a risk, the shift reference's exact moments."""

import io
import json
import shutil

import numpy as np
import pytest

from thyroid.datasets import synthetic, synthetic_scans
from thyroid.deploy import adapted_head
from thyroid.stats import shift
from thyroid.stats.recalibration import RecalibrationMap, sigmoid

SITE_IMAGES, SITE_SEED = 300, 32
SITE_WIDTH, SITE_HEIGHT = 280, 180
QUICK_SIZE = 64  # the quick study's export's input size: the size its shift features are at


@pytest.fixture(scope="module")
def site_folder(tmp_path_factory):
    """Class folders of another scanner's images (each image its own patient)."""
    folder = tmp_path_factory.mktemp("site") / "images"
    synthetic.write_class_folders(str(folder), SITE_IMAGES, SITE_SEED, SITE_WIDTH, SITE_HEIGHT,
                                  look=synthetic_scans.OTHER_SCANNER)
    return folder


def _export_with_reference(quick_study, tmp_path):
    """A copy of the quick study's export carrying a shift reference of the shift score's
    features (its description names the study's converted checkpoint), fitted on vectors
    far from any image's, so that every site image is unusual before the extension."""
    from thyroid.training import shift_features
    _, run_dir = quick_study
    export = tmp_path / "export"
    shutil.copytree(run_dir / "mobile", export)
    checkpoint_dir = run_dir.parent / "checkpoints"
    checkpoint = str(checkpoint_dir / shift_features.MODEL / "model.ckpt")
    rng = np.random.default_rng(0)
    development = rng.normal(size=(60, 192)) - 50.0
    reference = shift.fit_reference(development, [list(range(k, 60, 3)) for k in range(3)],
                                    shift_features.description(checkpoint, QUICK_SIZE))
    shift_features.write_reference(str(export / shift.FILE_NAME), reference)
    return export, checkpoint_dir, reference


def _adapt(*argv):
    from thyroid import adapt
    return adapt.main(["adapt", *argv])


def test_adapt_improves_a_shifted_site_and_predict_answers_through_it(quick_study, site_folder,
                                                                       tmp_path, capsys):
    export, checkpoint_dir, reference = _export_with_reference(quick_study, tmp_path)
    adapted = tmp_path / "adapted"
    status = _adapt(f"--model={export}", f"--image_dir={site_folder}",
                    f"--output_dir={adapted}", f"--checkpoint_dir={checkpoint_dir}",
                    "--num_bootstrap=200")
    printed = capsys.readouterr().out
    print(printed)
    assert status == 0
    metadata = json.loads((adapted / "metadata.json").read_text())
    record = metadata["adaptation"]
    before, after = record["measured"]["before"], record["measured"]["after"]
    # The site's own 5 x 3 grouped cross-validation: every image scored by an adaptation
    # that never saw it, the export as it is on the same images.
    assert record["measured"]["images"] == SITE_IMAGES
    assert after["auc"]["value"] > before["auc"]["value"] + 0.04
    assert record["measured"]["delong_p"] < 0.05
    assert abs(after["calibration_intercept"]) < abs(before["calibration_intercept"])
    assert record["adapted_from"] == str(export)
    assert any("optimistic" in note for note in record["notes"])
    assert "may be optimistic" in printed and "before (export as is)" in printed
    applied = adapted_head.SiteAdaptation.from_json(record["applied"])
    assert applied.method == adapted_head.NEW_HEAD and applied.head.weights.size == 192
    # The decision risk is the export's: the site's map carries it to the adapted score.
    assert metadata["risk_threshold"] == pytest.approx(
        json.loads((export / "metadata.json").read_text())["risk_threshold"])
    assert applied.recalibration.apply([metadata["threshold"]])[0] == pytest.approx(
        metadata["risk_threshold"], abs=1e-6)
    card = (adapted / "MODEL_CARD.md").read_text()
    assert "adapted to a site" in card and "## Adapted to a site" in card
    assert metadata["model_card"]["adaptation"]["adapted_from"] == str(export)
    _check_predictions(export, adapted, site_folder, applied)
    _check_shift_reference(adapted, reference)


def _check_predictions(export, adapted, site_folder, applied):
    """``predict`` on the adapted export, unchanged: the new head's score through the site's
    map, and the head's own closed-form map as the heat map."""
    from thyroid import predict
    from thyroid.deploy.tflite_model import TFLiteModel, load_image_file, scaled_to_peak
    paths = sorted(str(p) for p in site_folder.glob("*/*.jpg"))[:4]
    original, model = TFLiteModel.load(str(export)), TFLiteModel.load(str(adapted))
    assert model.has_cam and not model.is_ensemble
    out = adapted.parent / "predicted.csv"
    assert predict.main(["predict", f"--model={adapted}", f"--csv={out}", *paths]) == 0
    rows = out.read_text().splitlines()[1:]
    for path, row in zip(paths, rows):
        rgb = load_image_file(path)
        found = original.outputs(original.prepare(rgb).net_input)
        score = sigmoid(float(found.features @ applied.head.weights) + applied.head.bias)
        prediction, heat = model.explain_prepared(model.prepare(rgb))
        assert prediction.probability == pytest.approx(score, abs=1e-6)
        assert prediction.risk == pytest.approx(applied.recalibration.apply([score])[0], 1e-6)
        assert float(row.split(",")[1]) == pytest.approx(score, abs=1e-5)
        expected = np.maximum(found.feature_map @ applied.head.weights
                              / np.prod(found.feature_map.shape[:2]), 0.0)
        np.testing.assert_allclose(heat, scaled_to_peak(expected), atol=1e-5)
    _check_web_app(adapted, paths[0], model)


def _check_web_app(adapted, path, model):
    """The web app on the adapted export, unchanged: the same answer and a heat map."""
    from thyroid.deploy.tflite_model import load_image_file
    from thyroid.deploy.webapp import create_app
    app = create_app(str(adapted))
    app.testing = True
    client = app.test_client()
    health = client.get("/api/health").get_json()
    assert health["folds"] == 1 and health["gradcam"] is True
    with open(path, "rb") as f:
        answer = client.post("/api/predict", data={"image": (io.BytesIO(f.read()), "scan.jpg")},
                             content_type="multipart/form-data").get_json()
    expected = model.predict(load_image_file(path))
    assert answer["probability"] == pytest.approx(expected.probability, abs=1e-6)
    assert answer["risk"] == pytest.approx(expected.risk, abs=1e-6)
    assert answer["gradcam"].startswith("data:image/png;base64,")


def _check_shift_reference(adapted, reference):
    """The extended reference covers the site: its images, unusual before, are usual now."""
    extended = shift.read_reference(str(adapted / shift.FILE_NAME))
    assert extended.features == reference.features
    assert extended.development_scores.size == reference.development_scores.size + SITE_IMAGES
    # The development vectors lie at -50; the pooled centre moved to the site's images.
    assert np.all(extended.distance.mean > reference.distance.mean + 10.0)
    record = json.loads((adapted / "metadata.json").read_text())["adaptation"]
    assert any("shift reference extended" in note for note in record["notes"])


def test_a_one_class_site_is_refused_in_one_line(quick_study, tmp_path, capsys):
    _, run_dir = quick_study
    folder = tmp_path / "site"
    synthetic.write_class_folders(str(folder), 40, 5, SITE_WIDTH, SITE_HEIGHT,
                                  look=synthetic_scans.OTHER_SCANNER)
    shutil.rmtree(folder / "malignant")
    status = _adapt(f"--model={run_dir / 'mobile'}", f"--image_dir={folder}",
                    f"--output_dir={tmp_path / 'adapted'}")
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and err[0].startswith("adapt: error: --image_dir=")
    assert "0 malignant patient groups" in err[0]
    assert not (tmp_path / "adapted").exists()


def test_the_new_heads_map_is_its_grad_cam():
    """For a linear head on mean-pooled maps the gradient of the logit is w / (h w) at every
    position: the map before the ReLU is each cell's share of the logit above the bias."""
    rng = np.random.default_rng(1)
    head = adapted_head.LinearHead(rng.normal(size=8), 0.3)
    maps = rng.normal(size=(3, 4, 8))
    logit = head.logits(maps.mean(axis=(0, 1)))
    shares = maps @ (head.weights / 12.0)
    assert shares.sum() + head.bias == pytest.approx(logit)
    step = 1e-6
    bumped = maps.copy()
    bumped[1, 2, 5] += step
    gradient = (head.logits(bumped.mean(axis=(0, 1))) - logit) / step
    assert gradient == pytest.approx(head.weights[5] / 12.0, rel=1e-4)
    np.testing.assert_allclose(head.cam(maps), np.maximum(shares, 0.0))


def test_the_linear_form_of_a_fitted_head_gives_its_scores():
    from thyroid.training import logreg
    rng = np.random.default_rng(2)
    features = rng.normal(size=(60, 5)) * [1, 3, 0.2, 5, 1] + 2
    labels = (features[:, 0] + rng.normal(size=60) > 2).astype(int)
    model, _ = logreg.fit_logreg(features, labels)
    weights, bias = logreg.linear_form(model)
    np.testing.assert_allclose(sigmoid(features @ weights + bias),
                               logreg.logreg_scores(model, features), atol=1e-6)


def test_the_threshold_is_kept_as_a_risk_and_bad_entries_are_refused():
    mapping = RecalibrationMap(-1.2, 0.6, "logistic", 10, 10)
    adaptation = adapted_head.SiteAdaptation(adapted_head.RECALIBRATE, mapping)
    assert mapping.apply([adaptation.score_threshold(0.35)])[0] == pytest.approx(0.35)
    assert adapted_head.SiteAdaptation.from_json(adaptation.to_json()) == adaptation
    bad = dict(adaptation.to_json(), head={"weights": [1.0, float("nan")], "bias": 0.0},
               method=adapted_head.NEW_HEAD)
    with pytest.raises(adapted_head.AdaptationError, match="finite"):
        adapted_head.SiteAdaptation.from_json(bad)
    with pytest.raises(adapted_head.AdaptationError, match="without a head"):
        adapted_head.SiteAdaptation.from_json(dict(adaptation.to_json(),
                                                   method=adapted_head.NEW_HEAD))


def test_the_adaptation_words_are_the_trainers():
    from thyroid.training import adaptation
    assert (adapted_head.RECALIBRATE, adapted_head.NEW_HEAD) == adaptation.METHODS


def test_an_extended_shift_reference_pools_the_development_moments_exactly():
    from thyroid.training import shift_extension
    rng = np.random.default_rng(3)
    mixing = rng.normal(size=(4, 12))  # correlated features: Ledoit-Wolf shrinks them partly
    development = (rng.normal(size=(80, 4)) @ mixing + 0.3 * rng.normal(size=(80, 12))) \
        * np.linspace(0.5, 3.0, 12) + 2.0
    site = rng.normal(size=(30, 12)) * 1.5 + 4.0
    reference = shift.fit_reference(development, [list(range(k, 80, 4)) for k in range(4)],
                                    "test features")
    assert 0.0 < reference.distance.shrinkage < 1.0
    count, mean, covariance = shift_extension.development_moments(reference)
    assert count == 80
    np.testing.assert_allclose(mean, development.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(covariance, np.cov(development.T, bias=True), atol=1e-9)
    extended = shift_extension.extend_reference(reference, site,
                                                [list(range(k, 30, 3)) for k in range(3)])
    both = np.vstack([development, site])
    np.testing.assert_allclose(extended.distance.mean, both.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(extended.distance.scale, both.std(axis=0), atol=1e-9)
    assert extended.development_scores.size == 110
    assert np.mean(shift.is_unusual(reference.shift(site))) > 0.5
    assert np.mean(shift.is_unusual(extended.shift(site))) < 0.1
