"""Shared fixtures: one small synthetic dataset (and one build of it) per test session."""

import os

import pytest

from thyroid.datasets import synthetic as synth

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
def efficientnet_checkpoint(tmp_path_factory):
    """The converted EfficientNet-Lite0 ImageNet checkpoint prefix (converted once per
    session; the segmentation network's frozen encoder needs real weights)."""
    from thyroid.checkpoints.convert import convert
    from thyroid.checkpoints.locate import default_checkpoint_path
    from thyroid.nets import get_network
    checkpoint_dir = str(tmp_path_factory.mktemp("imagenet"))
    convert("efficientnet_lite0", checkpoint_dir)
    return default_checkpoint_path(get_network("efficientnet_lite0"), checkpoint_dir)[0]

