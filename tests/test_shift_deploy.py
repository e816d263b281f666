"""The shift score from the study to the answers, on the shared quick study (no run of its own):
the study's cross-fitted reference, shipped in its export; the export's ``features`` output is
the shift score's features; ``predict`` answers ``shift`` and ``unusual`` (JSON and CSV)."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from study_runs import REPO

QUICK_SIZE = 64  # EfficientNet-Lite0's input under --quick (study.rows.QUICK_SIZES)


def _checkpoint(run_dir):
    from thyroid.checkpoints.locate import default_checkpoint_path
    from thyroid.nets import get_network
    path, exists = default_checkpoint_path(get_network("efficientnet_lite0"),
                                           str(run_dir.parent / "checkpoints"))
    assert exists
    return path


def _development_images(run_dir, count):
    from thyroid.datasets import shards
    data = shards.load_split(str(run_dir / "shards"), "train")
    originals = np.flatnonzero(~data.augmented)[:count]
    return [data.images[i] for i in originals]


def test_the_exports_features_are_the_shift_features(quick_study):
    """The exported model's ``features`` output, fed what it is fed at prediction time (the
    crop resized), equals the shift features of the same image: both through TensorFlow's
    graph and through the TFLite feature network the activation cache uses."""
    from thyroid.deploy.tflite_model import TFLiteModel
    from thyroid.preprocessing.resize import resize_square
    from thyroid.training import features, shift_features
    run_dir = quick_study[1]
    model = TFLiteModel.load(str(run_dir / "mobile"))
    assert model.image_size == QUICK_SIZE
    images = _development_images(run_dir, 6)
    exported = np.stack([model.outputs(resize_square(image, QUICK_SIZE)).features
                         for image in images])
    for engine in (features.TF_ENGINE, features.TFLITE_ENGINE):
        expected = shift_features.image_features(images, _checkpoint(run_dir), QUICK_SIZE,
                                                 engine=engine)
        assert exported.shape == expected.shape == (6, 192)
        np.testing.assert_allclose(exported, expected, rtol=1e-4,
                                   atol=1e-4 * np.abs(expected).max())
    assert np.std(exported, axis=0).max() > 0  # images differ: not a constant output


def test_the_quick_studys_export_carries_the_cross_fitted_reference(quick_study):
    from thyroid.datasets import folds
    from thyroid.stats import shift
    from thyroid.training import shift_features
    run_dir = quick_study[1]
    exported = run_dir / "mobile" / shift.FILE_NAME
    assert exported.read_bytes() == (run_dir / "shift" / shift.FILE_NAME).read_bytes()
    metadata = json.loads((run_dir / "mobile" / "metadata.json").read_text())
    reference = shift.read_reference(str(exported))
    assert reference.features == shift_features.description(_checkpoint(run_dir), QUICK_SIZE)
    assert metadata["shift"]["features"] == reference.features
    assert metadata["shift"]["dimension"] == 192 == metadata["outputs"]["features"]["shape"][1]
    card = (run_dir / "mobile" / "MODEL_CARD.md").read_text()
    assert "## Shift score" in card and "shift_reference.npz" in card
    result = json.loads((run_dir / "jobs" / "export" / "result.json").read_text())
    assert result["payload"]["shift_reference"] == str(exported)
    # Every development image scored by a reference fitted without its fold (repeat 0).
    assignment = folds.load_folds(str(run_dir / "shards" / folds.FOLDS_NAME))
    with open(run_dir / "shift" / "shift_scores.csv", newline="") as f:
        scores = {row["image"]: row for row in csv.DictReader(f) if row["set"] == "development"}
    assert sorted(scores) == sorted(assignment["images"])
    assert metadata["shift"]["development_images"] == len(scores)
    np.testing.assert_allclose(reference.development_scores,
                               sorted(float(row["score"]) for row in scores.values()),
                               rtol=1e-7)
    split = shift_features.split_features(str(run_dir / "shards"), "train", _checkpoint(run_dir),
                                          str(run_dir / "shards" / "activation_cache"),
                                          QUICK_SIZE)
    test = set(folds.fold_members(assignment, 0, 0)["test"])
    held_out = np.array([key in test for key in split.keys])
    without = shift.fit_distance(split.values[~held_out]).scores(split.values[held_out])
    found = [float(scores[key]["score"]) for key in split.keys[held_out]]
    np.testing.assert_allclose(found, without, rtol=1e-6)
    within = reference.scores(split.values[held_out])  # the full reference: nearer, in-sample
    assert np.mean(within) < np.mean(without)


@pytest.fixture(scope="module")
def frames(quick_study, tmp_path_factory):
    """Two development frames of the quick study and a flat grey frame, as files."""
    run_dir = quick_study[1]
    folder = tmp_path_factory.mktemp("shift_frames")
    flat = folder / "flat.png"
    Image.fromarray(np.full((180, 280, 3), 200, np.uint8)).save(flat)
    chosen = sorted(str(p) for p in (run_dir / "synthetic" / "ddti").glob("*.jpg"))[:2]
    return chosen + [str(flat)]


def test_predict_answers_shift_and_unusual(quick_study, frames, tmp_path):
    from thyroid.deploy.tflite_model import TFLiteModel, load_image_file
    run_dir = quick_study[1]
    model = TFLiteModel.load(str(run_dir / "mobile"))
    csv_path = tmp_path / "answers.csv"
    done = subprocess.run([sys.executable, "-m", "thyroid.predict",
                           f"--model={run_dir / 'mobile'}", "--json", f"--csv={csv_path}",
                           *frames], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["shift_reference"] is True
    rows = {row["file"]: row for row in report["results"]}
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        lines = {line["path"]: line for line in reader}
    assert reader.fieldnames == ["path", "probability", "risk", "spread", "label", "shift",
                                 "unusual", "error"]
    for path in frames:
        row, line = rows[path], lines[path]
        expected = model.predict(load_image_file(path))
        assert row["shift"] == pytest.approx(expected.shift, abs=1e-9)
        assert 0.0 <= row["shift"] <= 100.0 and row["unusual"] == (row["shift"] > 99.0)
        assert float(line["shift"]) == pytest.approx(row["shift"], abs=1e-6)
        assert line["unusual"] == str(int(row["unusual"]))
        assert 0.0 <= row["probability"] <= 1.0  # an unusual image is answered too
    assert rows[frames[-1]]["unusual"] is True  # the flat frame is far from every scan
    assert not any(rows[path]["unusual"] for path in frames[:-1])
    table = subprocess.run([sys.executable, "-m", "thyroid.predict",
                            f"--model={run_dir / 'mobile'}", *frames], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert table.returncode == 0, table.stderr[-3000:]
    flagged = [line for line in table.stdout.splitlines() if "unusual: far from" in line]
    assert len(flagged) == 1 and flagged[0].startswith(frames[-1])
