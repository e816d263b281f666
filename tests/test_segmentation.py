"""The segmentation network: registry, variable names, training on synthetic outlines."""

import numpy as np
import pytest

from thyroid.compat import tf, tf1
from thyroid.nets import SEGMENTATION_NAMES, get_segmentation_network
from thyroid.nets.segmentation import full_size_logits
from thyroid.stats.segmentation import dice, iou, mean_ci
from thyroid.training import localise, segmentation

SIZE = 64


def test_the_decoder_sits_on_the_official_encoder_names(efficientnet_checkpoint):
    spec = get_segmentation_network("efficientnet_lite0_unet")
    assert SEGMENTATION_NAMES == ("efficientnet_lite0_unet",)
    with pytest.raises(ValueError, match="efficientnet_lite0_unet"):
        get_segmentation_network("unet")
    with tf.Graph().as_default():
        logits = full_size_logits(spec, tf1.placeholder(tf.float32, [2, SIZE, SIZE, 3]), SIZE)
        assert logits.shape.as_list() == [2, SIZE, SIZE]
        names = {v.op.name: v.shape.as_list() for v in tf1.global_variables()}
    official = dict(tf.train.list_variables(efficientnet_checkpoint))
    encoder = {n: s for n, s in names.items() if n.startswith("efficientnet_lite0/")}
    decoder = {n: s for n, s in names.items() if n.startswith(spec.scope + "/")}
    assert encoder and set(encoder) | set(decoder) == set(names)
    assert all(official[n] == s for n, s in encoder.items())  # restorable as they are
    assert "efficientnet_lite0/blocks_15/project/weights" not in encoder  # stops at blocks_14
    assert sum(int(np.prod(s)) for s in decoder.values()) < 60_000


def test_overlap_figures_and_their_interval():
    a = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True
    b = np.zeros((10, 10), bool)
    b[4:8, 2:6] = True
    assert dice(a, b) == pytest.approx(0.5) and iou(a, b) == pytest.approx(1 / 3)
    assert dice(a, a) == iou(a, a) == 1.0
    assert dice(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    mean, low, high = mean_ci([0.2, 0.4, 0.6, 0.8], ["p1", "p1", "p2", "p3"], 500, seed=1)
    assert mean == pytest.approx(0.5) and low < mean < high
    assert np.isnan(mean_ci([], [])[0])


@pytest.fixture(scope="module")
def trained(efficientnet_checkpoint, tmp_path_factory):
    """A decoder trained a few steps on two thirds of the units of a synthetic DDTI (90 cases:
    the session's 30 leave too few outlines to learn from), tested on the rest."""
    from thyroid.datasets import outlines, synthetic
    root = tmp_path_factory.mktemp("segmentation")
    synthetic.generate(str(root), num_cases=90, seed=0, width=280, height=180, num_local_cases=0)
    found = outlines.build_outline_set({"ddti": str(root / "ddti")}, str(root / "outlines"))
    spec = get_segmentation_network("efficientnet_lite0_unet")
    maps = segmentation.cached_encoder_maps(spec, found, SIZE, efficientnet_checkpoint,
                                            str(tmp_path_factory.mktemp("maps")))
    units = sorted({r.unit for r in found.records})
    test_units = set(units[::3])
    outlined = [i for i, r in enumerate(found.records) if r.has_outline]
    train = [i for i in outlined if found.records[i].unit not in test_units]
    test = [i for i in outlined if found.records[i].unit in test_units]
    config = segmentation.SegmentationConfig(checkpoint_path=efficientnet_checkpoint,
                                             image_size=SIZE, steps=60, seed=0)
    weights, prior = localise.fit_segmentation(spec, maps, found, train, config)
    return found, spec, maps, train, test, config, weights, prior


def test_a_few_steps_beat_the_trivial_masks(trained):
    found, spec, maps, train, test, config, weights, prior = trained
    probabilities = localise.probabilities_of(spec, weights, maps, test, SIZE)
    model = localise.summarize(localise.evaluate(found, test, probabilities, prior), 0)
    untrained, _ = localise.fit_segmentation(spec, maps, found, train, config.replace(steps=1))
    start = localise.summarize(localise.evaluate(
        found, test, localise.probabilities_of(spec, untrained, maps, test, SIZE), prior), 0)
    everything = np.mean([dice(np.ones(found.records[i].size, bool), found.mask(i)) for i in test])
    assert len(test) >= 30
    assert model["dice"][0] > model["prior_dice"][0] + 0.03  # the mean training mask
    assert model["dice"][0] > everything + 0.3                # the whole field
    assert model["dice"][0] > start["dice"][0] + 0.1          # it rose with training
    assert model["centre_hit"][0] >= 0.8 and model["iou"][0] < model["dice"][0]


def test_a_saved_model_loads_with_its_encoder_checked(trained, tmp_path):
    found, spec, maps, train, test, config, weights, prior = trained
    segmentation.save_model(str(tmp_path / "seg"), config, weights, "scan", {"images": len(train)})
    loaded = segmentation.load_model(str(tmp_path / "seg"))
    assert loaded.crop == "scan" and loaded.config == config
    assert set(loaded.weights) == set(weights)
    np.testing.assert_array_equal(
        segmentation.decoder_probabilities(spec, loaded.weights, [m[test[:2]] for m in maps], SIZE),
        segmentation.decoder_probabilities(spec, weights, [m[test[:2]] for m in maps], SIZE))
    import glob
    import shutil
    copy = tmp_path / "encoder"
    copy.mkdir()
    for path in glob.glob(config.checkpoint_path + ".*"):
        shutil.copy(path, copy)
    prefix = str(copy / "model.ckpt")
    segmentation.save_model(str(tmp_path / "moved"), config.replace(checkpoint_path=prefix),
                            weights, "scan", {})
    with open(prefix + ".index", "ab") as f:
        f.write(b"changed")
    with pytest.raises(ValueError, match="has changed since training"):
        segmentation.load_model(str(tmp_path / "moved"))
    shutil.rmtree(copy)
    with pytest.raises(ValueError, match="is not there"):
        segmentation.load_model(str(tmp_path / "moved"))
    with pytest.raises(ValueError, match="not a segmentation model"):
        segmentation.load_model(str(tmp_path))


def test_cross_fitted_masks_come_from_decoders_that_did_not_see_the_unit(trained, monkeypatch):
    found, spec, maps, train, test, config, weights, prior = trained
    seen = []
    real = localise.fit_segmentation

    def recording(spec_, maps_, found_, indices, config_):
        seen.append({found.records[i].unit for i in indices})
        return real(spec_, maps_, found_, indices, config_)
    monkeypatch.setattr(localise, "fit_segmentation", recording)
    wanted = train[:12]
    result = localise.cross_fitted(spec, maps, found, train, wanted,
                                   config.replace(steps=4), parts=2)
    assert sorted(result) == sorted(wanted) and len(seen) == 2
    for index in wanted:
        assert result[index].shape == (SIZE, SIZE)
        assert sum(found.records[index].unit in units for units in seen) == 1
