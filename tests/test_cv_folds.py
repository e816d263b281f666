"""Study shards built once for cross-validation: folds.json and each fold's records."""

import os
import shutil

import numpy as np
import pytest

from thyroid.datasets import folds, shards
from thyroid.study import data as study_data, fitting
from thyroid.study.config import StudyConfig
from thyroid.study.results import FoldResult


@pytest.fixture(scope="module")
def cv_build(synthetic_root, tmp_path_factory):
    """Shards of the synthetic DDTI set where case 2's first image is a byte copy of case 1's."""
    ddti = tmp_path_factory.mktemp("ddti_dup") / "ddti"
    shutil.copytree(os.path.join(synthetic_root, "ddti"), ddti)
    images = sorted(p for p in os.listdir(ddti) if p.endswith(".jpg"))
    first_of = {}
    for name in images:
        first_of.setdefault(name.split("_")[0], name)
    cases = sorted(first_of, key=int)
    shutil.copyfile(ddti / first_of[cases[0]], ddti / first_of[cases[1]])
    output = tmp_path_factory.mktemp("cv_shards")
    study = StudyConfig(augment_copies=2, seed=0, cv_folds=3, cv_repeats=2)
    manifest = study_data.build_development_shards(
        study, study_data.Sources(str(ddti), None, "test"), str(output))
    assignment = folds.load_folds(os.path.join(str(output), folds.FOLDS_NAME))
    return output, manifest, assignment, (f"ddti:{cases[0]}", f"ddti:{cases[1]}")


def test_every_image_once_in_one_split_and_folds_recorded(cv_build):
    output, manifest, assignment, _ = cv_build
    assert manifest["splits"]["validation"]["images"] == 0 == manifest["splits"]["test"]["images"]
    data = shards.load_split(str(output), "train", decode=False)
    originals = data.keys[~data.augmented]
    assert sorted(originals) == sorted(assignment["images"])
    assert len(set(originals)) == len(originals)
    # Two augmented copies per image, each tagged with its original's key.
    copies = data.keys[data.augmented]
    assert sorted(copies) == sorted(list(originals) * 2)
    assert folds.load_folds(str(output / folds.FOLDS_NAME)) == assignment


def test_folds_are_disjoint_by_patient_and_duplicate_group(cv_build):
    _, _, assignment, (patient_a, patient_b) = cv_build
    patients = assignment["patient_ids"]
    for repeat in range(2):
        tested = []
        for fold in range(3):
            members = folds.fold_members(assignment, repeat, fold)
            by_part = {part: {patients[assignment["images"].index(k)] for k in keys}
                       for part, keys in members.items()}
            assert not by_part["test"] & (by_part["train"] | by_part["validation"])
            assert not by_part["train"] & by_part["validation"]
            # Patients sharing a byte-identical image are always on the same side.
            sides = [part for part, ps in by_part.items() if patient_a in ps]
            assert sides == [part for part, ps in by_part.items() if patient_b in ps]
            tested += sorted(members["test"])
        assert sorted(tested) == sorted(assignment["images"])  # exactly one test fold each


def test_augmented_copies_only_in_the_training_part(cv_build):
    output, _, assignment, _ = cv_build
    data = shards.load_split(str(output), "train", decode=False)
    members = folds.fold_members(assignment, 1, 2)
    for part in folds.PARTS:
        chosen = folds.select(data.keys, data.augmented, members, part)
        assert set(data.keys[chosen]) == members[part]
        assert data.augmented[chosen].any() == (part == "train")
    refit = folds.fold_members(assignment, 0, folds.REFIT_FOLD)
    assert len(folds.select(data.keys, data.augmented, refit, "train")) == len(data.keys)
    with pytest.raises(ValueError, match="no fold 3 of repeat 0"):
        folds.fold_members(assignment, 0, 3)


def test_refit_settings_are_the_fold_medians():
    results = [FoldResult(0, k, t, e, 1.0, []) for k, (t, e) in
               enumerate([(0.2, 3.0), (0.6, 1.0), (0.4, 8.0)])]
    assert fitting.refit_settings(results) == (0.4, 3.0)
    svm = [FoldResult(0, 0, 0.3, None, 1.0, [])]
    assert fitting.refit_settings(svm) == (0.3, None)
    assert np.isclose(fitting.refit_settings(results[:2])[0], 0.4)


def test_validation_score_prefers_auc_then_log_loss():
    from thyroid.training.loop import validation_score
    labels = [0, 0, 1, 1]
    perfect, confident = validation_score(labels, [0.4, 0.45, 0.55, 0.6]), \
        validation_score(labels, [0.1, 0.2, 0.8, 0.9])
    swapped = validation_score(labels, [0.6, 0.2, 0.8, 0.1])
    assert perfect[0] == confident[0] == 1.0 and confident > perfect > swapped
    one_class = validation_score([1, 1], [0.9, 0.8])
    assert one_class[0] == -1.0 and one_class > validation_score([1, 1], [0.2, 0.3])


def test_more_folds_than_a_class_has_patients_is_refused_naming_the_flag():
    """The reported defect: such folds ran, and a test fold without one class scored an
    AUC of 0.00 reported as ok."""
    from thyroid.datasets import splits
    labels = [0, 0, 1, 1, 1, 1, 1]
    groups = ["a", "b", "c", "d", "e", "f", "g"]
    with pytest.raises(splits.FoldCountError, match=r"--cv_folds=3: only 2 benign patient units"):
        splits.cross_validation_folds(labels, groups, 3)
    assert splits.cross_validation_folds(labels, groups, 2)["num_folds"] == 2


def test_a_study_with_too_many_folds_stops_in_one_line(tmp_path):
    import subprocess
    from study_runs import REPO, study_command
    done = subprocess.run(study_command(tmp_path, "--cv_folds=90", "--num_cases=1", "--rows=1",
                                        "--noexport"),
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("study: error: shards: FoldCountError: --cv_folds=90: only "), last
    # The user's value is the whole story: no traceback of the failed job, nor of the report
    # that could not be written without its shards.
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert not [line for line in done.stderr.splitlines()  # the study's own error lines
                if line.startswith("E") and ".py:" in line.split("]")[0]], done.stderr[-3000:]
