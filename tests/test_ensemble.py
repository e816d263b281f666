"""Fold ensembles and recalibrated risks in the exported model, predict and the web app.

Three "fold" models fine-tune the trained layers (blocks_15, conv_head, head) of the deploy
fixture's network, which plays the pretrained checkpoint: their frozen lower layers are
identical, so the ensemble is one TFLite model holding them once.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from deploy_fixtures import IMAGE_SIZE, full_frame, load_split_data, save_png, synthetic_scan  # noqa: F401
from deploy_fixtures import trained  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDS = 3
MAPS = [(0.4, 0.7), (-0.2, 1.3), (0.1, 0.9)]


@pytest.fixture(scope="module")
def fold_dirs(trained, tmp_path_factory):  # noqa: F811
    from thyroid.compat import tf
    from thyroid.training.run import train
    from thyroid.training.run_config import RunConfig
    base = tmp_path_factory.mktemp("folds")
    pretrained = tf.train.latest_checkpoint(trained["train_dir"])
    dirs = []
    for k in range(FOLDS):
        train_dir = str(base / f"fold{k}")
        result = train(RunConfig(model="efficientnet_lite0", mode="finetune",
                                 dataset_dir=trained["dataset_dir"], checkpoint_path=pretrained,
                                 image_size=IMAGE_SIZE, batch_size=16, learning_rate=3e-3,
                                 max_number_of_steps=6, seed=k, log_every_n_steps=1000,
                                 save_interval_steps=1000, eval_every_n_steps=1000), train_dir)
        assert result.config.uses_frozen_prefix
        dirs.append(train_dir)
    return dirs


def _maps():
    from thyroid.stats.recalibration import RecalibrationMap
    return [RecalibrationMap(a, b, "logistic", 10, 10) for a, b in MAPS]


@pytest.fixture(scope="module")
def ensemble(fold_dirs, tmp_path_factory):
    from thyroid.deploy.ensemble import export_ensemble
    return export_ensemble(fold_dirs, _maps(), 0.5, str(tmp_path_factory.mktemp("ens") / "out"))


@pytest.fixture(scope="module")
def inputs(trained):  # noqa: F811
    from thyroid.preprocessing.resize import resize_batch
    data = load_split_data(trained["dataset_dir"], "test")
    return resize_batch(data.images[:12], IMAGE_SIZE)


def test_one_model_ensemble_equals_the_mean_of_its_fold_models(fold_dirs, ensemble, inputs):
    from thyroid.deploy.export import tf_probabilities
    from thyroid.deploy.tflite_model import TFLiteModel
    assert ensemble.layout == "one_model"
    assert sorted(os.listdir(ensemble.output_dir)) == ["MODEL_CARD.md", "labels.txt",
                                                      "metadata.json", "model.tflite"]
    model = TFLiteModel.load(ensemble.output_dir)
    folds = model.fold_probabilities(inputs)
    reference = np.stack([tf_probabilities(d, inputs) for d in fold_dirs], axis=1)
    print(f"fold outputs vs TF fold graphs: max |diff| {np.max(np.abs(folds - reference)):.2e}; "
          f"fold spread of P {np.std(reference, axis=1).mean():.4f}")
    assert folds.shape == (len(inputs), FOLDS)
    assert np.max(np.abs(folds - reference)) <= 1e-4
    assert np.max(np.abs(model.probabilities(inputs) - reference.mean(axis=1))) <= 1e-4
    assert np.std(reference, axis=1).mean() > 1e-4  # the folds are different models
    risk, spread = model.risks(folds)
    expected = np.stack([m.apply(reference[:, k]) for k, m in enumerate(_maps())], axis=1)
    assert np.max(np.abs(risk - expected.mean(axis=1))) <= 1e-4
    assert np.max(np.abs(spread - expected.std(axis=1, ddof=1))) <= 1e-4


def test_the_ensemble_grows_by_the_trained_layers_only(fold_dirs, ensemble, tmp_path):
    from thyroid.compat import tf
    from thyroid.deploy.export import export_model
    single = os.path.getsize(export_model(fold_dirs[0], str(tmp_path / "single")).model)
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(fold_dirs[0]))
    trained_scopes = ("efficientnet_lite0/blocks_15", "efficientnet_lite0/conv_head",
                      "efficientnet_lite0/Head")
    trained_bytes = 4 * sum(int(np.prod(shape)) for name, shape in
                            reader.get_variable_to_shape_map().items()
                            if name.startswith(trained_scopes) and "Momentum" not in name
                            and "Adam" not in name and "RMSProp" not in name)
    size = os.path.getsize(ensemble.model)
    growth = (size - single) / (FOLDS - 1)
    print(f"single {single} B, {FOLDS}-fold ensemble {size} B: +{growth:.0f} B per fold; "
          f"trained layers {trained_bytes} B")
    assert abs(growth - trained_bytes) < 0.1 * trained_bytes
    assert size < 0.6 * FOLDS * single


def test_metadata_and_predict_report_risk_and_spread(ensemble, tmp_path):
    metadata = json.loads(open(ensemble.metadata).read())
    assert metadata["ensemble"]["folds"] == FOLDS and metadata["ensemble"]["layout"] == "one_model"
    assert [m["slope"] for m in metadata["ensemble"]["recalibration"]] == [b for _, b in MAPS]
    assert metadata["threshold_scale"].startswith("probability")
    image = save_png(tmp_path / "scan.png", full_frame(synthetic_scan(1, np.random.RandomState(4))))
    csv_path = tmp_path / "out.csv"
    done = subprocess.run([sys.executable, "-m", "thyroid.predict", f"--model={ensemble.model}",
                           "--json", f"--csv={csv_path}", image], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads(done.stdout)["results"][0]
    assert 0 <= row["risk"] <= 1 and row["spread"] > 0 and row["risk"] != row["probability"]
    assert csv_path.read_text().splitlines()[0] == ("path,probability,risk,spread,label,shift,"
                                                    "unusual,error")


def test_web_app_answers_with_risk_and_spread(ensemble):
    import io
    from PIL import Image
    from thyroid.deploy.webapp import create_app
    app = create_app(ensemble.output_dir, gradcam=True)
    client = app.test_client()
    health = client.get("/api/health").get_json()
    assert health["folds"] == FOLDS and health["recalibrated"] and health["gradcam"]
    buffer = io.BytesIO()
    Image.fromarray(full_frame(synthetic_scan(0, np.random.RandomState(2)))).save(buffer, "PNG")
    answer = client.post("/api/predict", data={"image": (io.BytesIO(buffer.getvalue()), "a.png")},
                         content_type="multipart/form-data").get_json()
    assert 0 <= answer["risk"] <= 1 and answer["spread"] > 0
    assert answer["gradcam"].startswith("data:image/png;base64,")
    assert b"Recalibrated risk" in client.get("/").data


def _scaled_mean(cams):
    """The mean over fold models (axis 0) of each map divided by its own maximum."""
    peaks = cams.max(axis=(2, 3), keepdims=True)
    return np.mean(np.where(peaks > 0, cams / np.maximum(peaks, 1e-12), 0.0), axis=0)


def test_ensemble_map_is_the_mean_of_its_members_scaled_maps(fold_dirs, ensemble, inputs):
    from gradcam_reference import correlation, reference_cams
    from thyroid.deploy.tflite_model import TFLiteModel
    model = TFLiteModel.load(ensemble.output_dir)
    cams = np.stack([model.outputs(image).cam for image in inputs])
    expected = _scaled_mean(np.stack([reference_cams(d, inputs)[0] for d in fold_dirs]))
    value = correlation(cams, expected)
    print(f"one-file ensemble map vs the members' scaled checkpoint Grad-CAM: correlation "
          f"{value:.6f}, max |diff| {np.max(np.abs(cams - expected)):.2e}")
    assert value > 0.99 and np.max(np.abs(cams - expected)) <= 1e-4
    metadata = json.loads(open(ensemble.metadata).read())
    assert metadata["features"]["source"] == "frozen_prefix"
    assert metadata["outputs"]["fold_probabilities"]["shape"] == [1, FOLDS]
    assert "its own maximum" in metadata["cam"]["combine"]


def test_folds_without_shared_layers_are_files_averaged(trained, tmp_path, inputs):  # noqa: F811
    """Models trained from random weights share no frozen layers: one file per fold."""
    from thyroid.deploy.ensemble import export_ensemble
    from thyroid.deploy.tflite_model import TFLiteModel
    from thyroid.stats.recalibration import RecalibrationMap
    dirs = [trained["train_dir"]] * 2
    paths = export_ensemble(dirs, [RecalibrationMap()] * 2, 0.5, str(tmp_path / "files"))
    assert paths.layout == "files" and paths.model == paths.output_dir
    assert {"model_fold0.tflite", "model_fold1.tflite"} <= set(os.listdir(paths.output_dir))
    model = TFLiteModel.load(paths.model)
    folds = model.fold_probabilities(inputs)
    np.testing.assert_allclose(folds[:, 0], folds[:, 1], atol=1e-6)
    risk, spread = model.risks(folds)
    np.testing.assert_allclose(risk, folds.mean(axis=1), atol=1e-6)
    assert np.all(spread < 1e-6)
    # Two copies of one model: the mean of their scaled maps is that model's map, scaled.
    from gradcam_reference import reference_cams
    cams = np.stack([model.outputs(image).cam for image in inputs])
    expected = _scaled_mean(reference_cams(trained["train_dir"], inputs)[0][None])
    assert np.max(np.abs(cams - expected)) <= 1e-4


def test_exported_refit_carries_its_recalibration_map(fold_dirs, tmp_path, inputs):
    from thyroid.deploy.export import export_model
    from thyroid.deploy.tflite_model import TFLiteModel
    from thyroid.stats.recalibration import RecalibrationMap
    from thyroid.training.scoring import save_recalibration
    recalibration = RecalibrationMap(0.5, 0.8, "logistic", 12, 30)
    save_recalibration(fold_dirs[1], recalibration)
    try:
        paths = export_model(fold_dirs[1], str(tmp_path / "refit"))
    finally:
        os.remove(os.path.join(fold_dirs[1], "recalibration.json"))
    metadata = json.loads(open(paths.metadata).read())
    assert metadata["recalibration"]["slope"] == 0.8 and "formula" in metadata["recalibration"]
    assert metadata["threshold_scale"].startswith("probability")
    assert metadata["risk_threshold"] == pytest.approx(recalibration.apply(metadata["threshold"]))
    model = TFLiteModel.load(paths.output_dir)
    rgb = full_frame(synthetic_scan(1, np.random.RandomState(9)))
    result = model.predict(rgb)
    assert result.risk == pytest.approx(float(recalibration.apply(result.probability)), abs=1e-6)
    assert result.spread is None
