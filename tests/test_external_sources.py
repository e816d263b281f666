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


EXTERNAL_FLAGS = {"ddti": "--external_ddti_dir", "local": "--external_local_dir",
                  "folders": "--external_image_dir", "csv": "--external_csv"}


def test_check_sources_refuses_up_front_naming_the_callers_flag(tmp_path):
    import pytest
    from thyroid.datasets.sources import SourceError, check_sources
    good_csv = tmp_path / "list.csv"
    good_csv.write_text("path,label\na.png,0\n")
    check_sources({"csv": str(good_csv), "folders": str(tmp_path)}, EXTERNAL_FLAGS)  # fine
    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("file,label\n")
    cases = [
        ({"csv": str(tmp_path)}, rf"^--external_csv {tmp_path}: a folder, expected a CSV file$"),
        ({"folders": str(good_csv)}, rf"^--external_image_dir {good_csv}: not a folder$"),
        ({"ddti": str(tmp_path / "nowhere")},
         rf"^--external_ddti_dir {tmp_path / 'nowhere'}: no such folder$"),
        ({"csv": str(bad_header)}, rf"^--external_csv {bad_header}: missing column\(s\) path"),
        ({"pictures": str(tmp_path)}, r"^unknown source kind\(s\) \['pictures'\]"),
    ]
    for sources, message in cases:
        with pytest.raises(SourceError, match=message):
            check_sources(sources, EXTERNAL_FLAGS)
    with pytest.raises(SourceError, match=rf"^--csv {tmp_path}: a folder"):
        check_sources({"csv": str(tmp_path)})  # the build's own flags by default


def test_external_build_errors_name_the_external_flag(tmp_path):
    import pytest
    from thyroid.datasets.build import BuildError
    (tmp_path / "bad.csv").write_text("path,label,Label\n")
    with pytest.raises(BuildError, match=rf"^--external_csv {tmp_path / 'bad.csv'}: column"):
        build_external_shards({"csv": str(tmp_path / "bad.csv")}, str(tmp_path / "out"), seed=0)


def _study(tmp_path, *flags):
    import subprocess
    from study_runs import REPO, study_command
    command = study_command(tmp_path / "out", "--rows=1", "--noexport", *flags,
                            checkpoint_dir=tmp_path / "checkpoints")
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_an_external_set_without_a_usable_labelled_image_is_refused_before_any_work(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "unlabelled" / "scans").mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "unlabelled" / "scans" / "a.png")
    (tmp_path / "nul.csv").write_bytes(b"path,label\nimg\0.png,1\n")
    (tmp_path / "labels.csv").write_text("path,label\nmissing.png,1\nempty/,maybe\n")
    for flag, path in (("external_image_dir", "empty"), ("external_image_dir", "unlabelled"),
                       ("external_csv", "nul.csv"), ("external_csv", "labels.csv")):
        done = _study(tmp_path, f"--{flag}={tmp_path / path}")
        lines = done.stderr.strip().splitlines()
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert lines[-1].startswith(f"study: error: --{flag} {tmp_path / path}"), lines[-1]
        assert not (tmp_path / "out").exists()  # no run folder, no work
