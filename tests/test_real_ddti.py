"""Checks against the real DDTI copy (skipped when it is not there)."""

import os
from pathlib import Path

import pytest

from thyroid.datasets import build as build_tfrecords
from thyroid.datasets import ddti, shards


def _ddti_dir():
    override = os.environ.get("THYROID_DDTI_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1].parent / "shared/data/ddti"


DDTI_DIR = _ddti_dir()
pytestmark = pytest.mark.skipif(not (DDTI_DIR.is_dir() and any(DDTI_DIR.glob("*.xml"))),
                                reason=f"real DDTI not found at {DDTI_DIR}")


@pytest.fixture(scope="module")
def real_build(tmp_path_factory):
    output = tmp_path_factory.mktemp("real_ddti")
    manifest = build_tfrecords.build(build_tfrecords.BuildConfig(
        output_dir=str(output), sources={"ddti": str(DDTI_DIR)}, protocol="patient",
        augment_copies=0, seed=0))
    return output, manifest


def test_counts():
    counts = ddti.read(str(DDTI_DIR)).counts()
    assert counts["cases"] == 330 and counts["images"] == 411
    assert counts["labelled_cases"] == 238 and counts["labelled_images"] == 280
    assert counts["labels"]["benign"] == {"cases": 41, "images": 49}
    assert counts["labels"]["malignant"] == {"cases": 197, "images": 231}
    assert counts["excluded_reasons"] == {"empty TIRADS": 92}


def test_patient_build_has_no_overlap_and_keeps_duplicates_together(real_build):
    output, manifest = real_build
    patients = {s: set(shards.load_split(str(output), s).patient_ids) for s in shards.SPLITS}
    assert not patients["train"] & patients["validation"]
    assert not patients["train"] & patients["test"]
    assert not patients["validation"] & patients["test"]
    assert manifest["leakage"]["patients_in_multiple_splits"] == 0
    assert sum(s["images"] for s in manifest["splits"].values()) == 280
    groups = {tuple(g["images"]): g for g in manifest["duplicates"]}
    assert ("353_2.jpg", "396_1.jpg") in groups
    assert ("150_1.jpg", "233_2.jpg", "323_1.jpg", "326_1.jpg", "349_1.jpg") in groups
    for group in manifest["duplicates"]:
        assert len(group["splits"]) <= 1, group
