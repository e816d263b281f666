"""The segmentation network at prediction time: exported beside the classifier, its outline
in predict's JSON and the web app's answer, millimetres from a DICOM's pixel spacing, and the
fallback when nothing is found."""

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from deploy_fixtures import exported, segmented, trained  # noqa: F401
from thyroid.deploy import segment
from thyroid.deploy.export import holds_only_export_files
from thyroid.deploy.tflite_model import TFLiteModel


def test_export_writes_segment_tflite_beside_the_classifier(segmented, trained, tmp_path):  # noqa: F811
    folder = segmented["export_dir"]
    assert os.path.isfile(os.path.join(folder, "model.tflite"))
    assert os.path.isfile(os.path.join(folder, segment.SEGMENT_MODEL_FILE))
    saved = json.load(open(os.path.join(folder, segment.SEGMENT_METADATA_FILE)))
    assert saved["crop"] == "scan" and saved["input"]["size"] == 64
    assert holds_only_export_files(folder)
    from thyroid.export import main
    assert main(["export", f"--train_dir={trained['train_dir']}",
                 f"--output_dir={tmp_path / 'out'}", f"--segment_dir={tmp_path}"]) == 2
    # The same network in TFLite and in TF (cached encoder maps + decoder) agree.
    from thyroid.nets import get_segmentation_network
    from thyroid.preprocessing.resize import resize_square
    from thyroid.training.segmentation import decoder_probabilities
    segmenter = segment.TFLiteSegmenter.beside(folder)
    net_input = resize_square(segmented["outlines"].image(0), 64)
    expected = decoder_probabilities(get_segmentation_network("efficientnet_lite0_unet"),
                                     segmented["weights"], [m[:1] for m in segmented["maps"]],
                                     64)[0]
    np.testing.assert_allclose(segmenter.probabilities(net_input), expected, atol=2e-3)


def _located(frames, segmenter):
    """The first whole frame in which the segmenter finds a nodule (it trained on them)."""
    from thyroid.datasets.images import load_image
    for path in frames:
        answer = segmenter.locate(load_image(path))
        if answer["nodule_found"]:
            return path, answer
    pytest.fail("the segmentation found no nodule in any training frame")


def test_predict_json_carries_the_outline_in_input_pixels(segmented, capsys):  # noqa: F811
    from thyroid.predict import main
    segmenter = segment.TFLiteSegmenter.beside(segmented["export_dir"])
    path, _ = _located(segmented["frames"], segmenter)
    for model in (segmented["export_dir"], os.path.join(segmented["export_dir"], "model.tflite")):
        assert main(["predict", f"--model={model}", "--json", path]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer["segmentation"].endswith("segment.tflite")
        row = answer["results"][0]
        assert row["nodule_found"] and len(row["outline"]) >= 3
        width, height = Image.open(path).size
        xs, ys = zip(*row["outline"])
        assert 0 <= min(xs) and max(xs) < width and 0 <= min(ys) and max(ys) < height
        x0, y0, x1, y1 = row["nodule_box"]
        # The box holds the pixels [x0, x1); the traced outline runs half a pixel outside them.
        assert x0 - 0.5 <= min(xs) and max(xs) <= x1 - 0.5
        assert y0 - 0.5 <= min(ys) and max(ys) <= y1 - 0.5
        assert row["measurements"]["area_px"] > 20 and "area_mm2" not in row["measurements"]
        assert "pixels" in row["outline_note"]
    assert main(["predict", f"--model={segmented['export_dir']}", path]) == 0
    assert "nodule" in capsys.readouterr().out


def test_millimetres_from_a_dicom_pixel_spacing(segmented, tmp_path, capsys):  # noqa: F811
    from test_images import write_dicom
    from thyroid.datasets import dicom
    from thyroid.datasets.images import load_image
    from thyroid.predict import main
    segmenter = segment.TFLiteSegmenter.beside(segmented["export_dir"])
    path, _ = _located(segmented["frames"], segmenter)
    gray = load_image(path)[:, :, 0]
    spaced = write_dicom(tmp_path / "spaced.dcm", gray, PixelSpacing=[0.1, 0.2])
    assert dicom.pixel_spacing(spaced) == (0.1, 0.2)
    assert dicom.pixel_spacing(write_dicom(tmp_path / "plain.dcm", gray)) is None
    assert main(["predict", f"--model={segmented['export_dir']}", "--json", spaced]) == 0
    row = json.loads(capsys.readouterr().out)["results"][0]
    if not row["nodule_found"]:
        pytest.skip("the DICOM's grey copy of the frame lost the nodule")
    values = row["measurements"]
    assert values["width_mm"] == pytest.approx(values["width_px"] * 0.2, abs=0.02)
    assert values["height_mm"] == pytest.approx(values["height_px"] * 0.1, abs=0.02)
    assert values["area_mm2"] == pytest.approx(values["area_px"] * 0.02, rel=0.01)
    assert row["outline_note"] is None


UNUSABLE_SPACINGS = {"one_value": "0.1", "absurd": ["1e300", "1e300"], "zero": ["0", "0.1"],
                     "negative": ["-0.1", "-0.1"], "three_values": ["0.1", "0.1", "0.1"],
                     "nan": ["nan", "nan"], "inf": ["inf", "0.1"], "too_fine": ["1e-9", "1e-9"]}


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")  # pydicom, on NaN and inf
def test_unusable_or_absurd_pixel_spacing_is_ignored_and_every_file_predicted(  # noqa: F811
        segmented, tmp_path, capsys):  # noqa: F811
    import strict_json
    from test_images import write_dicom
    from thyroid.datasets import dicom
    from thyroid.datasets.images import load_image
    from thyroid.predict import main
    segmenter = segment.TFLiteSegmenter.beside(segmented["export_dir"])
    path, _ = _located(segmented["frames"], segmenter)
    gray = load_image(path)[:, :, 0]
    files = [write_dicom(tmp_path / f"{name}.dcm", gray, PixelSpacing=value)
             for name, value in UNUSABLE_SPACINGS.items()]
    assert [dicom.pixel_spacing(f) for f in files] == [None] * len(files)
    assert main(["predict", f"--model={segmented['export_dir']}", "--json", *files, path]) == 0
    results = strict_json.loads(capsys.readouterr().out)["results"]
    assert [row["file"] for row in results] == files + [path]
    assert all("error" not in row and 0 <= row["probability"] <= 1 for row in results)
    for row in results:
        if row["nodule_found"]:
            assert not any(name.endswith("_mm") or name.endswith("_mm2")
                           for name in row["measurements"])
            assert "measurements in pixels" in row["outline_note"]


def test_an_empty_mask_falls_back_to_the_scan_field_and_says_so(segmented, monkeypatch):  # noqa: F811
    segmenter = segment.TFLiteSegmenter.beside(segmented["export_dir"])
    monkeypatch.setattr(segmenter, "probabilities", lambda net_input: np.zeros((64, 64), np.float32))
    answer = segmenter.locate(np.full((180, 280, 3), 90, np.uint8))
    assert answer["outline"] is None and answer["outlines"] == [] and not answer["nodule_found"]
    assert answer["outline_note"] == segment.NOTHING_FOUND and "scan field" in answer["outline_note"]
    assert segment.TFLiteSegmenter.beside(os.path.dirname(segmented["export_dir"])) is None


def test_web_app_answers_with_the_outline(segmented, exported):  # noqa: F811
    from thyroid.datasets.images import load_image
    from thyroid.deploy.webapp import create_app
    segmenter = segment.TFLiteSegmenter.beside(segmented["export_dir"])
    path, expected = _located(segmented["frames"], segmenter)
    client = create_app(segmented["export_dir"], gradcam=False).test_client()
    assert client.get("/api/health").get_json()["segmentation"] is True
    buffer = io.BytesIO()
    Image.fromarray(load_image(path)).save(buffer, format="PNG")
    answer = client.post("/api/predict", data={"image": (io.BytesIO(buffer.getvalue()), "a.png")},
                         content_type="multipart/form-data").get_json()
    assert answer["outline"] == expected["outline"] and answer["nodule_found"]
    assert answer["probability"] == pytest.approx(
        TFLiteModel.load(segmented["export_dir"]).predict(load_image(path)).probability)
    plain = create_app(exported["float"].output_dir, gradcam=False).test_client()
    answer = plain.post("/api/predict", data={"image": (io.BytesIO(buffer.getvalue()), "a.png")},
                        content_type="multipart/form-data").get_json()
    assert answer["outline"] is None and "segment_dir" in answer["outline_note"]
