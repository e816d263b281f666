import collections
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from thyroid.datasets import build as build_tfrecords
from thyroid.datasets import shards
from thyroid.datasets.build_sources import NoUsableExamplesError


def _all_splits(output):
    return {split: shards.load_split(str(output), split) for split in shards.SPLITS}


def test_patient_protocol_has_no_overlap_and_augments_train_only(patient_build):
    output, manifest = patient_build
    data = _all_splits(output)
    patients = {split: set(d.patient_ids) for split, d in data.items()}
    assert not patients["train"] & patients["test"]
    assert not patients["train"] & patients["validation"]
    assert not patients["validation"] & patients["test"]
    assert data["train"].augmented.any()
    assert not data["validation"].augmented.any() and not data["test"].augmented.any()
    assert manifest["leakage"]["patients_in_multiple_splits"] == 0
    assert manifest["leakage"]["test_images_with_patient_in_train"] == 0
    for split, d in data.items():
        summary = manifest["splits"][split]
        assert summary["patients"] == len(set(d.patient_ids)) > 0
        assert summary["total"]["benign"] + summary["total"]["malignant"] == len(d)
        assert summary["original"]["malignant"] == int(((d.labels == 1) & ~d.augmented).sum())
    train = manifest["splits"]["train"]
    assert train["total"]["benign"] == 3 * train["original"]["benign"]  # 2 copies each
    assert set(manifest["sources"]) == {"ddti", "local"}
    for counts in manifest["sources"].values():
        assert {"cases", "labelled_cases", "images", "labelled_images"} <= set(counts)
    with open(os.path.join(output, "labels.txt")) as f:
        assert f.read() == "0:benign\n1:malignant\n"
    assert {"protocol", "seed", "crop", "skipped", "duplicates"} <= set(manifest)
    assert "warning" not in manifest


def test_split_data_types(patient_build):
    output, _ = patient_build
    data = shards.load_split(str(output), "train")
    assert data.labels.dtype == np.int64 and data.augmented.dtype == bool
    assert data.images[0].dtype == np.uint8 and data.images[0].shape[2] == 3
    assert set(data.labels) == {0, 1}
    assert all(p.startswith(("ddti:", "local:")) for p in data.patient_ids)
    assert shards.read_manifest(str(output))["protocol"] == "patient"
    fingerprint = shards.split_fingerprint(str(output), "train")
    assert fingerprint == shards.split_fingerprint(str(output), "train")
    assert fingerprint != shards.split_fingerprint(str(output), "test")
    names = sorted(os.listdir(output))
    assert "train-00000-of-00002.tfrecord" in names and "test-00001-of-00002.tfrecord" in names


def test_duplicate_images_land_in_one_split(patient_build):
    _, manifest = patient_build
    groups = [g for g in manifest["duplicates"] if len(g["labelled_patients"]) > 1]
    assert groups, "synth writes one labelled duplicate pair across patients"
    for group in manifest["duplicates"]:
        assert len(group["splits"]) <= 1
    assert manifest["leakage"]["duplicate_groups_in_multiple_splits"] == 0


def test_slim_tfexample_decoder_reads_shards(patient_build):
    from thyroid.compat import slim, tf, tf1
    output, _ = patient_build
    record = next(shards.iter_records(str(output), "validation"))
    shards.slim_decoder()  # also restores the control_flow_ops.case alias tf-slim needs
    keys_to_features = {
        "image/encoded": tf.io.FixedLenFeature((), tf.string, default_value=""),
        "image/format": tf.io.FixedLenFeature((), tf.string, default_value="jpeg"),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        "image/patient_id": tf.io.FixedLenFeature((), tf.string, default_value=""),
    }
    items_to_handlers = {
        "image": slim.tfexample_decoder.Image(channels=3),
        "label": slim.tfexample_decoder.Tensor("image/class/label"),
        "patient_id": slim.tfexample_decoder.Tensor("image/patient_id"),
    }
    with tf.Graph().as_default():
        decoder = slim.tfexample_decoder.TFExampleDecoder(keys_to_features, items_to_handlers)
        tensors = decoder.decode(tf.constant(record), ["image", "label", "patient_id"])
        ours = shards.slim_decoder()
        items = ours.list_items()
        our_tensors = ours.decode(tf.constant(record), items)
        with tf1.Session() as session:
            (image, label, patient), decoded = session.run([tensors, our_tensors])
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert label in (0, 1) and patient.decode().startswith(("ddti:", "local:"))
    decoded = dict(zip(items, decoded))
    assert decoded["image"].shape == (decoded["height"], decoded["width"], 3)
    assert np.array_equal(decoded["image"], image) and decoded["augmented"] == 0


def build_from(output_dir, sources, **settings):
    return build_tfrecords.build(build_tfrecords.BuildConfig(output_dir=str(output_dir),
                                                             sources=sources, **settings))


def test_image_protocol_reports_leakage(synthetic_root, tmp_path):
    manifest = build_from(str(tmp_path), {"ddti": str(synthetic_root / "ddti")}, protocol="image",
                          augment_copies=2, seed=1)
    assert manifest["protocol"] == "image"
    assert manifest["leakage"]["patients_in_multiple_splits"] > 0
    assert manifest["leakage"]["test_images_with_patient_in_train"] > 0
    assert "LEAKAGE" in manifest["warning"] and "test" in manifest["warning"]
    test = shards.load_split(str(tmp_path), "test")
    assert test.augmented.any()  # augmented before the split


def _copy_ddti(synthetic_root, tmp_path):
    target = tmp_path / "ddti"
    shutil.copytree(synthetic_root / "ddti", target)
    return target


def test_corrupt_and_empty_images_are_skipped(synthetic_root, tmp_path):
    source = _copy_ddti(synthetic_root, tmp_path)
    labelled = [e for e in build_tfrecords.READERS["ddti"](str(source))]
    empty, truncated = labelled[0].image_path, labelled[1].image_path
    open(empty, "wb").close()
    with open(truncated, "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[:len(data) // 3])
    (source / "garbage.bin").write_bytes(b"\x00" * 10)
    manifest = build_from(str(tmp_path / "out"), {"ddti": str(source)}, augment_copies=0,
                          num_shards=1)
    reasons = {os.path.basename(entry["path"]): reason
               for reason, group in manifest["skipped"].items() for entry in group["files"]}
    assert reasons[os.path.basename(empty)] == "empty file"
    assert "cannot decode" in reasons[os.path.basename(truncated)]
    assert reasons["garbage.bin"] == "unknown file type"
    written = sum(s["images"] for s in manifest["splits"].values())
    assert written == manifest["sources"]["ddti"]["labelled_images"] - 2


def test_no_usable_example_is_an_error(tmp_path):
    (tmp_path / "ddti").mkdir()
    (tmp_path / "ddti" / "1.xml").write_text("<case><tirads></tirads></case>")
    with pytest.raises(NoUsableExamplesError):
        build_from(str(tmp_path / "out"), {"ddti": str(tmp_path / "ddti")})
    assert not (tmp_path / "out" / "manifest.json").exists()
    result = subprocess.run(
        [sys.executable, "-m", "thyroid.build_tfrecords", f"--ddti_dir={tmp_path / 'ddti'}",
         f"--output_dir={tmp_path / 'out'}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "no usable labelled image" in result.stderr


def test_existing_output_needs_overwrite(synthetic_root, tmp_path):
    config = build_tfrecords.BuildConfig(output_dir=str(tmp_path),
                                         sources={"local": str(synthetic_root / "local")},
                                         augment_copies=0, num_shards=3, crop="roi")
    build_tfrecords.build(config)
    with pytest.raises(build_tfrecords.OutputExistsError):
        build_tfrecords.build(config)
    manifest = build_tfrecords.build(config.replace(overwrite=True, num_shards=1))
    names = sorted(n for n in os.listdir(tmp_path) if n.endswith(".tfrecord"))
    assert names == [f"{s}-00000-of-00001.tfrecord" for s in ("test", "train", "validation")]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]
    assert manifest["crop"] == "roi"
    excluded = collections.Counter(e["reason"] for e in manifest["sources"]["local"]["excluded"])
    assert excluded["no recognisable diagnosis"] >= 1


def test_evaluation_only_puts_every_image_in_test_whatever_the_csv_split(synthetic_root, tmp_path):
    """The reported defect: a CSV split column overrode --evaluation_only (4 train / 4
    validation / 0 test), and an external set was scored on a third of its images."""
    source = os.path.join(synthetic_root, "ddti")
    jpgs = sorted(n for n in os.listdir(source) if n.endswith(".jpg"))[:6]
    rows = ["path,label,split"]
    for index, (name, split) in enumerate(zip(jpgs, ["train", "validation", "test"] * 2)):
        shutil.copy(os.path.join(source, name), tmp_path / name)
        rows.append(f"{name},{index % 2},{split}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    manifest = build_from(str(tmp_path / "out"), {"csv": str(tmp_path / "list.csv")},
                          evaluation_only=True)
    assert manifest["splits"]["test"]["images"] == 6
    assert manifest["splits"]["train"]["images"] == manifest["splits"]["validation"]["images"] == 0
    assert manifest["source_splits_ignored"] == 4
    assert len(shards.load_split(str(tmp_path / "out"), "test")) == 6


def test_build_config_is_validated_once_and_saved_whole(synthetic_root, tmp_path):
    import dataclasses
    import re
    from thyroid.datasets.build_config import BuildConfig, ConfigError
    from thyroid.datasets.sources import ReaderOptions
    sources = {"local": str(synthetic_root / "local")}
    config = BuildConfig(output_dir=str(tmp_path / "out"), sources=sources, crop="none",
                         num_shards=1, evaluation_only=True)
    sources["ddti"] = "elsewhere"  # the config keeps its own copy
    assert config.sources == {"local": str(synthetic_root / "local")}
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 3
    for changes, message in (
            (dict(protocol="x"), "--protocol=x: must be one of patient, image"),
            (dict(num_shards=0), "--num_shards=0: must be in [1, 1000]"),
            (dict(crop="face"), "--crop=face: must be one of scan, roi, none"),
            (dict(evaluation_only=False, validation_fraction=0.5, test_fraction=0.5),
             "--test_fraction=0.5: --validation_fraction + --test_fraction must leave"),
            (dict(reader_options=ReaderOptions(patient_id_regex="(")), "--patient_id_regex=(:"),
            (dict(reader_options=ReaderOptions(diagnosis_table=str(tmp_path / "no.json"))),
             "--diagnosis_table="), ):
        with pytest.raises(ConfigError, match="^" + re.escape(message)):
            config.replace(**changes).validate()
    with pytest.raises(build_tfrecords.BuildError, match="^--local_dir .*nowhere: no such folder$"):
        config.replace(sources={"local": str(tmp_path / "nowhere")}).validate()
    with pytest.raises(build_tfrecords.BuildError, match="^give at least one of --ddti_dir"):
        config.replace(sources={}).validate()
    build_tfrecords.build(config)
    saved = shards.read_manifest(str(tmp_path / "out"))["build_config"]
    assert saved["evaluation_only"] and saved["test_fraction"] == 1.0
    assert saved["augment_copies"] == 0  # resolved: what the build did, not the default asked
    rebuilt = BuildConfig(**dict(saved, reader_options=ReaderOptions(**saved["reader_options"])))
    assert rebuilt == config.resolved()


def test_command_line_settings_are_checked_in_one_line(tmp_path, capsys):
    from thyroid import build_tfrecords as command
    assert command.main(["build", f"--output_dir={tmp_path / 'a'}"]) == 1
    assert command.main(["build", f"--csv={tmp_path}/x.csv", "--patient_id_regex=(",
                         f"--output_dir={tmp_path / 'b'}"]) == 2
    assert command.main(["build", f"--image_dir={tmp_path / 'none'}",
                         f"--output_dir={tmp_path / 'c'}"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("build_tfrecords: error: ")]
    assert errors == [
        "build_tfrecords: error: give at least one of --ddti_dir, --local_dir, --image_dir, --csv",
        "build_tfrecords: error: --patient_id_regex=(: missing ), unterminated subpattern at "
        "position 0",
        f"build_tfrecords: error: --image_dir {tmp_path / 'none'}: no such folder"]
    assert "Traceback" not in "\n".join(lines)
