import json
import os

import numpy as np
from PIL import Image

from thyroid.datasets import ddti

POLYGON = json.dumps([{"points": [{"x": 10, "y": 10}, {"x": 40, "y": 12}, {"x": 30, "y": 40}],
                       "annotation": {}, "regionType": "freehand"}])


def _case(number, tirads="4a", marks=((1, POLYGON),), margins="well defined",
          calcifications="non", prefix=""):
    body = "".join(f"<mark><image>{k}</image><svg>{svg}</svg></mark>" for k, svg in marks)
    return (f"{prefix}<case><number>{number}</number><age>50</age><sex>F</sex>"
            f"<composition>solid</composition><echogenicity>hypoechogenicity</echogenicity>"
            f"<margins>{margins}</margins><calcifications>{calcifications}</calcifications>"
            f"<tirads>{tirads}</tirads><reportbacaf></reportbacaf><reporteco></reporteco>"
            f"{body}</case>")


def _write(folder, number, xml, image_indices=(1,)):
    (folder / f"{number}.xml").write_text(xml)
    for k in image_indices:
        Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(folder / f"{number}_{k}.jpg")


def test_labels_from_tirads_case_insensitive():
    assert [ddti.tirads_label(t) for t in ("2", "3", "4a", "4B", "4c", "5", " 4A ")] == \
        [0, 0, 1, 1, 1, 1, 1]
    assert ddti.tirads_label("") is None and ddti.tirads_label("6") is None


def test_reader_counts_quirks(tmp_path):
    _write(tmp_path, 1, _case(1, tirads="2"))
    _write(tmp_path, 2, _case(2, tirads="4B", marks=((1, POLYGON), (2, ""))), (1, 2))
    _write(tmp_path, 3, _case(3, tirads="", marks=((1, POLYGON[:25]),)))  # truncated svg
    _write(tmp_path, 4, _case(4, tirads="5", marks=((1, "[]"),)))
    result = ddti.read(str(tmp_path))
    counts = result.counts()
    assert counts["cases"] == 4 and counts["labelled_cases"] == 3
    assert counts["images"] == 5 and counts["labelled_images"] == 4
    assert result.excluded == [{"case_id": "3", "reason": "empty TIRADS"}]
    assert sorted(result.marks_without_polygon) == ["2_2", "3_1", "4_1"]
    labelled = list(result)
    assert [e.label for e in labelled] == [0, 1, 1, 1]
    first = labelled[0]
    assert first.patient_id == "ddti:1" and first.source == "ddti"
    assert first.polygons == [[(10.0, 10.0), (40.0, 12.0), (30.0, 40.0)]]
    assert labelled[1].tirads == "4b"


def test_vocabulary_is_normalised(tmp_path):
    _write(tmp_path, 1, _case(1, margins="ill- defined", calcifications="microcalcification"))
    _write(tmp_path, 2, _case(2, margins="Ill defined", calcifications="microcalcifications"))
    fields = [e.fields for e in ddti.read(str(tmp_path)).examples]
    assert fields[0]["margins"] == fields[1]["margins"] == "ill defined"
    assert fields[0]["calcifications"] == fields[1]["calcifications"] == "microcalcifications"
    assert fields[0]["sex"] == "female"


def test_external_entity_is_not_expanded(tmp_path):
    doctype = '<!DOCTYPE case [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    xml = _case(1, tirads="4a", prefix=doctype).replace("<reporteco></reporteco>",
                                                         "<reporteco>&e;</reporteco>")
    xml = xml.replace("<age>50</age>", "<age>&e;</age>")
    _write(tmp_path, 1, xml)
    result = ddti.read(str(tmp_path))
    assert len(result.examples) == 1
    text = json.dumps(result.examples[0].fields)
    assert "root:" not in text and "/bin/" not in text


def test_unreadable_xml_and_stray_files_are_listed(tmp_path):
    _write(tmp_path, 1, _case(1))
    (tmp_path / "2.xml").write_text("<case><number>2</number><tirads>4a")  # truncated XML
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "2_1.jpg")
    (tmp_path / "notes.xyz").write_text("?")
    result = ddti.read(str(tmp_path))
    reasons = {os.path.basename(s["path"]): s["reason"] for s in result.skipped}
    assert reasons["2.xml"].startswith("unreadable XML")
    assert reasons["notes.xyz"] == "unknown file type"
    assert reasons["2_1.jpg"] == "image without a case mark"
    assert result.counts()["cases"] == 1


def test_missing_image_is_skipped(tmp_path):
    (tmp_path / "5.xml").write_text(_case(5))
    result = ddti.read(str(tmp_path))
    assert result.examples == [] and result.skipped[0]["reason"] == "image file missing"


def test_names_that_are_not_utf8_or_not_regular_files_are_skipped(tmp_path):
    _write(tmp_path, 1, _case(1))
    _write(tmp_path, 2, _case(2))
    (tmp_path / os.fsdecode(b"\xff.xml")).write_text(_case(3))
    (tmp_path / "2_1.jpg").unlink()
    os.mkfifo(tmp_path / "2_1.jpg")  # would block the build's hashing forever
    result = ddti.read(str(tmp_path))
    assert {s["path"]: s["reason"] for s in result.skipped} == {
        os.path.join(str(tmp_path), "\\xff.xml"): "file name is not UTF-8",
        str(tmp_path / "2_1.jpg"): "not a regular file"}
    assert [e.case_id for e in result] == ["1"]
