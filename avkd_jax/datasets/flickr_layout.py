"""The Flickr-SoundNet raw layout: its id lists, its annotation XML, its folders.

The raw layout is what users download and what `synthetic_world` emits:

    frames/<id>.jpg            one key frame per clip (.jpeg, .png accepted)
    audio/<id>.wav|flac        the clip's sound
    video/<id>.mp4             or the raw clip instead of both (read by `video`)
    Annotations/<id>.xml       test only: one box per annotator, pixels in a 256x256 frame
    <list>.txt | <list>.csv    ids ("<id>" or "<id>.png" per line; or "id,keyframe" CSV)

The frames and sounds themselves are decoded by `media`. Every reader here fails loudly
with `MediaError` (naming the file and what is wrong) on a missing, empty or malformed file.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from avkd_jax.datasets.media import check_file
from avkd_jax.errors import MediaError

__all__ = [
    "AUDIO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "KNOWN_MEDIA_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "find_media",
    "flickr_annotation_bytes",
    "parse_flickr_annotation",
    "read_id_list",
    "read_keyframes",
    "strip_media_extension",
    "write_flickr_annotation",
]

logger = logging.getLogger(__name__)

# Lists in the wild name clips by their frame or media file ("2432219254.png"); only these
# suffixes are stripped, so ids that legitimately contain dots survive.
KNOWN_MEDIA_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".wav",
    ".flac",
    ".mp3",
    ".ogg",
    ".m4a",
    ".aac",
    ".mp4",
    ".mkv",
    ".avi",
    ".webm",
    ".mov",
    ".flv",
)

# The files a clip may have in each folder of the layout, in order of preference.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
AUDIO_EXTENSIONS = (".wav", ".flac")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi")

_COORD_TAGS = ("xmin", "ymin", "xmax", "ymax")


def find_media(directory, example_id: str, extensions: Sequence[str]) -> str | None:
    """`<directory>/<example_id><ext>` for the first ext of `extensions` that exists, else None.

    Existence only: an empty or corrupt file is found here and rejected by its reader.
    """
    for ext in extensions:
        path = os.path.join(os.fspath(directory), example_id + ext)
        if os.path.exists(path):
            return path
    return None


def strip_media_extension(name: str) -> str:
    """`2432219254.png` → `2432219254`; only the KNOWN_MEDIA_EXTENSIONS are stripped."""
    lower = name.lower()
    for ext in KNOWN_MEDIA_EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return name


def _read_text(path: str) -> str:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        # utf-8-sig: lists saved by Windows tools may start with a BOM.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MediaError(path, f"not UTF-8 text ({e})") from None


def _csv_rows(path: str, text: str):
    """Yields (line_number, row) for the non-blank rows of a CSV text."""
    for line_no, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        row = [c.strip() for c in row]
        if not row or not any(row):
            continue
        yield line_no, row


def read_id_list(path) -> list[str]:
    """Reads an id list: `.txt` (one id per line) or `.csv` (id in the first column).

    Known media suffixes are stripped (`2432219254.png` -> `2432219254`), blank lines are
    ignored, order is kept. Duplicates are dropped (first occurrence kept) and their count
    is logged as a warning, since real lists do contain a few.

    Args:
      path: a `.txt` or `.csv` file. Any other suffix is read as `.txt`.

    Returns:
      list[str] of ids, in file order, without duplicates.

    Raises:
      MediaError: missing/empty file, undecodable text, or a file with no id at all.
    """
    path = check_file(path)
    text = _read_text(path)
    if path.lower().endswith(".csv"):
        raw_ids = [row[0] for _, row in _csv_rows(path, text) if row[0]]
    else:
        # splitlines() handles \n, \r\n and \r alike.
        raw_ids = [line.strip() for line in text.splitlines()]
        raw_ids = [r for r in raw_ids if r]
    if not raw_ids:
        raise MediaError(path, "id list contains no ids")
    seen: set[str] = set()
    ids: list[str] = []
    for raw in raw_ids:
        id_ = strip_media_extension(raw)
        if id_ in seen:
            continue
        seen.add(id_)
        ids.append(id_)
    dropped = len(raw_ids) - len(ids)
    if dropped:
        logger.warning("%s: dropped %d duplicate id(s), kept %d", path, dropped, len(ids))
    return ids


def read_keyframes(csv_path) -> dict[str, int]:
    """Reads `id,keyframe` rows of a Flickr-style test CSV (CRLF, no header).

    Returns:
      dict id -> int keyframe, for the rows that have a second column. For duplicate
      ids the first row wins (as in `read_id_list`).

    Raises:
      MediaError: missing/empty file, or a keyframe that is not an integer.
    """
    path = check_file(csv_path)
    out: dict[str, int] = {}
    for line_no, row in _csv_rows(path, _read_text(path)):
        if len(row) < 2 or not row[1]:
            continue
        id_ = strip_media_extension(row[0])
        try:
            keyframe = int(row[1])
        except ValueError:
            raise MediaError(
                path, f"line {line_no}: keyframe {row[1]!r} is not an integer"
            ) from None
        out.setdefault(id_, keyframe)
    return out


# --------------------------------------------------------------------------- annotations


def _parse_int(path: str, elem: ET.Element, what: str) -> int:
    text = (elem.text or "").strip()
    try:
        return int(text)
    except ValueError:
        raise MediaError(path, f"{what}: {text!r} is not an integer") from None


def parse_flickr_annotation(xml_path) -> list[list[int]]:
    """Reads the boxes of one Flickr-SoundNet test annotation file.

    Follows the reference reader: every `<bbox>` that is a child of a child of the root
    is one annotator's box. Coordinates are read by tag name (xmin, ymin, xmax, ymax)
    when those four tags are present, else by position: the first child (`<type>`) is
    skipped and the next four are xmin, ymin, xmax, ymax.

    Returns:
      list of [xmin, ymin, xmax, ymax] python ints, pixel coordinates in the 256x256
      frame, one per annotator, in file order. Coordinate order is not validated.

    Raises:
      MediaError: missing/empty/malformed XML, no `<bbox>`, a bbox with fewer than four
        coordinates, or a coordinate that is not an integer.
    """
    path = check_file(xml_path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise MediaError(path, f"malformed XML ({e})") from None
    boxes: list[list[int]] = []
    for child in root:
        for sub in child:
            if sub.tag != "bbox":
                continue
            where = f"bbox #{len(boxes) + 1}"
            by_name = {c.tag: c for c in sub if c.tag in _COORD_TAGS}
            if len(by_name) == 4:
                coords = [_parse_int(path, by_name[t], f"{where} <{t}>") for t in _COORD_TAGS]
            else:
                elems = list(sub)[1:5]
                if len(elems) < 4:
                    raise MediaError(
                        path,
                        f"{where} has {len(elems)} coordinate(s) after its first "
                        "child, needs 4 (xmin, ymin, xmax, ymax)",
                    )
                coords = [_parse_int(path, e, f"{where} child <{e.tag}>") for e in elems]
            boxes.append(coords)
    if not boxes:
        raise MediaError(path, "no <bbox> element found under the root's children")
    return boxes


def flickr_annotation_bytes(boxes: Sequence[Sequence[int]], image_id: str) -> bytes:
    """The XML bytes `write_flickr_annotation` writes (see there)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    if len(boxes) == 0:
        raise ValueError(f"annotation for {image_id!r} needs at least one box")
    for i, box in enumerate(boxes):
        if len(box) != 4:
            raise ValueError(
                f"annotation for {image_id!r}: box {i} is {box!r}, "
                "expected [xmin, ymin, xmax, ymax]"
            )
        obj = ET.SubElement(root, "object")
        bbox = ET.SubElement(obj, "bbox")
        ET.SubElement(bbox, "type").text = "sounding"
        for tag, value in zip(_COORD_TAGS, box):
            if int(value) != value:
                raise ValueError(
                    f"annotation for {image_id!r}: box {i} has non-integer {tag}={value!r}"
                )
            ET.SubElement(bbox, tag).text = str(int(value))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_flickr_annotation(xml_path, boxes: Sequence[Sequence[int]], image_id: str) -> None:
    """Writes one annotation file in the Flickr-SoundNet test format.

    `<annotation><filename>ID.jpg</filename>` then one `<object><bbox><type>sounding</type>
    <xmin/><ymin/><xmax/><ymax/></bbox></object>` per annotator, so that the readers of the
    real data read it unchanged.

    Args:
      xml_path: destination file (written directly; callers wanting atomicity pass a
        temporary name and rename).
      boxes: per annotator [xmin, ymin, xmax, ymax], integer pixels in a 256x256 frame.
      image_id: the clip id, stored in `<filename>`.
    """
    data = flickr_annotation_bytes(boxes, image_id)
    with open(xml_path, "wb") as f:
        f.write(data)
