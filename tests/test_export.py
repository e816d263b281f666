"""thyroid.export: TFLite export of a fine-tuned classifier, float parity and int8 agreement."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from deploy_fixtures import IMAGE_SIZE, exported, load_split_data, trained  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def test_inputs(trained):  # noqa: F811
    from thyroid.preprocessing.resize import resize_batch
    data = load_split_data(trained["dataset_dir"], "test")
    return resize_batch(data.images, IMAGE_SIZE), data.labels


@pytest.fixture(scope="module")
def reference(trained, test_inputs):  # noqa: F811
    from thyroid.deploy.export import tf_probabilities
    return tf_probabilities(trained["train_dir"], test_inputs[0])


def test_float_tflite_matches_tf_graph(exported, test_inputs, reference):  # noqa: F811
    from thyroid.deploy.tflite_model import TFLiteModel
    model = TFLiteModel.load(exported["float"].output_dir)
    probs = model.probabilities(test_inputs[0])
    assert probs.shape == reference.shape == (len(test_inputs[1]),)
    assert np.all((probs >= 0) & (probs <= 1))
    max_diff = float(np.max(np.abs(probs - reference)))
    print(f"float TFLite vs TF graph: max |diff| = {max_diff:.2e} over {len(probs)} images")
    assert max_diff <= 1e-4
    # The fixture model is trained enough that the check is not on a constant output.
    assert float(np.std(reference)) > 0.01


def test_int8_agrees_with_float(exported, test_inputs):  # noqa: F811
    from thyroid.deploy.tflite_model import TFLiteModel
    float_model = TFLiteModel.load(exported["float"].output_dir)
    int8_model = TFLiteModel.load(exported["int8"].model)
    assert int8_model.metadata["input"]["dtype"] == "uint8"
    assert int8_model.metadata["input"]["quantization"]["zero_point"] == 0
    float_probs = float_model.probabilities(test_inputs[0])
    int8_probs = int8_model.probabilities(test_inputs[0])
    agreement = float(np.mean((float_probs >= 0.5) == (int8_probs >= 0.5)))
    sizes = {k: os.path.getsize(p.model) for k, p in exported.items()}
    print(f"int8 vs float decisions agree on {agreement:.1%} of {len(float_probs)} test images; "
          f"max |diff| {np.max(np.abs(float_probs - int8_probs)):.3f}; sizes {sizes}")
    assert agreement >= 0.95
    assert sizes["int8"] < sizes["float"] / 2


def test_export_writes_files_and_metadata(trained, exported):  # noqa: F811
    paths = exported["float"]
    assert sorted(os.listdir(paths.output_dir)) == ["MODEL_CARD.md", "labels.txt",
                                                    "metadata.json", "model.tflite"]
    with open(paths.labels) as f:
        assert f.read() == "0:benign\n1:malignant\n"
    with open(paths.metadata) as f:
        meta = json.load(f)
    assert meta["model"] == "efficientnet_lite0"
    assert meta["quantize"] == "none"
    assert meta["input"]["size"] == IMAGE_SIZE
    assert meta["input"]["shape"] == [1, IMAGE_SIZE, IMAGE_SIZE, 3]
    assert meta["input"]["dtype"] == "float32"
    assert meta["threshold"] == 0.5
    assert meta["threshold_source"].startswith("the training run's threshold setting (0.5")
    assert meta["label_meaning"]["kind"] == "unstated"  # the fixture's manifest names no source
    assert meta["crop"] == "scan"
    assert "resize" in meta["preprocessing"] and "(x - 127) / 128" in meta["preprocessing"]
    assert meta["test_metrics"]["file"] == "metrics_test.json"
    assert meta["test_metrics"]["values"]["accuracy"] == 0.5
    assert meta["data"]["dataset_dir"] == os.path.abspath(trained["dataset_dir"])
    assert meta["data"]["protocol"] == "patient"
    assert meta["data"]["splits"]["test"]["images"] == 40
    assert meta["checkpoint_description"] == "random init (no ImageNet checkpoint)"
    assert meta["train_dir"] == os.path.abspath(trained["train_dir"])
    assert os.path.basename(meta["checkpoint"]).startswith("model.ckpt-")
    assert exported["int8"].output_dir != paths.output_dir
    with open(exported["int8"].metadata) as f:
        assert json.load(f)["calibration_images"] == 48
    card = meta["model_card"]
    assert card["file"] == "MODEL_CARD.md" and card["row"] is None
    assert card["figures"][0]["scope"].startswith("the run's own test split")
    assert card["backbone"]["weights"] == "random init (no ImageNet checkpoint)"
    text = open(os.path.join(paths.output_dir, "MODEL_CARD.md")).read()
    assert "## Limitations" in text and "not a medical device" in text
    # User text (the run's folder) is plain text: Markdown's characters escaped.
    assert card["run"] == meta["train_dir"] and "deploy" in card["run"]
    assert plain(meta["train_dir"]) in text
    assert "efficientnet_lite0" in text and "efficientnet\\_lite0" not in text  # ours as is
    from thyroid.deploy.export import holds_only_export_files
    assert holds_only_export_files(paths.output_dir)  # the card is one of the export's files


def plain(text):
    from thyroid.markdown_text import plain as to_plain
    return to_plain(text)


def test_model_card_escapes_user_text():
    from thyroid.deploy.model_card import StudyFacts, build_card
    hostile = "data/*bold* [link](http://x) <b>tag</b> # _u_ `code` | pipe\n- item"
    facts = StudyFacts(row_id=10, row_label="EfficientNet-Lite0 fine-tuning",
                       final_model="refit", protocol="3-fold CV", data_description=hostile,
                       run=hostile)
    metadata = {"model": "efficientnet_lite0",
                "data": {"source_counts": {"csv": {"path": hostile}}},
                "checkpoint_description": hostile, "threshold": 0.5, "risk_threshold": 0.5,
                "threshold_source": hostile}
    text = build_card(metadata, facts).markdown
    lines = [line for line in text.splitlines() if "bold" in line]
    assert len(lines) == 5  # description, source, run, starting weights, threshold source
    for line in lines:
        if "bold" in line:
            assert "\\*bold\\*" in line and "\\[link\\](http:/\\/x)" in line
            assert "\\<b\\>" in line and "\\`code\\`" in line and "\\|" in line
            assert "*bold*" not in line.replace("\\*", "")
    assert "\n- item" not in text  # a user's line break does not start a list item
    assert build_card(metadata, facts).fields["training_data"]["description"] == hostile


def test_export_rejects_unsupported_runs(tmp_path, trained):  # noqa: F811
    from thyroid.deploy.export import ExportError, export_model
    from thyroid.training.run_config import RunConfig
    with pytest.raises(FileNotFoundError):
        export_model(str(tmp_path / "missing"), str(tmp_path / "out"))
    for model, mode in (("small_cnn", "scratch"), ("efficientnet_lite0", "bottleneck_svm")):
        train_dir = tmp_path / f"{model}-{mode}"
        os.makedirs(train_dir)
        RunConfig(model=model, mode=mode, dataset_dir=trained["dataset_dir"],
                  image_size=64).save(str(train_dir))
        with pytest.raises(ExportError, match=mode if model != "small_cnn" else model):
            export_model(str(train_dir), str(tmp_path / "out"))
    no_checkpoint = tmp_path / "no_checkpoint"
    os.makedirs(no_checkpoint)
    RunConfig(model="mobilenet_v1", mode="finetune", dataset_dir=trained["dataset_dir"],
              image_size=64).save(str(no_checkpoint))
    with pytest.raises(ExportError, match="no trained checkpoint"):
        export_model(str(no_checkpoint), str(tmp_path / "out"))
    with pytest.raises(ExportError, match="quantize"):
        export_model(trained["train_dir"], str(tmp_path / "out"), quantize="int4")
    assert not (tmp_path / "out").exists()


def test_export_command_line(tmp_path, trained):  # noqa: F811
    out = tmp_path / "cli_export"
    result = subprocess.run(
        [sys.executable, "-m", "thyroid.export", f"--train_dir={trained['train_dir']}",
         f"--output_dir={out}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["model"].endswith("model.tflite")
    assert sorted(os.listdir(out)) == ["MODEL_CARD.md", "labels.txt", "metadata.json",
                                       "model.tflite"]

    bad = subprocess.run(
        [sys.executable, "-m", "thyroid.export", f"--train_dir={tmp_path / 'nothing'}",
         f"--output_dir={tmp_path / 'bad'}"], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert bad.returncode == 1
    assert "export: error:" in bad.stderr and "run_config.json" in bad.stderr


def test_the_label_meaning_follows_the_sources():
    """Any DDTI (TIRADS-labelled) source makes the number the risk of a TIRADS 4a or above
    rating; diagnoses alone a probability of malignancy; no recorded source, neither."""
    from thyroid.datasets import label_meaning
    assert label_meaning.for_sources(["ddti"]) is label_meaning.TIRADS
    assert label_meaning.for_sources(["local", "ddti"]) is label_meaning.TIRADS
    for kinds in (["local"], ["folders"], ["csv"], ["folders", "csv", "local"]):
        assert label_meaning.for_sources(kinds) is label_meaning.MALIGNANCY, kinds
    assert label_meaning.for_sources([]) is label_meaning.UNSTATED
    assert label_meaning.TIRADS.answer == "risk of a TIRADS 4a or above rating"
    assert label_meaning.MALIGNANCY.answer == "probability of malignancy"
    saved = {"label_meaning": label_meaning.TIRADS.to_json()}
    assert label_meaning.from_metadata(saved) is label_meaning.TIRADS
    assert label_meaning.from_metadata({}) is label_meaning.UNSTATED  # an older export
    assert label_meaning.from_metadata({"label_meaning": {"kind": "other"}}) is \
        label_meaning.UNSTATED
