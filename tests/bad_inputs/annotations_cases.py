"""The bad-input cases of id lists and annotation files."""

from avkd_jax.datasets import (
    flickr_layout,
    vggss_annotations,
)
from avkd_jax.errors import MediaError
from bad_inputs.cases import (
    BOX,
    Case,
    flickr_xml,
    vggss_json,
)


def _list(ctx, data: bytes, name="train.txt", read=flickr_layout.read_id_list):
    path = ctx.path(f"metadata/{name}")
    with open(path, "wb") as f:
        f.write(data)
    return (lambda: read(path)), path


def _xml(ctx, text):
    path = flickr_xml(ctx, text)
    return (lambda: flickr_layout.parse_flickr_annotation(path)), path


def _json(ctx, text):
    path = vggss_json(ctx, text)
    return (lambda: vggss_annotations.read_vggss_json(path)), path


ANNOTATION_CASES = [
    Case(
        "list-missing",
        "list",
        "the id list does not exist",
        MediaError,
        lambda ctx: ((lambda: flickr_layout.read_id_list(ctx.path("m/x.txt"))), "m/x.txt"),
        "`<path>: file does not exist`.",
    ),
    Case(
        "list-empty",
        "list",
        "0 bytes",
        MediaError,
        lambda ctx: _list(ctx, b""),
        "`<path>: file is empty (0 bytes)`.",
    ),
    Case(
        "list-no-ids",
        "list",
        "blank lines only",
        MediaError,
        lambda ctx: _list(ctx, b"\n \r\n\n"),
        "`<path>: id list contains no ids`.",
    ),
    Case(
        "list-not-utf8",
        "list",
        "not UTF-8 text (e.g. a binary file)",
        MediaError,
        lambda ctx: _list(ctx, b"\xff\xfe\xfa\x00id"),
        "`<path>: not UTF-8 text`.",
    ),
    Case(
        "list-bad-keyframe",
        "list",
        "a test csv keyframe that is not an integer",
        MediaError,
        lambda ctx: _list(ctx, b"2001,0\r\n2002,x7\r\n", "test.csv", flickr_layout.read_keyframes),
        "`<path>: line 2: keyframe 'x7' is not an integer`.",
    ),
    Case(
        "xml-malformed",
        "annotation",
        "a Flickr XML cut short",
        MediaError,
        lambda ctx: _xml(ctx, "<annotation><object><bbox><xmin>1"),
        "`<path>: malformed XML`; the builder skips the test clip.",
    ),
    Case(
        "xml-no-bbox",
        "annotation",
        "an XML without any <bbox>",
        MediaError,
        lambda ctx: _xml(ctx, "<annotation><object><name>x</name></object></annotation>"),
        "`<path>: no <bbox> element found`.",
    ),
    Case(
        "xml-three-coordinates",
        "annotation",
        "a <bbox> with 3 coordinates",
        MediaError,
        lambda ctx: _xml(
            ctx,
            f"<annotation><object>{BOX.format('<c>1</c><c>2</c><c>3</c>')}</object></annotation>",
        ),
        "`<path>: bbox #1 has 3 coordinate(s) ..., needs 4`.",
    ),
    Case(
        "xml-non-integer",
        "annotation",
        "a coordinate that is not an integer",
        MediaError,
        lambda ctx: _xml(
            ctx,
            "<annotation><object>"
            + BOX.format("<xmin>1</xmin><ymin>2</ymin><xmax>3.5</xmax><ymax>4</ymax>")
            + "</object></annotation>",
        ),
        "`<path>: bbox #1 <xmax>: '3.5' is not an integer`.",
    ),
    Case(
        "json-missing",
        "annotation",
        "vggss.json does not exist",
        MediaError,
        lambda ctx: (
            (lambda: vggss_annotations.read_vggss_json(ctx.path("meta/vggss.json"))),
            "meta/vggss.json: file does not exist",
        ),
        "`<path>: file does not exist` (or set dataset_kwargs.vggss_json).",
    ),
    Case(
        "json-not-json",
        "annotation",
        "vggss.json cut short",
        MediaError,
        lambda ctx: _json(ctx, '[{"file": "a", "bbox": [[0.1, '),
        "`<path>: not valid JSON (...)`.",
    ),
    Case(
        "json-not-a-list",
        "annotation",
        "vggss.json holds an object, not a list",
        MediaError,
        lambda ctx: _json(ctx, '{"file": "a"}'),
        "`<path>: expected a list of entries, found dict`.",
    ),
]
