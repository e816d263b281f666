"""Folder, CSV and local-report readers, evaluation-only builds and report size limits."""

import csv
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from thyroid.datasets import build as build_lib
from thyroid.datasets import csv_list, folders, images, shards, word_reports
from thyroid.datasets.synthetic import docx_bytes

SPLIT_WITH_SPACES = "Training Set 2021"


def build_from(output_dir, sources, **settings):
    return build_lib.build(build_lib.BuildConfig(output_dir=str(output_dir), sources=sources,
                                                 **settings))


def skipped_files(manifest):
    """{path: reason} of the files a manifest lists as skipped."""
    return {entry["path"]: reason for reason, group in manifest["skipped"].items()
            for entry in group["files"]}


def _jpeg(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.RandomState(seed).randint(30, 220, (48, 64, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


@pytest.fixture
def folder_root(tmp_path):
    """<root>/<split with spaces>/<Benign|Malignant>/p<k>_<i>.jpg, one cross-class duplicate."""
    root = tmp_path / "images"
    seeds = iter(range(1000, 2000))  # distinct: the only byte-identical pair is made below
    for split in (SPLIT_WITH_SPACES, "Test"):
        for label, name in ((0, "Benign"), (1, "Malignant")):
            for patient in range(4):
                for index in range(2):
                    _jpeg(root / split / name / f"p{label}{patient}{split[:2]}_{index}.jpg",
                          next(seeds))
    duplicate = root / "Test" / "Malignant" / "p10Te_0.jpg"
    (root / "Test" / "Benign" / "copy_of_p10.jpg").write_bytes(duplicate.read_bytes())
    (root / "notes.txt").write_text("ignored documentation")
    (root / "Test" / "unsorted").mkdir()
    _jpeg(root / "Test" / "unsorted" / "x_0.jpg", 1)
    return root


def test_folder_labels_come_from_class_folders(folder_root, tmp_path):
    result = folders.read(str(folder_root))
    for example in result.examples:
        folder = os.path.basename(os.path.dirname(example.image_path))
        expected = {"Benign": 0, "Malignant": 1}.get(folder)
        assert example.label == expected, example.image_path
    assert result.counts()["labelled_images"] == 2 * 2 * 4 * 2 + 1
    assert {"case_id": os.path.join("Test", "unsorted", "x_0.jpg"),
            "reason": "no class folder"} in result.excluded
    assert result.notes == [folders.NO_PATIENT_NOTE]  # each file is its own patient
    manifest = build_from(str(tmp_path / "out"), {"folders": str(folder_root)}, augment_copies=0,
                          num_shards=1, crop="none")
    assert manifest["sources"]["folders"]["notes"] == [folders.NO_PATIENT_NOTE]
    groups = [g for g in manifest["duplicates"] if any("copy_of_p10" in p for p in g["paths"])]
    assert len(groups) == 1 and len(groups[0]["paths"]) == 2 and groups[0]["labels"] == [0, 1]
    assert groups[0]["splits"] == []  # a copy in each class: both left out
    written = sum(s["images"] for s in manifest["splits"].values())
    assert written == 2 * 2 * 4 * 2 - 1


def test_patient_regex_and_class_map(folder_root, tmp_path):
    (folder_root / "Test" / "Suspicious").mkdir()
    _jpeg(folder_root / "Test" / "Suspicious" / "p90Te_0.jpg", 2)
    class_map = folders.parse_class_map("suspicious:1")
    result = folders.read(str(folder_root), class_map=class_map,
                          patient_id_regex=r"/(?P<patient>p\d+)\w\w_\d+\.jpg$")
    patients = {e.patient_id for e in result.labelled}
    assert "folders:p90" in patients and len(patients) == 2 * 4 + 1
    assert not result.notes
    skipped = {os.path.basename(s["path"]): s["reason"] for s in result.skipped}
    assert skipped["copy_of_p10.jpg"] == "--patient_id_regex does not match its path"
    with pytest.raises(folders.ReaderError, match="--class_map entry 'benign:2'"):
        folders.parse_class_map("benign:2")
    manifest = build_from(str(tmp_path / "out"), {"folders": str(folder_root)}, crop="none",
                          augment_copies=0, num_shards=1,
                          reader_options=build_lib.ReaderOptions(
                                   class_map=class_map, patient_id_regex=r"/(p\d+)\w\w_"))
    assert manifest["leakage"]["patients_in_multiple_splits"] == 0


def _write_csv(path, rows, header=("path", "label", "patient_id", "split", "tirads")):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def test_csv_split_column_is_honoured(tmp_path):
    rows = []
    for i in range(24):
        split = ("train", "Validation", "test", "")[i // 2 % 4]  # one split per patient
        _jpeg(tmp_path / "img" / f"{i}.jpg", i)
        rows.append([f"img/{i}.jpg", ("benign", "malignant", "0", "1")[i % 4 // 2 + i % 2],
                     f"pt{i // 2}", split, "4a" if i % 3 == 0 else ""])
    rows.append(["img/missing.jpg", "0", "x", "", ""])
    rows.append(["img/0.jpg", "maybe", "x", "", ""])
    rows.append(["img/1.jpg", "1", "y", "holdout", ""])
    csv_path = _write_csv(tmp_path / "list.csv", rows)
    result = csv_list.read(csv_path)
    reasons = sorted(s["reason"].split(" ")[0] for s in result.skipped)
    assert reasons == ["no", "unknown", "unknown"] and len(result.examples) == 24
    manifest = build_from(str(tmp_path / "out"), {"csv": csv_path}, augment_copies=1, num_shards=1,
                          crop="none")
    by_split = {split: shards.load_split(str(tmp_path / "out"), split) for split in shards.SPLITS}
    fixed = {f"csv:pt{i // 2}": ("train", "validation", "test")[i // 2 % 4]
             for i in range(24) if i // 2 % 4 != 3}
    seen = set()
    for split, data in by_split.items():
        for patient in set(data.patient_ids):
            if patient in fixed:
                assert fixed[patient] == split, patient
                seen.add(patient)
    assert seen == set(fixed)
    assert manifest["leakage"]["patients_in_multiple_splits"] == 0
    assert manifest["sources"]["csv"]["labelled_images"] == 24
    assert sum(s["original"]["benign"] + s["original"]["malignant"]
               for s in manifest["splits"].values()) == 24
    assert by_split["train"].augmented.any() and not by_split["test"].augmented.any()


def test_csv_without_required_columns(tmp_path):
    path = _write_csv(tmp_path / "bad.csv", [["a.jpg"]], header=("file",))
    with pytest.raises(build_lib.BuildError, match="missing column.*path, label"):
        build_from(str(tmp_path / "out"), {"csv": path})


@pytest.mark.parametrize("how", ["flag", "fractions"])
def test_evaluation_only_build(folder_root, tmp_path, how):
    kwargs = dict(evaluation_only=True) if how == "flag" else dict(
        test_fraction=1.0, validation_fraction=0.0, augment_copies=0)
    manifest = build_from(tmp_path / how, {"folders": str(folder_root)}, crop="none",
                          num_shards=1, **kwargs)
    assert manifest["evaluation_only"] is True
    assert manifest["splits"]["train"]["images"] == manifest["splits"]["validation"]["images"] == 0
    test = shards.load_split(str(tmp_path / how), "test")
    assert len(test) == 2 * 2 * 4 * 2 - 1 and not test.augmented.any()


def _patient(root, name, paragraphs=(), report=None):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "report.docx").write_bytes(report if report is not None
                                         else docx_bytes(list(paragraphs), ()))
    _jpeg(folder / "a.jpg", sum(map(ord, name)))  # one image per patient, none shared
    return folder


def test_local_manifest_records_labels_words_and_reasons(tmp_path):
    _patient(tmp_path / "local", "p1", ["Diagnosis: negative for malignancy"])
    _patient(tmp_path / "local", "p2", ["Diagnosis: suspicious for carcinoma"])
    _patient(tmp_path / "local", "p3", ["Diagnosis: papillary carcinoma"])
    manifest = build_from(str(tmp_path / "out"), {"local": str(tmp_path / "local")}, crop="none",
                          augment_copies=0, num_shards=1, validation_fraction=0.0,
                          test_fraction=0.0)
    source = manifest["sources"]["local"]
    assert {"case_id": "p1", "label": 0, "words": "negative for malignancy"} in source["labels"]
    assert {"case_id": "p3", "label": 1, "words": "papillary carcinoma"} in source["labels"]
    assert {"case_id": "p2", "reason": "uncertain",
            "words": "suspicious for carcinoma"} in source["excluded"]
    suspicious = build_from(str(tmp_path / "out2"), {"local": str(tmp_path / "local")}, crop="none",
                            num_shards=1, augment_copies=0, validation_fraction=0.0,
                            test_fraction=0.0,
                            reader_options=build_lib.ReaderOptions(suspicious_as_malignant=True))
    assert suspicious["splits"]["train"]["original"]["malignant"] == 2


def _bomb_docx(path, member_bytes, members=1):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(members):
            archive.writestr(f"word/part{index}.xml", b"\0" * member_bytes)


def test_report_size_limits_refuse_before_parsing(tmp_path, monkeypatch):
    root = tmp_path / "local"
    bomb = _patient(root, "bomb", report=b"") / "report.docx"
    _bomb_docx(bomb, word_reports.MAX_REPORT_UNCOMPRESSED + 1)  # about 100 kB on disk
    assert bomb.stat().st_size < 1_000_000
    many = _patient(root, "many", report=b"") / "report.docx"
    _bomb_docx(many, 1, members=word_reports.MAX_REPORT_MEMBERS + 1)
    _patient(root, "good", ["Diagnosis: benign nodule"])
    result = word_reports.read(str(root))
    excluded = {e["case_id"]: e for e in result.excluded}
    assert {excluded[case]["reason"] for case in ("bomb", "many")} == {"unreadable report"}
    assert excluded["bomb"]["detail"].startswith("report too large uncompressed: ")
    assert excluded["many"]["detail"] == (f"report has too many zip members: "
                                          f"{word_reports.MAX_REPORT_MEMBERS + 1} (limit "
                                          f"{word_reports.MAX_REPORT_MEMBERS})")
    assert [e.case_id for e in result] == ["good"]
    monkeypatch.setattr(word_reports, "MAX_REPORT_BYTES", 30_000)  # the good report is about 36 kB
    excluded = {e["case_id"]: e for e in word_reports.read(str(root)).excluded}
    assert excluded["good"]["detail"].startswith("report too large: ")


def test_command_line_folders_evaluation_only(folder_root, tmp_path):
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, "-m", "thyroid.build_tfrecords", f"--image_dir={folder_root}",
               f"--output_dir={tmp_path / 'external'}", "--evaluation_only", "--crop=none",
               "--class_map=unsorted:0", "--num_shards=1", "--max_pixels=5000"]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = shards.read_manifest(str(tmp_path / "external"))
    # unsorted/ is now benign; the copy in both classes is left out
    assert manifest["splits"]["test"]["images"] == 2 * 2 * 4 * 2
    assert manifest["max_pixels"] == 5000 and manifest["evaluation_only"]
    bad = subprocess.run(command[:-1] + ["--max_pixels=1000", "--overwrite"], cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "no usable labelled image" in bad.stderr
    assert shards.read_manifest(str(tmp_path / "external"))["max_pixels"] == 5000  # kept
    wrong = subprocess.run(command[:5] + ["--class_map=benign:7"], cwd=root,
                           capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2  # a usage error: the flag value is wrong
    assert "--class_map entry 'benign:7': expected name:0 or name:1" in wrong.stderr


def test_dicom_in_class_folders_uses_patient_id(tmp_path):
    pytest.importorskip("pydicom")
    from test_images import write_dicom
    root = tmp_path / "scanner"
    for index, (label, patient) in enumerate((("benign", "A1"), ("benign", "A1"),
                                              ("malignant", "B2"))):
        (root / label).mkdir(parents=True, exist_ok=True)
        pixels = np.full((32, 40), 40 * (index + 1), np.uint8)
        write_dicom(root / label / f"{index}.dcm", pixels, patient_id=patient)
    (root / "malignant" / "broken.dcm").write_bytes(b"\0" * 10)
    result = folders.read(str(root))
    assert sorted((e.patient_id, e.label) for e in result.labelled) == [
        ("folders:A1", 0), ("folders:A1", 0), ("folders:B2", 1)]
    assert [os.path.basename(s["path"]) for s in result.skipped] == ["broken.dcm"]
    manifest = build_from(str(tmp_path / "out"), {"folders": str(root)}, crop="none",
                          evaluation_only=True, num_shards=1)
    test = shards.load_split(str(tmp_path / "out"), "test")
    assert sorted(set(test.patient_ids)) == ["folders:A1", "folders:B2"]
    assert manifest["splits"]["test"]["original"] == {"benign": 2, "malignant": 1}


def test_nested_class_folders_that_disagree_exclude_the_image(tmp_path):
    root = tmp_path / "images"
    _jpeg(root / "benign" / "1" / "scan.jpg", 1)
    _jpeg(root / "malignant" / "0" / "scan.jpg", 2)
    _jpeg(root / "Malignant" / "1" / "agrees.jpg", 3)  # nested folders of one class keep it
    result = folders.read(str(root))
    labelled = [(os.path.relpath(e.image_path, root), e.label) for e in result.labelled]
    assert labelled == [(os.path.join("Malignant", "1", "agrees.jpg"), 1)]
    excluded = {e["case_id"]: e for e in result.excluded}
    for relative, nesting in ((os.path.join("benign", "1", "scan.jpg"), "benign/1"),
                              (os.path.join("malignant", "0", "scan.jpg"), "malignant/0")):
        assert excluded[relative]["reason"] == "class folders disagree"
        assert excluded[relative]["folders"] == nesting


@pytest.mark.parametrize("header,repeated", [(("path", "label", "label"), "label"),
                                             (("path", "Label", "label"), "label"),
                                             (("Path", "label", "path "), "path")])
def test_csv_with_a_repeated_column_is_refused(tmp_path, header, repeated):
    _jpeg(tmp_path / "a.jpg", 0)
    path = _write_csv(tmp_path / "list.csv", [["a.jpg", "0", "1"]], header=header)
    message = rf"^--csv {path}: column '{repeated}' appears 2 times"
    with pytest.raises(build_lib.SourceError, match=message):
        build_lib.read_sources({"csv": path})
    with pytest.raises(build_lib.BuildError, match=message):
        build_from(str(tmp_path / "out"), {"csv": path})


def test_csv_rows_of_one_image_that_disagree_exclude_it_and_repeats_count_once(tmp_path):
    for name in ("a", "b", "c", "d"):
        _jpeg(tmp_path / "img" / f"{name}.jpg", ord(name))
    csv_path = _write_csv(tmp_path / "list.csv", [
        ["img/a.jpg", "0", "p1", "", ""],
        ["img/b.jpg", "1", "p2", "", ""],
        ["./img/a.jpg", "malignant", "p1", "", ""],  # the same image, the other label
        ["img/b.jpg", "1", "p2", "", ""],            # a repeated row
        ["img/c.jpg", "0", "p3", "", ""],
        ["img/d.jpg", "0", "p4", "", ""],
        ["img/d.jpg", "0", "p5", "", ""],            # the same image, two patients
    ])
    result = csv_list.read(csv_path)
    assert sorted(os.path.basename(e.image_path) for e in result.labelled) == ["b.jpg", "c.jpg"]
    excluded = {e["case_id"]: e for e in result.excluded}
    assert excluded[os.path.join("img", "a.jpg")]["reason"] == "contradictory labels"
    assert excluded[os.path.join("img", "a.jpg")]["lines"] == "2, 4"
    assert excluded[os.path.join("img", "d.jpg")]["reason"] == "contradictory rows (patient_id)"
    assert result.skipped == [{"path": f"{csv_path}:5", "reason": "repeated row",
                               "detail": "as line 3"}]
    manifest = build_from(str(tmp_path / "out"), {"csv": csv_path}, evaluation_only=True,
                          crop="none", num_shards=1)
    assert manifest["splits"]["test"]["images"] == 2


def test_byte_identical_copies_with_two_labels_are_excluded(folder_root, tmp_path):
    copy = folder_root / "Test" / "Benign" / "copy_of_p10.jpg"
    original = folder_root / "Test" / "Malignant" / "p10Te_0.jpg"
    manifest = build_from(str(tmp_path / "out"), {"folders": str(folder_root)}, crop="none",
                          evaluation_only=True, num_shards=1)
    assert manifest["splits"]["test"]["images"] == 2 * 2 * 4 * 2 - 1
    skipped = skipped_files(manifest)
    assert skipped[str(copy)] == skipped[str(original)] == \
        "byte-identical copies labelled both benign and malignant"
    keys = shards.load_split(str(tmp_path / "out"), "test").keys
    assert not {f"folders:Test/Benign/copy_of_p10.jpg", "folders:Test/Malignant/p10Te_0.jpg"} \
        & set(keys)


def test_image_keys_are_unique_per_image(tmp_path):
    _jpeg(tmp_path / "a" / "scan.jpg", 1)
    _jpeg(tmp_path / "b" / "scan.jpg", 2)
    csv_path = _write_csv(tmp_path / "list.csv", [["a/scan.jpg", "0", "p1", "", ""],
                                                  ["b/scan.jpg", "1", "p1", "", ""]])
    build_from(str(tmp_path / "out"), {"csv": csv_path}, evaluation_only=True, crop="none",
               num_shards=1)
    keys = shards.load_split(str(tmp_path / "out"), "test").keys
    assert sorted(keys) == ["csv:a/scan.jpg", "csv:b/scan.jpg"]


def _read_unblocking_fifos(read, fifos, seconds=60):
    """``read()`` in a thread; a reader stuck opening a FIFO is released (by opening its write
    end) and the test fails instead of hanging."""
    import threading
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(result=read()), daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass  # nobody has this one open
        thread.join(seconds)
        pytest.fail(f"reading blocked on a FIFO among {[os.path.basename(f) for f in fifos]}")
    return outcome["result"]


def test_only_regular_files_are_opened(tmp_path):
    pytest.importorskip("pydicom")  # a FIFO named .dcm would be opened for its PatientID
    root = tmp_path / "images"
    good = _jpeg(root / "benign" / "good.jpg", 1)
    (root / "malignant").mkdir()
    fifos = [str(root / "benign" / "p.jpg"), str(root / "malignant" / "q.dcm")]
    for fifo in fifos:
        os.mkfifo(fifo)
    os.symlink("/dev/zero", root / "malignant" / "z.jpg")
    os.symlink(good, root / "benign" / "link.jpg")  # a link to a regular file is read
    os.symlink(tmp_path / "gone.jpg", root / "benign" / "broken.jpg")
    result = _read_unblocking_fifos(lambda: folders.read(str(root)), fifos)
    reasons = {os.path.basename(s["path"]): s["reason"] for s in result.skipped}
    assert reasons == {"p.jpg": "not a regular file", "q.dcm": "not a regular file",
                       "z.jpg": "not a regular file", "broken.jpg": "no such file"}
    assert sorted(os.path.basename(e.image_path) for e in result) == ["good.jpg", "link.jpg"]
    manifest = _read_unblocking_fifos(lambda: build_from(
        str(tmp_path / "out"), {"folders": str(root)}, evaluation_only=True, crop="none",
        num_shards=1), fifos)
    assert manifest["splits"]["test"]["images"] == 2


def test_a_file_above_the_size_limit_is_refused_before_reading(tmp_path):
    root = tmp_path / "images"
    _jpeg(root / "benign" / "good.jpg", 1)
    big = _jpeg(root / "malignant" / "big.jpg", 2)
    limit = images.max_file_bytes(images.DEFAULT_MAX_PIXELS)
    with open(big, "r+b") as f:
        f.truncate(limit + 1)  # sparse: a valid JPEG followed by zeros, never written to disk
    manifest = build_from(str(tmp_path / "out"), {"folders": str(root)}, evaluation_only=True,
                          crop="none", num_shards=1)
    assert manifest["splits"]["test"]["images"] == 1
    reasons = {os.path.basename(path): reason for path, reason in skipped_files(manifest).items()}
    assert reasons == {"big.jpg": "file too large"}


@pytest.mark.parametrize("text,line,reason", [
    ("path,label\na.jpg,0\n" + "b" * 200_000 + ".jpg,1\n", 3, "field larger than field limit"),
    ("path," + "c" * 200_000 + "\na.jpg,0\n", 1, "field larger than field limit"),
    (b"path,label\na.jpg,0\n\xff\xfe.jpg,1\n", 3, "not UTF-8 text"),
])
def test_a_csv_the_csv_module_cannot_parse_is_refused_in_one_line(tmp_path, text, line, reason):
    _jpeg(tmp_path / "a.jpg", 0)
    path = tmp_path / "list.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(build_lib.SourceError, match=rf"^--csv {path} line {line}: {reason}"):
        build_lib.read_sources({"csv": str(path)})


def test_a_dicom_that_cannot_be_decoded_is_skipped_and_the_build_goes_on(tmp_path):
    pytest.importorskip("pydicom")
    from test_images import write_dicom
    root = tmp_path / "images"
    _jpeg(root / "benign" / "good.jpg", 1)
    (root / "malignant").mkdir()
    write_dicom(root / "malignant" / "m3.dcm", np.full((32, 40, 3), 100, np.uint8), "RGB",
                PhotometricInterpretation="MONOCHROME2")  # 3 samples declared greyscale
    manifest = build_from(str(tmp_path / "out"), {"folders": str(root)}, evaluation_only=True,
                          crop="none", num_shards=1)
    assert manifest["splits"]["test"]["images"] == 1
    assert [(os.path.basename(path), reason) for path, reason in skipped_files(manifest).items()] \
        == [("m3.dcm", "unsupported DICOM")]


def test_a_file_name_that_is_not_utf8_is_skipped(tmp_path):
    root = tmp_path / "images"
    _jpeg(root / "benign" / "good.jpg", 1)
    _jpeg(root / "malignant" / "good.jpg", 2)
    bad_name = os.fsdecode(b"\xff\xfe.jpg")
    _jpeg(root / "benign" / bad_name, 3)
    os.mkdir(root / os.fsdecode(b"malignant\xff"))
    _jpeg(root / os.fsdecode(b"malignant\xff") / "malignant" / "x.jpg", 3)
    local_root = tmp_path / "local"
    _patient(local_root, os.fsdecode(b"p\xfe"), ["Diagnosis: papillary carcinoma"])
    _patient(local_root, "p2", ["Diagnosis: benign nodule"])
    manifest = build_from(str(tmp_path / "out"), {"folders": str(root), "local": str(local_root)},
                          evaluation_only=True, crop="none", num_shards=1)
    assert manifest["splits"]["test"]["images"] == 3
    assert skipped_files(manifest) == {
        os.path.join(str(root), "benign", "\\xff\\xfe.jpg"): "file name is not UTF-8",
        os.path.join(str(root), "malignant\\xff", "malignant", "x.jpg"): "file name is not UTF-8",
        os.path.join(str(local_root), "p\\xfe"): "file name is not UTF-8"}


def test_dicom_window_fallbacks_are_counted_in_the_manifest(tmp_path):
    pytest.importorskip("pydicom")
    from test_images import write_dicom
    root = tmp_path / "images"
    (root / "benign").mkdir(parents=True)
    gray = np.linspace(0, 4095, 32 * 40).reshape(32, 40).astype(np.uint16)
    path = write_dicom(root / "benign" / "w.dcm", gray, bits=12, WindowCenter=1000, WindowWidth=0)
    write_dicom(root / "benign" / "ok.dcm", gray, bits=12, WindowCenter=1000, WindowWidth=400)
    manifest = build_from(str(tmp_path / "out"), {"folders": str(root)}, evaluation_only=True,
                          crop="none", num_shards=1)
    assert manifest["splits"]["test"]["images"] == 2
    assert manifest["decode_fallbacks"] == {
        "DICOM window unusable (width not a number >= 1): stored value range used":
            {"count": 1, "files": [{"path": path}]}}


NOBODY_SCRIPT = """
import json, os, sys
import docx, encodings.cp437  # all imports before dropping privileges: the interpreter's own
from thyroid.datasets import folders, sources, word_reports  # files may be out of reach after
images_root, local_root, locked, uid, gid = sys.argv[1:6]
if int(uid) >= 0:
    os.setgroups([])
    os.setgid(int(gid))
    os.setuid(int(uid))
result = {"folders": folders.read(images_root).skipped,
          "labelled": sorted(e.image_path for e in folders.read(images_root)),
          "local": word_reports.read(local_root).skipped,
          "local_excluded": word_reports.read(local_root).excluded}
try:
    sources.read_sources({"ddti": locked})
except sources.SourceError as error:
    result["source_error"] = str(error)
print(json.dumps(result))
"""


def _run_as_nobody(args):
    """Runs NOBODY_SCRIPT as an unprivileged user: permissions mean nothing to root, and CI runs
    as root. The script drops to ``nobody`` itself once its imports are done (the interpreter
    may live in a folder only root can enter); without such a user the test is skipped."""
    import json
    import pwd
    import subprocess
    import sys
    ids = ["-1", "-1"]
    if os.getuid() == 0:
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("running as root and there is no 'nobody' user to drop to")
        ids = [str(nobody.pw_uid), str(nobody.pw_gid)]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", NOBODY_SCRIPT, *args, *ids], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_unreadable_folders_are_counted_with_the_reason():
    import shutil
    import tempfile
    base = tempfile.mkdtemp(prefix="thyroid-permissions-")  # pytest's tmp_path is root-only
    try:
        os.chmod(base, 0o755)
        root = os.path.join(base, "images")
        good = _jpeg(Path(root) / "benign" / "a.jpg", 1)
        _jpeg(Path(root) / "benign" / "locked" / "b.jpg", 2)
        _patient(Path(base) / "local", "p1", ["Diagnosis: benign nodule"])
        _patient(Path(base) / "local", "p2", ["Diagnosis: papillary carcinoma"])
        locked_ddti = os.path.join(base, "ddti")
        os.mkdir(locked_ddti)
        for folder, _, names in os.walk(base):
            os.chmod(folder, 0o755)
            for name in names:
                os.chmod(os.path.join(folder, name), 0o644)
        for folder in (os.path.join(root, "benign", "locked"), os.path.join(base, "local", "p2"),
                       locked_ddti):
            os.chmod(folder, 0)
        found = _run_as_nobody([root, os.path.join(base, "local"), locked_ddti])
    finally:
        for folder, _, _ in os.walk(base):
            os.chmod(folder, 0o755)
        shutil.rmtree(base)
    unreadable = {"reason": "unreadable folder", "detail": "Permission denied"}
    assert found["folders"] == [dict(unreadable, path=os.path.join(root, "benign", "locked"))]
    assert found["labelled"] == [str(good)]
    assert found["local"] == [dict(unreadable, path=os.path.join(base, "local", "p2"))]
    assert {"case_id": "p2", "reason": "unreadable folder"} in found["local_excluded"]
    assert found["source_error"] == f"--ddti_dir {locked_ddti}: cannot read (Permission denied)"


def test_thousands_of_missing_files_give_one_log_line_and_a_small_manifest(tmp_path, caplog):
    _jpeg(tmp_path / "img" / "a.jpg", 1)
    _jpeg(tmp_path / "img" / "b.jpg", 2)
    missing = 5000
    csv_path = _write_csv(tmp_path / "list.csv", [["img/a.jpg", "0", "p1", "", ""],
                                                  ["img/b.jpg", "1", "p2", "", ""]] +
                          [[f"img/gone_{i}.jpg", "1", f"q{i}", "", ""] for i in range(missing)])
    caplog.set_level("INFO")
    build_from(str(tmp_path / "out"), {"csv": csv_path}, evaluation_only=True, crop="none",
               num_shards=1)
    lines = [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert len(lines) <= 3, lines[:5]  # the summary line (and the no-patient note, if any)
    summary = [line for line in lines if "no such file" in line]
    assert len(summary) == 1 and f"{missing} " in summary[0], lines
    manifest_path = tmp_path / "out" / shards.MANIFEST_NAME
    assert manifest_path.stat().st_size < 100_000
    skipped = shards.read_manifest(str(tmp_path / "out"))["skipped"]
    assert list(skipped) == ["no such file"] and skipped["no such file"]["count"] == missing
    listed = skipped["no such file"]["files"]
    assert len(listed) == 200 and listed[0] == {
        "path": f"{csv_path}:4", "detail": str(tmp_path / "img" / "gone_0.jpg")}


def test_a_csv_row_whose_path_holds_a_nul_byte_is_skipped_naming_its_line(tmp_path):
    for i in range(4):
        _jpeg(tmp_path / f"{i}.jpg", i)
    path = tmp_path / "list.csv"
    path.write_text("path,label\n0.jpg,0\n1.jpg,1\nbad\0name.jpg,1\n2.jpg,0\n3.jpg,1\n")
    manifest = build_from(tmp_path / "out", {"csv": str(path)}, evaluation_only=True,
                          crop="none", num_shards=1)
    assert manifest["splits"]["test"]["images"] == 4
    assert manifest["skipped"]["invalid path"]["count"] == 1
    [entry] = manifest["skipped"]["invalid path"]["files"]
    assert entry["path"] == f"{path}:4"
    assert entry["detail"] == f"{tmp_path}/bad\\x00name.jpg (holds a NUL byte)"
