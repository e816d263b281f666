"""thyroid.predict: table / JSON output, per-file errors, Grad-CAM overlays."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from deploy_fixtures import (IMAGE_SIZE, exported, full_frame, save_png,  # noqa: F401
                             synthetic_scan, trained)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict_images")
    rng = np.random.RandomState(7)
    good = [save_png(folder / "benign_frame.png", full_frame(synthetic_scan(0, rng))),
            str(folder / "malignant.jpg")]
    Image.fromarray(full_frame(synthetic_scan(1, rng))).save(good[1], quality=90)
    corrupt = folder / "corrupt.png"
    with open(good[0], "rb") as f:
        corrupt.write_bytes(f.read()[:200])  # truncated PNG
    text = folder / "notes.png"
    text.write_text("this is not an image\n")
    bad = {str(corrupt): "cannot decode", str(text): "cannot decode",
           str(folder / "missing.png"): "no such file"}
    return good, bad


def run_predict(args):
    return subprocess.run([sys.executable, "-m", "thyroid.predict"] + args, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_json_and_gradcam_with_bad_files(exported, image_files, tmp_path):  # noqa: F811
    from thyroid.deploy.tflite_model import TFLiteModel, load_image_file
    good, bad = image_files
    gradcam_dir = tmp_path / "cams"
    files = [good[0], *bad, good[1]]
    result = run_predict([f"--model={exported['float'].model}", "--json",
                          f"--gradcam={gradcam_dir}", *files])
    assert result.returncode == 1, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["threshold"] == 0.5 and "not a diagnosis" in report["notice"]
    # The fixture's data names no source: neutral words; the threshold is the run's setting.
    assert report["label_meaning_kind"] == "unstated"
    assert report["label_meaning"] == "score for the label 'malignant'"
    assert report["threshold_source"].startswith("the training run's threshold setting (0.5")
    assert report["shift_reference"] is False
    rows = {row["file"]: row for row in report["results"]}
    assert list(rows) == files
    model = TFLiteModel.load(exported["float"].output_dir)
    for path in good:
        row = rows[path]
        assert 0.0 <= row["probability"] <= 1.0
        assert row["risk"] == row["probability"] and row["spread"] is None
        assert row["shift"] is None and row["unusual"] is None  # no shift reference
        assert row["label"] == int(row["probability"] >= 0.5)
        assert row["label_name"] == ("benign", "malignant")[row["label"]]
        rgb = load_image_file(path)
        assert abs(row["probability"] - model.predict(rgb).probability) < 1e-6
        with Image.open(row["gradcam"]) as cam:
            cam.verify()
        with Image.open(row["gradcam"]) as cam:
            assert cam.format == "PNG" and cam.size == (rgb.shape[1], rgb.shape[0])
    assert sorted(os.listdir(gradcam_dir)) == ["benign_frame.gradcam.png",
                                              "malignant.gradcam.png"]
    for path, reason in bad.items():
        assert reason in rows[path]["error"]
        assert f"predict: error: {path}: " in result.stderr


def test_table_output(exported, image_files):  # noqa: F811
    good, bad = image_files
    result = run_predict([f"--model={exported['int8'].output_dir}", *good])
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["file", "P(malignant)", "risk", "label"]
    for path, line in zip(good, lines[1:3]):
        name, probability, risk, label = line.split()
        assert name == path and 0.0 <= float(probability) <= 1.0
        # an export without a recalibration map: the risk is the probability
        assert abs(float(risk) - float(probability)) < 1e-4
        assert label == ("malignant" if float(probability) >= 0.5 else "benign")
    assert "not a diagnosis" in result.stdout
    assert "P(malignant) is the model's score for the label 'malignant'" in result.stdout
    assert "from the training run's threshold setting (0.5" in result.stdout

    failed = run_predict([f"--model={exported['int8'].output_dir}", list(bad)[1]])
    assert failed.returncode == 1 and "ERROR: cannot decode" in failed.stdout


def test_missing_model_is_a_clear_error(tmp_path, image_files):
    result = run_predict([f"--model={tmp_path / 'nothing' / 'model.tflite'}", image_files[0][0]])
    assert result.returncode == 2
    assert "no such model file" in result.stderr


def test_prepare_crops_like_training(exported):  # noqa: F811
    from thyroid.datasets.images import crop
    from thyroid.deploy.tflite_model import TFLiteModel
    from thyroid.preprocessing.resize import resize_square
    model = TFLiteModel.load(exported["float"].output_dir)
    frame = full_frame(synthetic_scan(1, np.random.RandomState(3)))
    prepared = model.prepare(frame)
    np.testing.assert_array_equal(prepared.net_input,
                                  resize_square(crop(frame, "scan"), IMAGE_SIZE))
    top, bottom, left, right = prepared.box
    assert bottom - top < frame.shape[0] and right - left < frame.shape[1]


def test_synthetic_ddti_frames(exported, synthetic_root):  # noqa: F811
    """Whole DDTI-like frames from thyroid.synth (tests/conftest.py) go through the same crop
    build_tfrecords applies before training."""
    from thyroid.datasets.images import crop, load_image
    from thyroid.deploy.tflite_model import TFLiteModel
    from thyroid.preprocessing.resize import resize_square
    model = TFLiteModel.load(exported["int8"].model)
    ddti = os.path.join(str(synthetic_root), "ddti")
    frames = sorted(f for f in os.listdir(ddti) if f.endswith(".jpg"))[:3]
    assert frames
    for name in frames:
        rgb = load_image(os.path.join(ddti, name))
        prepared = model.prepare(rgb)
        np.testing.assert_array_equal(prepared.net_input,
                                      resize_square(crop(rgb, "scan"), IMAGE_SIZE))
        assert prepared.box[1] < rgb.shape[0]  # the burned-in text band is cropped away
        assert 0.0 <= model.predict_prepared(prepared).probability <= 1.0


def test_folders_recursively_with_csv(exported, image_files, tmp_path):  # noqa: F811
    good, bad = image_files
    folder = tmp_path / "scans"
    (folder / "left" / "deep").mkdir(parents=True)
    (folder / "empty").mkdir()
    names = [folder / "a.png", folder / "left" / "deep" / "b.jpg"]
    for source, target in zip(good, names):
        target.write_bytes(open(source, "rb").read())
    (folder / "left" / "readme.txt").write_text("not an image")
    broken = folder / "left" / "broken.png"
    broken.write_bytes(open(next(iter(bad)), "rb").read())  # the truncated PNG
    big = folder / "huge.png"
    Image.new("L", (300, 200)).save(big)
    csv_path = tmp_path / "out" / "predictions.csv"
    result = run_predict([f"--model={exported['float'].output_dir}", f"--csv={csv_path}",
                          "--max_pixels=50000", str(folder), str(folder / "empty")])
    assert result.returncode == 1, result.stderr[-3000:]
    import csv
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["path", "probability", "risk", "spread", "label", "shift",
                                 "unusual", "error"]
    assert [r["path"] for r in rows] == [str(folder / "a.png"), str(big), str(broken),
                                         str(names[1]), str(folder / "empty")]
    by_path = {r["path"]: r for r in rows}
    for path in (names[0], names[1]):
        row = by_path[str(path)]
        assert 0.0 <= float(row["probability"]) <= 1.0 and row["error"] == ""
        assert row["label"] == ("malignant" if float(row["probability"]) >= 0.5 else "benign")
        assert row["shift"] == row["unusual"] == ""  # an export without a shift reference
    assert "too large: 300x200" in by_path[str(big)]["error"]
    assert "cannot decode" in by_path[str(broken)]["error"]
    assert by_path[str(folder / "empty")]["error"] == "a folder with no image files"
    assert all(by_path[p]["probability"] == "" for p in (str(big), str(broken)))


@pytest.mark.parametrize("kind", ["tirads", "malignancy"])
def test_the_answer_is_worded_by_what_the_label_means(exported, image_files, tmp_path,  # noqa: F811
                                                       capsys, kind):
    """predict's table line and JSON say what metadata.json says the number is."""
    import shutil
    from thyroid import predict
    from thyroid.datasets import label_meaning
    folder = tmp_path / "export"
    shutil.copytree(exported["float"].output_dir, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meaning = label_meaning.MEANINGS[kind]
    meta.update(label_meaning=meaning.to_json(), threshold_source="the study's operating point")
    (folder / "metadata.json").write_text(json.dumps(meta))
    good, _ = image_files
    assert predict.main(["predict", f"--model={folder}", good[0]]) == 0
    table = capsys.readouterr().out
    assert f"P(malignant) is the model's {meaning.answer};" in table
    assert "from the study's operating point." in table and meaning.detail in table
    assert predict.main(["predict", f"--model={folder}", "--json", good[0]]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["label_meaning"] == meaning.answer and report["label_meaning_kind"] == kind
    assert report["threshold_source"] == "the study's operating point"
