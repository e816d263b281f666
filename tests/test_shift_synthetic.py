"""The shift score on synthetic scanners: a reference fitted on one draw of the generator's
images marks few fresh images of the same look unusual, and tells images drawn as another
scanner would (other gain, speckle, frame and marks) from them."""

import dataclasses

import numpy as np

from thyroid.datasets import splits
from thyroid.datasets import synthetic as synth, synthetic_scans
from thyroid.stats import metrics, shift
from thyroid.training import shift_features


def _reference(shift_sets, checkpoint):
    values, labels = shift_sets["development"]
    folds = splits.cross_validation_folds(list(labels), list(range(len(labels))), 5, seed=0)
    parts = [fold["test"] for fold in folds["repeats"][0]["folds"]]
    return shift_features.fit_reference(values, parts, checkpoint)


def test_fresh_images_of_the_same_look_are_rarely_unusual(shift_sets, efficientnet_checkpoint):
    reference = _reference(shift_sets, efficientnet_checkpoint)
    fresh = reference.shift(shift_sets["fresh"][0])
    share = float(np.mean(shift.is_unusual(fresh)))
    print(f"fresh: {fresh.size} images, {100 * share:.1f} % unusual, median shift "
          f"{np.median(fresh):.0f}")
    assert fresh.size >= 300
    assert share <= 0.03


def test_the_score_separates_another_scanner_and_not_another_draw(shift_sets,
                                                                  efficientnet_checkpoint):
    reference = _reference(shift_sets, efficientnet_checkpoint)
    fresh = reference.scores(shift_sets["fresh"][0])

    def auroc(name):
        other = reference.scores(shift_sets[name][0])
        labels = np.r_[np.zeros(fresh.size), np.ones(other.size)]
        return metrics.auc_score(labels, np.r_[fresh, other])

    other, control = auroc("other_scanner"), auroc("control")
    unusual = float(np.mean(shift.is_unusual(reference.shift(shift_sets["other_scanner"][0]))))
    print(f"AUROC fresh vs other scanner {other:.3f} ({100 * unusual:.0f} % unusual); "
          f"fresh vs another draw of the same look {control:.3f}")
    assert other >= 0.9
    assert abs(control - 0.5) < 0.15     # a second draw of the same look is not "shifted"


def test_another_scanner_is_a_separate_option_of_the_generator(tmp_path):
    look = synthetic_scans.OTHER_SCANNER
    same = [rgb for rgb, _ in synth.draw_labelled_images(3, 5, 200, 140)]
    again = [rgb for rgb, _ in synth.draw_labelled_images(3, 5, 200, 140)]
    other = [rgb for rgb, _ in synth.draw_labelled_images(3, 5, 200, 140, look=look)]
    assert all(np.array_equal(a, b) for a, b in zip(same, again))   # same seed, same images
    assert all(a.shape == b.shape == (140, 200, 3) for a, b in zip(same, other))
    # The other scanner's frame is grey where the generator's is black, its field brighter.
    assert np.median(other[0][:, :5]) == look.frame_grey
    assert np.median(same[0][:, :5]) == 0
    summary = synth.write_class_folders(str(tmp_path), 8, 1, 200, 140, look=look)
    assert summary["images"] == 8 == summary["benign"] + summary["malignant"]
    assert len(list(tmp_path.glob("*/*.jpg"))) == 8
    assert (dataclasses.replace(synthetic_scans.DEFAULT_ACQUISITION)
            == synthetic_scans.Acquisition())


def test_synth_writes_an_other_scanner_set_beside_unchanged_ddti_and_local(tmp_path):
    from thyroid import synth as synth_command
    from thyroid.datasets import folders
    common = ["--num_cases=3", "--seed=2", "--width=200", "--height=140"]
    assert synth_command.main(["synth", f"--output_dir={tmp_path / 'a'}"] + common) == 0
    assert synth_command.main(["synth", f"--output_dir={tmp_path / 'b'}",
                               "--other_scanner_cases=6"] + common) == 0
    for kind in ("ddti", "local"):
        for path in (tmp_path / "a" / kind).rglob("*"):
            twin = tmp_path / "b" / kind / path.relative_to(tmp_path / "a" / kind)
            assert path.is_dir() or path.read_bytes() == twin.read_bytes()
    assert not (tmp_path / "a" / "other_scanner").exists()
    result = folders.read(str(tmp_path / "b" / "other_scanner"))
    assert len(result.labelled) == 6
