"""--augment=ultrasound and --tta in the study: the ultrasound shards hold the same originals on
the same folds with other copies, both variants of a row are fitted and scored on the same
images, test-time views are what they say, and the report sets each row beside its variant
with DeLong's p. One small study (row 9, two folds, an external set) serves every check."""

import json
import os

import numpy as np
import pytest

from study_runs import run_study
from thyroid.datasets import build_config, folds, shards, synthetic
from thyroid.stats import pooled
from thyroid.stats.operating_point import choose_threshold
from thyroid.study import plan as study_plan
from thyroid.study.config import StudyConfig
from thyroid.study.comparison_report import HEADING


def test_the_comparison_is_planned_only_when_asked_and_only_for_rows_it_can_change():
    assert not [j for j in study_plan.plan_jobs(StudyConfig(quick=True))
                if j.kind.startswith(("aug_", "tta")) or j.kind == "comparison"]
    ids = [job.id for job in study_plan.plan_jobs(StudyConfig(
        quick=True, rows=(1, 9, 11, 12), augment="ultrasound", tta=True))]
    assert {"aug_shards", "tta_views", "aug_fit-1-r0-f0", "aug_features-9", "aug_fit-9-r0-f2",
            "tta-1", "tta-9", "tta-11", "comparison"} <= set(ids)
    # Row 11 leaves the copies out (both augmentations would predict the same); row 12's
    # nodule view has no cheap test-time view.
    assert not [i for i in ids if i.startswith(("aug_fit-11", "aug_fit-12", "tta-12"))]
    assert ids.index("comparison") < ids.index("report")


@pytest.mark.parametrize("flags, message", [
    (["--augment=ultrasound", "--augment_copies=0"], "--augment=ultrasound: compares the copies"),
    (["--tta", "--cv_folds=0"], "--tta=true: the comparison needs"),
    (["--augment=mixup"], "--augment=mixup: value should be one of <standard|ultrasound>"),
])
def test_settings_the_comparison_cannot_use_are_refused_in_one_line(tmp_path, capsys, flags,
                                                                    message):
    from thyroid.study.__main__ import main
    assert main(["study", *flags, f"--output_dir={tmp_path}"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]


def test_a_view_is_built_for_evaluation_only():
    config = build_config.BuildConfig(output_dir="out", sources={"ddti": "."}, view="mirror")
    with pytest.raises(build_config.ConfigError, match="--view=mirror: a test-time view"):
        config.validate(check_paths=False)
    with pytest.raises(build_config.ConfigError, match="--augmentation=mixup"):
        config.replace(view=None, augmentation="mixup").validate(check_paths=False)
    config.replace(evaluation_only=True).validate(check_paths=False)


EXTERNAL_IMAGES = 16


@pytest.fixture(scope="module")
def compared_run(synthetic_root, efficientnet_checkpoint, tmp_path_factory):
    """Row 9 on the session's synthetic set, two folds, both variants, a small external set."""
    root = tmp_path_factory.mktemp("compared")
    synthetic.write_class_folders(str(root / "external"), EXTERNAL_IMAGES, 5, 280, 180)
    _, run_dir = run_study(root, "--rows=9", "--cv_folds=2", "--noexport",
                           f"--ddti_dir={synthetic_root / 'ddti'}",
                           f"--local_dir={synthetic_root / 'local'}",
                           "--augment=ultrasound", "--tta", "--cpus_per_job=1",
                           f"--external_image_dir={root / 'external'}",
                           checkpoint_dir=_checkpoint_dir(efficientnet_checkpoint))
    return run_dir



def _checkpoint_dir(prefix):
    """The --checkpoint_dir holding the converted checkpoint ``prefix``."""
    from thyroid.checkpoints.locate import default_checkpoint_path
    from thyroid.nets import get_network
    folder = os.path.dirname(prefix)
    while folder != os.path.dirname(folder):
        if default_checkpoint_path(get_network("efficientnet_lite0"), folder)[0] == prefix:
            return folder
        folder = os.path.dirname(folder)
    raise AssertionError(f"no checkpoint folder holds {prefix}")


def _originals(dataset_dir, split="train"):
    """{key: encoded bytes} of the original images, and [(key, bytes)] of the copies."""
    originals, copies = {}, []
    for record in shards.iter_split(dataset_dir, split):
        if record.augmented:
            copies.append((record.key, record.encoded))
        else:
            originals[record.key] = record.encoded
    return originals, copies


def test_the_ultrasound_shards_hold_the_same_originals_on_the_same_folds(compared_run):
    standard, ultrasound = compared_run / "shards", compared_run / "shards_ultrasound"
    assert (standard / "folds.json").read_bytes() == (ultrasound / "folds.json").read_bytes()
    own, own_copies = _originals(str(standard))
    other, other_copies = _originals(str(ultrasound))
    assert own == other  # byte for byte
    assert [key for key, _ in own_copies] == [key for key, _ in other_copies]
    changed = sum(a != b for (_, a), (_, b) in zip(own_copies, other_copies))
    assert changed == len(own_copies) > 0
    # Folds are only ever copied onto the same images.
    with pytest.raises(ValueError, match="are not those of the folds"):
        folds.copy_folds(str(standard / "folds.json"), str(compared_run / "tta" / "zoom"),
                         "train")


def _records(run_dir, job):
    return json.loads((run_dir / "jobs" / job / "records.json").read_text())


def _payload(run_dir, job):
    result = json.loads((run_dir / "jobs" / job / "result.json").read_text())
    assert result["status"] == "ok", result["note"]
    return result["payload"]


def test_each_fold_scores_the_same_images_in_both_variants(compared_run):
    for fold in (0, 1):
        plain = _records(compared_run, f"fit-9-r0-f{fold}")
        trained = _records(compared_run, f"aug_fit-9-r0-f{fold}")
        tta = [r for r in _records(compared_run, "tta-9") if r["fold"] == fold]
        images = [r["image"] for r in plain]
        assert images == [r["image"] for r in trained] == [r["image"] for r in tta]
        assert [r["label"] for r in plain] == [r["label"] for r in tta]
        assert any(abs(a["prob"] - b["prob"]) > 1e-6 for a, b in zip(plain, trained))
        assert any(abs(a["prob"] - b["prob"]) > 1e-6 for a, b in zip(plain, tta))
    # Each TTA fold's threshold comes from its inner validation's TTA scores alone.
    payload = _payload(compared_run, "tta-9")
    for fold in payload["folds"]:
        chosen = choose_threshold("youden", fold["validation"]["labels"],
                                  fold["validation"]["probs"])
        assert fold["threshold"] == pytest.approx(chosen)
    assert payload["external_images"] == EXTERNAL_IMAGES


def test_the_views_are_the_images_mirrored_and_zoomed(compared_run):
    from thyroid.preprocessing import tta
    views = _payload(compared_run, "tta_views")
    assert sorted(views["development"]) == sorted(views["external"]) == \
        ["mirror", "mirror_zoom", "zoom"]
    own, _ = _originals(str(compared_run / "shards"))
    key = sorted(own)[0]
    image = shards.decode_image(own[key])
    for name, folder in views["development"].items():
        seen, _ = _originals(folder, "test")
        assert sorted(seen) == sorted(own)
        view = shards.decode_image(seen[key]).astype(int)
        expected = tta.named_view(image, name).astype(int)
        # JPEG re-encoding only: far closer than any other view of the image.
        others = [np.abs(view - tta.named_view(image, n).astype(int)).mean()
                  for n in tta.VIEW_NAMES if n != name]
        assert np.abs(view - expected).mean() < 0.5 * min(others)


def test_the_report_sets_each_row_beside_its_variants(compared_run):
    md = (compared_run / "summary.md").read_text(encoding="utf-8")
    section = md[md.index(f"## {HEADING}"):]
    section = section[:section.index("\n## ", 1)]
    assert "### Ultrasound augmentation" in section and "### Test-time augmentation" in section
    comparison = _payload(compared_run, "comparison")["variants"]
    plain = _records(compared_run, "fit-9-r0-f0") + _records(compared_run, "fit-9-r0-f1")
    for name, jobs in (("ultrasound", ("aug_fit-9-r0-f0", "aug_fit-9-r0-f1")),
                       ("tta", ("tta-9",))):
        variant = [r for job in jobs for r in _records(compared_run, job)
                   if not pooled.is_external(r["fold"])]
        expected = pooled.delong_of_records(plain, variant)
        assert comparison[name]["p_vs_plain"]["9"] == pytest.approx(expected["p_value"])
        figures = comparison[name]["out_of_fold"]["9"]
        assert 0 <= figures["auc_ci_low"] <= figures["auc"] <= figures["auc_ci_high"] <= 1
        assert comparison[name]["external"]["9"]["images"] == EXTERNAL_IMAGES
    lines = [line for line in section.splitlines() if line.startswith("| 9 |")]
    assert len(lines) == 2 and all(line.count("|") == 11 for line in lines)
    assert section.count("pass the bar for a default") + section.count("**Passes**") == 2
