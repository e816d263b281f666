"""Shared fixtures: one small synthetic dataset (and one build of it) per test session."""

import os

import pytest

from thyroid.datasets import synthetic as synth, synthetic_scans

SYNTH_CASES = 30
SYNTH_WIDTH, SYNTH_HEIGHT = 280, 180  # half DDTI size keeps the session fast


def pytest_collection_modifyitems(config, items):
    """Tests marked ``scale`` (the study at several data sizes, a quarter of an hour) run only
    when asked for by name: ``-m scale``."""
    if "scale" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="the study at 3x the default size: run with -m scale")
    for item in items:
        if "scale" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """``<root>/ddti`` and ``<root>/local`` written by thyroid.synth (seed 0)."""
    root = tmp_path_factory.mktemp("synthetic")
    synth.generate(str(root), num_cases=SYNTH_CASES, seed=0, width=SYNTH_WIDTH,
                   height=SYNTH_HEIGHT)
    return root


@pytest.fixture(scope="session")
def patient_build(synthetic_root, tmp_path_factory):
    """(output_dir, manifest) of a patient-protocol build over both synthetic sources."""
    from thyroid.datasets import build as build_tfrecords
    output = tmp_path_factory.mktemp("patient_build")
    manifest = build_tfrecords.build(build_tfrecords.BuildConfig(
        output_dir=str(output), sources={"ddti": os.path.join(synthetic_root, "ddti"),
                                         "local": os.path.join(synthetic_root, "local")},
        protocol="patient", augment_copies=2, seed=0, overwrite=True))
    return output, manifest


@pytest.fixture(scope="session")
def quick_study(tmp_path_factory):
    """(process, run folder) of the default ``--quick`` study on the local executor, shared
    by every test that reads a finished study. One thread per job, so that its predictions
    do not depend on the machine's core count (``tests/fixtures/quick_predictions.csv``)."""
    from study_runs import QUICK_REFERENCE_FLAGS, run_study
    return run_study(tmp_path_factory.mktemp("quick"), *QUICK_REFERENCE_FLAGS)


@pytest.fixture(scope="session")
def localised_run(tmp_path_factory):
    """(process, run folder) of a ``--quick`` study of rows 10-13: its export holds the
    classifier and row 12's segmentation network (tests of localisation and of the serving
    install read it)."""
    from study_runs import run_study
    return run_study(tmp_path_factory.mktemp("localised"), "--rows=10,11,12,13")


@pytest.fixture(scope="session")
def awkward_study(tmp_path_factory):
    """(process, run folder, decoy folder and its files before) of a one-row quick study whose
    output folder and run name hold glob characters (``out[1]/r*?``), beside a decoy that
    those names match as a pattern (``out1/rab``, holding files named as the run's
    checkpoints), with a one-class external set (three benign images)."""
    import numpy as np
    from PIL import Image
    from study_runs import run_study, snapshot
    base = tmp_path_factory.mktemp("awkward")
    external = base / "external" / "benign"
    external.mkdir(parents=True)
    for k in range(3):
        pixels = np.random.default_rng(k).integers(0, 255, (180, 280, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(external / f"scan{k}.png")
    decoy = base / "out1" / "rab"
    fold_dir = decoy / "train" / "01_small_cnn_scratch" / "repeat0_fold0"
    for folder in (fold_dir, fold_dir / "best"):
        folder.mkdir(parents=True)
        for step in range(1, 40):
            for suffix in ("index", "meta", "data-00000-of-00001"):
                (folder / f"model.ckpt-{step}.{suffix}").write_bytes(b"not ours")
    before = snapshot(decoy)
    done, run_dir = run_study(base / "out[1]", "--rows=1", "--cv_folds=2", "--noexport",
                              f"--external_image_dir={external.parent}", run_name="r*?",
                              checkpoint_dir=base / "checkpoints")
    return done, run_dir, decoy, before


@pytest.fixture(scope="session")
def efficientnet_checkpoint(tmp_path_factory):
    """The converted EfficientNet-Lite0 ImageNet checkpoint prefix (converted once per
    session; the segmentation network's frozen encoder needs real weights)."""
    from thyroid.checkpoints.convert import convert
    from thyroid.checkpoints.locate import default_checkpoint_path
    from thyroid.nets import get_network
    checkpoint_dir = str(tmp_path_factory.mktemp("imagenet"))
    convert("efficientnet_lite0", checkpoint_dir)
    return default_checkpoint_path(get_network("efficientnet_lite0"), checkpoint_dir)[0]



SHIFT_WIDTH, SHIFT_HEIGHT = 280, 180
SHIFT_SETS = {  # name: (images, seed, look): the development draw, fresh draws, another scanner
    "development": (300, 11, None), "fresh": (300, 12, None), "control": (100, 13, None),
    "other_scanner": (120, 14, "other")}


@pytest.fixture(scope="session")
def shift_sets(efficientnet_checkpoint, tmp_path_factory):
    """{name: (shift features [N, 192], labels)} of synthetic sets written as class folders
    and read back as the study reads images (computed once per session): the development
    draw, fresh draws of the same look and a set drawn as another scanner would."""
    import numpy as np
    from thyroid.datasets import images
    from thyroid.training import shift_features
    root = tmp_path_factory.mktemp("shift_sets")
    pictures, labels, counts = [], {}, {}
    for name, (count, seed, look) in SHIFT_SETS.items():
        folder = root / name
        synth.write_class_folders(str(folder), count, seed, SHIFT_WIDTH, SHIFT_HEIGHT,
                                  look=synthetic_scans.OTHER_SCANNER if look else None)
        paths = sorted(folder.glob("*/*.jpg"))
        labels[name] = np.array([int(path.parent.name == "malignant") for path in paths])
        pictures += [images.load_image(str(path)) for path in paths]
        counts[name] = len(paths)
    values = shift_features.image_features(pictures, efficientnet_checkpoint)  # one network
    out, start = {}, 0
    for name, count in counts.items():
        out[name] = (values[start:start + count], labels[name])
        start += count
    return out
