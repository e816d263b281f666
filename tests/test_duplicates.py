"""An external set checked against development: byte-identical files and look-alike scans."""

import io

import numpy as np
from PIL import Image

from deploy_fixtures import synthetic_scan
from thyroid.datasets import duplicates


def _reencoded(rgb, size=None, quality=70):
    """The same scan saved again as JPEG (and resized): other bytes, the same picture."""
    image = Image.fromarray(rgb)
    if size:
        image = image.resize(size, Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def test_exact_duplicates_are_matched_by_file_hash():
    development = {"ddti:1/1_1.jpg": "aa", "ddti:2/2_1.jpg": "bb", "ddti:3/3_1.jpg": "aa"}
    external = {"ddti:900/900_1.jpg": "aa", "ddti:901/901_1.jpg": "cc"}
    assert duplicates.exact_duplicates(development, external) == [
        {"external": "ddti:900/900_1.jpg", "development": "ddti:1/1_1.jpg", "sha256": "aa"}]


def test_near_duplicates_find_a_reencoded_scan_and_not_other_scans():
    rng = np.random.RandomState(0)
    development = {f"dev{i}": synthetic_scan(i % 2, rng) for i in range(30)}
    external = {"copy": _reencoded(development["dev7"], size=(100, 86)),
                **{f"other{i}": synthetic_scan(i % 2, rng) for i in range(10)}}
    found = duplicates.near_duplicates(development, external)
    assert [(p["external"], p["development"]) for p in found] == [("copy", "dev7")]
    assert found[0]["bits"] <= duplicates.NEAR_DUPLICATE_BITS
    assert duplicates.near_duplicates(development, external, skip={"copy"}) == []
    assert duplicates.dhash(development["dev0"]).size == 72
