"""Tests for avkd_jax.datasets.flickr_layout: every fixture is generated in tmp_path."""

import logging
import pickle
import xml.etree.ElementTree as ET

import pytest

from avkd_jax.datasets import flickr_layout as fl
from avkd_jax.errors import MediaError


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------ id lists


def test_read_id_list_txt_strips_extensions_keeps_order_and_dedupes(tmp_path, caplog):
    p = _write(
        tmp_path / "list.txt",
        b"2432219254.png\n2542659118.png\n\n  2766580444.PNG \r\n"
        b"2542659118.png\nclip.v2\nabc.wav\n",
    )
    with caplog.at_level(logging.WARNING):
        ids = fl.read_id_list(p)
    # ".v2" is not a media suffix: ids with dots survive.
    assert ids == ["2432219254", "2542659118", "2766580444", "clip.v2", "abc"]
    assert any("1 duplicate" in r.getMessage() and str(p) in r.getMessage() for r in caplog.records)


def test_read_id_list_csv_crlf_and_keyframes(tmp_path):
    p = _write(
        tmp_path / "test.csv",
        b"10000130166,202\r\n10000793634,0\r\n\r\n10000855326,309\r\n10000130166,5\r\n10001,\r\n",
    )
    assert fl.read_id_list(p) == ["10000130166", "10000793634", "10000855326", "10001"]
    # First occurrence wins; an empty second column means "no keyframe".
    assert fl.read_keyframes(p) == {"10000130166": 202, "10000793634": 0, "10000855326": 309}


def test_read_id_list_and_keyframe_errors(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        fl.read_id_list(tmp_path / "nope.txt")
    with pytest.raises(MediaError, match="empty"):
        fl.read_id_list(_write(tmp_path / "empty.txt", b""))
    with pytest.raises(MediaError, match="no ids"):
        fl.read_id_list(_write(tmp_path / "blank.txt", b"\n \r\n\n"))
    bad = _write(tmp_path / "bad.csv", b"1,2\r\n3,x7\r\n")
    with pytest.raises(MediaError, match=r"bad\.csv.*line 2.*'x7'"):
        fl.read_keyframes(bad)


def test_media_error_carries_path_and_reason_and_pickles(tmp_path):
    e = MediaError(tmp_path / "a.wav", "audio has 0 samples")
    assert isinstance(e, ValueError)
    assert e.path == str(tmp_path / "a.wav") and e.reason == "audio has 0 samples"
    assert str(e) == f"{tmp_path / 'a.wav'}: audio has 0 samples"
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.path, e2.reason, str(e2)) == (e.path, e.reason, str(e))


# --------------------------------------------------------------------------- annotations


def test_parse_annotation_by_tag_name(tmp_path):
    # Tags out of order and an extra child: only reading by name gets this right.
    p = _write(
        tmp_path / "a.xml",
        b"""<?xml version="1.0"?>
<annotation><filename>x.jpg</filename>
  <object><bbox><type>a</type><ymin>20</ymin><xmin>10</xmin><ymax>40</ymax>
    <xmax>30</xmax><note>n</note></bbox></object>
  <object><name>dog</name><bbox><type>b</type><xmin> 1 </xmin><ymin>2</ymin>
    <xmax>255</xmax><ymax>256</ymax></bbox></object>
</annotation>""",
    )
    assert fl.parse_flickr_annotation(p) == [[10, 20, 30, 40], [1, 2, 255, 256]]


def test_parse_annotation_by_position(tmp_path):
    # Unnamed coordinates: skip the first child, take the next four (reference reader).
    p = _write(
        tmp_path / "b.xml",
        b"""<annotation>
  <object><bbox><kind>x</kind><c>5</c><c>6</c><c>70</c><c>80</c></bbox></object>
  <object><bbox><kind>y</kind><c>0</c><c>1</c><c>2</c><c>3</c><c>99</c></bbox></object>
</annotation>""",
    )
    assert fl.parse_flickr_annotation(p) == [[5, 6, 70, 80], [0, 1, 2, 3]]


def test_annotation_round_trip_and_format(tmp_path):
    boxes = [[12, 30, 140, 200], [10, 28, 143, 199], [0, 33, 138, 256]]
    p = tmp_path / "Annotations" / "9000001.xml"
    p.parent.mkdir()
    fl.write_flickr_annotation(p, boxes, "9000001")
    assert fl.parse_flickr_annotation(p) == boxes
    # The structure real annotations have, checked with ElementTree directly.
    root = ET.parse(p).getroot()
    assert root.tag == "annotation" and root.find("filename").text == "9000001.jpg"
    objs = root.findall("object")
    assert len(objs) == 3
    for obj, box in zip(objs, boxes):
        bbox = obj.find("bbox")
        assert [c.tag for c in bbox] == ["type", "xmin", "ymin", "xmax", "ymax"]
        assert bbox.find("type").text == "sounding"
        assert [int(c.text) for c in list(bbox)[1:]] == box


@pytest.mark.parametrize(
    "content,match",
    [
        (b"<annotation><object><bbox><type>a</type><xmin>1</xmin>", "malformed XML"),
        (b"<annotation><object><name>a</name></object></annotation>", "no <bbox>"),
        (
            (
                b"<annotation><object><bbox><t/><xmin>1.5</xmin><ymin>2</ymin><xmax>3</xmax>"
                b"<ymax>4</ymax></bbox></object></annotation>"
            ),
            r"<xmin>: '1\.5' is not an integer",
        ),
        (
            b"<annotation><object><bbox><t/><a>1</a><b>2</b><c>3</c></bbox></object></annotation>",
            "has 3 coordinate",
        ),
        (
            (
                b"<annotation><object><bbox><t/><a>1</a><b>2</b><c></c><d>4</d></bbox></object>"
                b"</annotation>"
            ),
            "'' is not an integer",
        ),
        (b"", "empty"),
    ],
)
def test_parse_annotation_errors(tmp_path, content, match):
    p = _write(tmp_path / "bad.xml", content)
    with pytest.raises(MediaError, match=match) as info:
        fl.parse_flickr_annotation(p)
    assert info.value.path == str(p)


def test_parse_annotation_missing_file(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        fl.parse_flickr_annotation(tmp_path / "missing.xml")
