"""The Grad-CAM map an export draws itself (output ``cam``, ``thyroid.deploy.head_cam``) against
Grad-CAM computed from the run's checkpoint with TensorFlow's gradients
(``tests/gradcam_reference.py``), and the export's other named outputs."""

import json

import numpy as np
import pytest

from deploy_fixtures import IMAGE_SIZE, exported, full_frame, load_split_data  # noqa: F401
from deploy_fixtures import synthetic_scan, trained  # noqa: F401
from gradcam_reference import correlation, reference_cams

# The grid the export graph is rebuilt at for a finer map than the fixture's 2 x 2 (5 x 5).
FINE_SIZE = 160


@pytest.fixture(scope="module")
def test_images(trained):  # noqa: F811
    return load_split_data(trained["dataset_dir"], "test").images


def _exported_outputs(model, net_inputs):
    found = [model.outputs(image) for image in net_inputs]
    return (np.stack([f.cam for f in found]), np.array([f.probabilities[0] for f in found]),
            np.stack([f.features for f in found]))


def test_float_export_draws_the_checkpoint_gradcam(trained, exported, test_images):  # noqa: F811
    from thyroid.deploy.tflite_model import TFLiteModel
    from thyroid.preprocessing.resize import resize_batch
    net_inputs = resize_batch(test_images, IMAGE_SIZE)
    model = TFLiteModel.load(exported["float"].output_dir)
    cams, probabilities, features = _exported_outputs(model, net_inputs)
    reference, reference_p = reference_cams(trained["train_dir"], net_inputs)
    value = correlation(cams, reference)
    print(f"float export: correlation {value:.6f} with the checkpoint's Grad-CAM over "
          f"{len(cams)} maps of {cams.shape[1]}x{cams.shape[2]}; max |diff| "
          f"{np.max(np.abs(cams - reference)):.2e} (peak {reference.max():.3f})")
    assert cams.shape == reference.shape == (len(net_inputs), 2, 2)
    assert reference.max() > 0 and value > 0.99
    assert np.max(np.abs(cams - reference)) <= 1e-4 * reference.max()
    assert np.max(np.abs(probabilities - reference_p)) <= 1e-5
    metadata = json.loads(open(exported["float"].metadata).read())
    # The fixture fine-tunes only the default trainable scopes: blocks_14 is its frozen prefix.
    assert metadata["features"]["source"] == "frozen_prefix"
    assert metadata["features"]["layer"] == "blocks_14" and features.shape[1] == 192
    assert set(metadata["outputs"]) == {"probability", "cam", "features", "feature_map"}
    # features are the spatial mean of feature_map (a later head draws its map from them).
    found = model.outputs(net_inputs[0])
    assert found.feature_map.shape == (2, 2, 192)
    np.testing.assert_allclose(found.feature_map.mean(axis=(0, 1)), found.features,
                               rtol=1e-5, atol=1e-6)
    assert metadata["outputs"]["cam"]["shape"] == [1, 2, 2] and metadata["cam"]["layer"] == \
        "conv_head"


def test_closed_form_matches_on_a_finer_grid(trained, test_images, tmp_path):  # noqa: F811
    """The export graph rebuilt at 160 px (5 x 5 maps), converted to a float TFLite model."""
    from thyroid.compat import tf, tf1
    from thyroid.deploy import export
    from thyroid.deploy.tflite_model import _Runner
    from thyroid.preprocessing.resize import resize_batch
    _, spec, checkpoint = export.load_run(trained["train_dir"])
    with tf.Graph().as_default():
        handles = export.build_probability_graph(spec, FINE_SIZE, prefix_features=True)
        with tf1.Session() as sess:
            export.restore_session(sess, checkpoint)
            model_bytes = export.convert_session(sess, handles.inputs, handles.outputs())
    path = tmp_path / "fine_grid.tflite"
    path.write_bytes(model_bytes)
    runner = _Runner(str(path))
    net_inputs = resize_batch(test_images[:16], FINE_SIZE)
    cams = np.stack([runner.run(image).cam for image in net_inputs])
    reference, _ = reference_cams(trained["train_dir"], net_inputs, image_size=FINE_SIZE)
    varied = [k for k in range(len(cams)) if np.ptp(reference[k]) > 0]
    per_image = [correlation(cams[k], reference[k]) for k in varied]
    print(f"{FINE_SIZE} px: {cams.shape[1]}x{cams.shape[2]} maps, per-image correlation min "
          f"{min(per_image):.6f} over {len(varied)} maps")
    assert cams.shape == (16, 5, 5) and len(varied) >= 8
    assert min(per_image) > 0.99


def test_int8_export_map_stays_close(trained, exported, test_images):  # noqa: F811
    """int8 quantizes the feature maps the map is made of: measured, not equal."""
    from thyroid.deploy.tflite_model import TFLiteModel
    from thyroid.preprocessing.resize import resize_batch
    net_inputs = resize_batch(test_images, IMAGE_SIZE)
    cams, _, _ = _exported_outputs(TFLiteModel.load(exported["int8"].output_dir), net_inputs)
    reference, _ = reference_cams(trained["train_dir"], net_inputs)
    value = correlation(cams, reference)
    print(f"int8 export: correlation {value:.4f} with the checkpoint's Grad-CAM; max |diff| "
          f"{np.max(np.abs(cams - reference)):.3f} (peak {reference.max():.3f})")
    assert value > 0.95


def test_overlay_of_the_exported_map(exported):  # noqa: F811
    from thyroid.deploy.overlay import overlay
    from thyroid.deploy.tflite_model import TFLiteModel
    model = TFLiteModel.load(exported["float"].output_dir)
    frame = full_frame(synthetic_scan(1, np.random.RandomState(5)))
    prepared = model.prepare(frame)
    prediction, heat = model.explain_prepared(prepared)
    assert heat.shape == (2, 2) and heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
    assert prediction.probability == model.predict_prepared(prepared).probability
    image = overlay(frame, heat, prepared.box)
    assert image.shape == frame.shape and image.dtype == np.uint8
