"""The VGG-Sound Sources test annotations (`vggss.json`), read entry by entry.

The file is a list of `{"file": "<id>", "class": "...", "bbox": [[xmin, ymin, xmax,
ymax], ...]}` with normalised coordinates. A malformed entry (not an object, no usable
`file`, `bbox` not a list of 4-number lists) is reported and its clip skipped; the rest
of the file is still read. Numbers are passed on as they are: judging a coordinate
(the public file has some near -2.9e16) is `raw_examples.clean_boxes`'s job.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import numbers
import os

from avkd_jax.datasets import flickr_layout, media
from avkd_jax.errors import MediaError

__all__ = ["VggssAnnotations", "read_vggss_json"]


@dataclasses.dataclass(frozen=True)
class VggssAnnotations:
    """What a vggss.json holds.

    Attributes:
      path: the file.
      boxes: id → tuple of (xmin, ymin, xmax, ymax) as written (an entry may have none).
      classes: id → class name ('' when absent).
      malformed: id → why its entry cannot be used (the clip is skipped).
      notes: (where, what) for problems that belong to no clip: an entry without a file
        name, a duplicate entry (the first one is used).
    """

    path: str
    boxes: dict
    classes: dict
    malformed: dict
    notes: tuple


def _box_problem(box) -> str | None:
    if not isinstance(box, list) or len(box) != 4:
        return f"box {box!r} is not a list of 4 numbers"
    for c in box:
        if isinstance(c, bool) or not isinstance(c, numbers.Real):
            return f"box {box!r} has a coordinate {c!r} that is not a number"
    return None


def _entry(k: int, entry):
    """(id or None, boxes, class, problem) of entry #k."""
    if not isinstance(entry, dict):
        return None, (), "", f"entry #{k} is not an object"
    name = entry.get("file")
    if not isinstance(name, str) or not name.strip():
        return None, (), "", f"entry #{k} has no 'file' name"
    id_ = flickr_layout.strip_media_extension(name.strip())
    cls = entry.get("class", "")
    cls = cls if isinstance(cls, str) else ""
    boxes = entry.get("bbox")
    if not isinstance(boxes, list):
        return id_, (), cls, f"entry #{k}: 'bbox' is {boxes!r}, not a list of boxes"
    for box in boxes:
        problem = _box_problem(box)
        if problem:
            return id_, (), cls, f"entry #{k}: {problem}"
    return id_, tuple(tuple(float(c) for c in box) for box in boxes), cls, None


def read_vggss_json(path) -> VggssAnnotations:
    """Reads a vggss.json, keeping every well-formed entry.

    Raises:
      MediaError: the file is missing, empty, not JSON, or not a list at the top.
    """
    path = os.path.abspath(os.fspath(path))
    stat = os.stat(path) if os.path.isfile(path) else None
    return _read_cached(path, stat.st_mtime_ns if stat else None, stat.st_size if stat else None)


@functools.lru_cache(maxsize=4)
def _read_cached(path: str, mtime_ns, size) -> VggssAnnotations:
    del mtime_ns, size  # Cache keys only: an edited file is read again.
    path = media.check_file(path)
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MediaError(path, f"not valid JSON ({e})") from None
    if not isinstance(data, list):
        raise MediaError(path, f"expected a list of entries, found {type(data).__name__}")
    boxes, classes, malformed, notes = {}, {}, {}, []
    for k, entry in enumerate(data):
        id_, entry_boxes, cls, problem = _entry(k, entry)
        if id_ is None:
            notes.append((f"{path} entry #{k}", problem))
            continue
        if id_ in boxes or id_ in malformed:
            notes.append((f"{path} entry #{k}", f"duplicate entry for {id_}: the first is used"))
            continue
        if problem:
            malformed[id_] = problem
        else:
            boxes[id_] = entry_boxes
            classes[id_] = cls
    return VggssAnnotations(path, boxes, classes, malformed, tuple(notes))
