"""The ground truth a scorer reads from the public files users download: Flickr-SoundNet's
`Annotations/` folder, VGG-SS's `vggss.json`, the test id lists and SLAVC's
`*_test_plus_silent.csv` negatives. Free of JAX and TensorFlow, so that scoring someone's
maps starts in a second.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os

import numpy as np

from avkd_jax.datasets import flickr_layout, media, raw_examples, vggss_annotations
from avkd_jax.errors import MediaError
from avkd_jax.eval import protocol

# Between an image id and another clip's audio id in a mismatched pair's key.
PAIR_SEPARATOR = "__"
FLICKR, VGGSS = "flickr", "vggss"


@dataclasses.dataclass(frozen=True)
class Truth:
    """One test image's ground truth.

    Attributes:
      gt: `[224, 224]` float64, `protocol.gt_map` of its boxes.
      boxes: `[K, 4]` the boxes as the annotation gives them (Flickr: pixels of the 256
        frame; VGG-SS: normalised), xyxy, corrupt ones dropped.
      n_boxes: how many boxes the annotation lists, corrupt ones included (SLAVC's
        `len(bb)`).
    """

    gt: np.ndarray
    boxes: np.ndarray
    n_boxes: int


def pair_key(image_id: str, audio_id: str) -> str:
    """A pair's key in a maps file: `<image id>` with its own sound, else
    `<image id>__<audio id>`."""
    return image_id if audio_id == image_id else f"{image_id}{PAIR_SEPARATOR}{audio_id}"


def read_test_ids(path) -> list:
    """The ids of a test list (`flickr_test.csv`, `vggss_test.csv`, `vggss_heard_test.csv`,
    a `.txt`), in file order."""
    return flickr_layout.read_id_list(path)


def flickr_truth(folder, ids) -> tuple[dict, list]:
    """Ground truth of Flickr-SoundNet test ids from `Annotations/<id>.xml`.

    Returns:
      (id → `Truth`, the ids whose annotation file is missing).
    Raises:
      MediaError: a malformed annotation file (named).
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise MediaError(folder, "not a folder: --annotations must be Flickr's Annotations/")
    out, missing = {}, []
    for id_ in ids:
        path = os.path.join(folder, f"{id_}.xml")
        if not os.path.exists(path):
            missing.append(id_)
            continue
        boxes = flickr_layout.parse_flickr_annotation(path)
        gt = protocol.gt_map(boxes, FLICKR)
        out[id_] = Truth(gt, np.asarray(boxes, np.int64), len(boxes))
    return out, missing


def vggss_truth(json_path, ids, first_box_only: bool = False) -> tuple[dict, list]:
    """Ground truth of VGG-SS test ids from `vggss.json`.

    A box with a corrupt coordinate (the public file has some near −2.9e16) is dropped as
    `raw_examples.clean_boxes` drops it when the dataset is prepared, so that the scorer
    and `--mode=eval` see the same ground truth.

    Args:
      first_box_only: keep only each entry's first box (the paper authors' VGG-SS code).
    Returns:
      (id → `Truth`, the ids that have no entry).
    Raises:
      MediaError: the file is unreadable, or a listed id's entry is malformed (named).
    """
    ann = vggss_annotations.read_vggss_json(json_path)
    out, missing = {}, []
    for id_ in ids:
        if id_ in ann.malformed:
            raise MediaError(ann.path, f"the entry of {id_} is malformed: {ann.malformed[id_]}")
        if id_ not in ann.boxes:
            missing.append(id_)
            continue
        raw = ann.boxes[id_][:1] if first_box_only else ann.boxes[id_]
        yxyx, _, _ = raw_examples.clean_boxes(raw, VGGSS, ann.path)
        xyxy = yxyx[:, [1, 0, 3, 2]].astype(np.float64)
        out[id_] = Truth(protocol.gt_map(xyxy, VGGSS), xyxy, len(raw))
    return out, missing


def read_negatives(path) -> list:
    """The rows of a SLAVC `*_test_plus_silent.csv` (header `video,audio,label`) as
    (image id, audio id) pairs, in file order.

    Raises:
      MediaError: no `video` / `audio` column, an empty field, or a repeated pair (named
        by its line).
    """
    path = media.check_file(path)
    with open(path, "rb") as f:
        text = f.read().decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"video", "audio"} <= set(reader.fieldnames):
        raise MediaError(
            path, f"expected a header with 'video' and 'audio', got {reader.fieldnames}"
        )
    pairs, seen = [], set()
    for line, row in enumerate(reader, start=2):
        image, audio = (row["video"] or "").strip(), (row["audio"] or "").strip()
        if not image or not audio:
            raise MediaError(path, f"line {line}: empty 'video' or 'audio' field")
        pair = (
            flickr_layout.strip_media_extension(image),
            flickr_layout.strip_media_extension(audio),
        )
        if pair in seen:
            raise MediaError(path, f"line {line}: the pair {pair} is listed twice")
        seen.add(pair)
        pairs.append(pair)
    if not pairs:
        raise MediaError(path, "no negative pairs in the file")
    return pairs


def first_box_truth(builder):
    """The ground truth of each clip's first box in its VGG-SS json (`config.eval_first_box_only`):
    (batch, row, id) → `[224, 224]`. A first box with a corrupt coordinate paints nothing,
    as in the reference, which clips it to 0.

    Raises:
      ValueError: `builder` was not made from a vggss.json.
    """
    source = getattr(getattr(builder, "builder_config", None), "source", None)
    path = getattr(getattr(source, "test", None), "annotation", None)
    if source is None or source.test.box_format != "vggss":
        raise ValueError(
            "config.eval_first_box_only: this set's boxes are not read from a vggss.json"
        )

    def gt(data, row, id_):
        del data, row
        truth, missing = vggss_truth(path, [id_], first_box_only=True)
        if missing:
            raise ValueError(f"{path}: no entry for the test clip {id_}")
        return truth[id_].gt

    return gt
