"""External validation sets come in through every reader, as evaluation-only builds."""

import numpy as np
from PIL import Image

from thyroid.study.data import build_external_shards
from thyroid.study.fitting import EXTERNAL_SPLIT


def write_class_folders(root, per_class=3):
    rng = np.random.default_rng(0)
    for name in ("Benign", "Malignant"):
        folder = root / "Hospital B 2025" / name
        folder.mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"scan_{name}_{k}.png")


def test_external_folders_and_csv_become_evaluation_only_sets(tmp_path):
    write_class_folders(tmp_path / "folders")
    manifest = build_external_shards({"folders": str(tmp_path / "folders")},
                                     str(tmp_path / "ext_folders"), seed=0)
    assert manifest["evaluation_only"]
    assert manifest["splits"][EXTERNAL_SPLIT]["images"] == 6
    assert all(manifest["splits"][split]["images"] == 0
               for split in manifest["splits"] if split != EXTERNAL_SPLIT)

    lines = ["path,label"] + [f"{p.relative_to(tmp_path / 'folders')},{int('Malignant' in p.name)}"
                              for p in sorted((tmp_path / "folders").rglob("*.png"))]
    (tmp_path / "folders" / "list.csv").write_text("\n".join(lines) + "\n")
    manifest = build_external_shards({"csv": str(tmp_path / "folders" / "list.csv")},
                                     str(tmp_path / "ext_csv"), seed=0)
    assert manifest["splits"][EXTERNAL_SPLIT]["images"] == 6
