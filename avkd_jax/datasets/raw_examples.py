"""One clip of a raw dataset → one example: the only per-example reader the builders share.

A clip's picture comes from `frames/<id>.jpg` when present, else from `video/<id>.mp4`
(middle frame, or the test csv's keyframe); its sound from `audio/<id>.wav|flac` when
present, else from the video's audio stream. Test clips also get their boxes: a Flickr
`Annotations/<id>.xml` (one box per annotator, pixels of a 256×256 frame) or the VGG-SS
json entry's normalised boxes.

Boxes are stored as normalised [ymin, xmin, ymax, xmax] clipped to [0, 1]; the protocol
clips the same way (`protocol.gt_map`), so clipping never changes a ground-truth map. A
box with a coordinate that is not finite or lies outside [-1, 2] of the frame is corrupt
(the public vggss.json has some near -2.9e16): it is dropped and reported, the rest of
the clip is kept (see `clean_boxes`).

Nothing here imports TensorFlow: `read_many` decodes in threads (PIL, libsndfile, soxr
and ffmpeg release the GIL), and the report uses it without building anything.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from avkd_jax.datasets import flickr_layout, media, video
from avkd_jax.errors import MediaError

__all__ = [
    "BOX_RANGE",
    "ExampleTask",
    "clean_boxes",
    "default_workers",
    "locate",
    "missing_files",
    "read_example",
    "read_many",
]

FLICKR_FRAME = 256.0
# A normalised coordinate outside this range is not a box that slipped off the frame but
# garbage (the public vggss.json has -2.88e16): such a box is dropped.
BOX_RANGE = (-1.0, 2.0)


@dataclasses.dataclass(frozen=True)
class ExampleTask:
    """What to read for one clip.

    Attributes:
      example_id: the clip id, as in the list files.
      root: the split's raw root, holding frames/, audio/ and/or video/.
      sample_rate, audio_seconds: the PCM to produce.
      keyframe: for a clip read from video, the 0-based frame index to take instead of
        the middle frame (the Flickr test csv's second column).
      box_format: None (train clip, no boxes), 'flickr' or 'vggss'.
      annotation: 'flickr': the XML file; 'vggss': the json file (named in messages).
      boxes: 'vggss': the entry's boxes, [xmin, ymin, xmax, ymax] normalised.
    """

    example_id: str
    root: str
    sample_rate: int = 22050
    audio_seconds: float = 3.0
    keyframe: int | None = None
    box_format: str | None = None
    annotation: str | None = None
    boxes: tuple = ()


def locate(task: ExampleTask) -> dict[str, str | None]:
    """The files a clip would be read from: {'image', 'audio', 'annotation'} → path or None.

    The picture and the sound each prefer the pre-extracted file over the video.
    """
    root, i = task.root, task.example_id
    clip = flickr_layout.find_media(os.path.join(root, "video"), i, flickr_layout.VIDEO_EXTENSIONS)
    image = flickr_layout.find_media(
        os.path.join(root, "frames"), i, flickr_layout.IMAGE_EXTENSIONS
    )
    audio = flickr_layout.find_media(os.path.join(root, "audio"), i, flickr_layout.AUDIO_EXTENSIONS)
    annotation = task.annotation
    if annotation is not None and task.box_format == "flickr" and not os.path.exists(annotation):
        annotation = None
    return {"image": image or clip, "audio": audio or clip, "annotation": annotation}


def missing_files(task: ExampleTask) -> list[tuple[str, str]]:
    """What `locate` could not find: (the preferred path, what was looked for) pairs."""
    found = locate(task)
    root, i = task.root, task.example_id
    clip = f"video/{i}{{{','.join(flickr_layout.VIDEO_EXTENSIONS)}}}"
    missing = []
    if found["image"] is None:
        exts = ",".join(flickr_layout.IMAGE_EXTENSIONS)
        missing.append(
            (
                os.path.join(root, "frames", i + ".jpg"),
                f"missing: no frames/{i}{{{exts}}}, no {clip}",
            )
        )
    if found["audio"] is None:
        exts = ",".join(flickr_layout.AUDIO_EXTENSIONS)
        missing.append(
            (os.path.join(root, "audio", i + ".wav"), f"missing: no audio/{i}{{{exts}}}, no {clip}")
        )
    if task.box_format == "flickr" and found["annotation"] is None:
        missing.append((str(task.annotation), "missing: annotation file does not exist"))
    return missing


def _is_video(path: str) -> bool:
    return path.lower().endswith(flickr_layout.VIDEO_EXTENSIONS)


def clean_boxes(boxes, box_format: str, source: str):
    """Validates a clip's boxes and converts them to what the builders store.

    Args:
      boxes: [xmin, ymin, xmax, ymax] per box: 'flickr' pixels of the 256 frame,
        'vggss' normalised.
      box_format: 'flickr' or 'vggss'.
      source: the annotation file, named in the notes.
    Returns:
      (yxyx float32 [K, 4] normalised and clipped to [0, 1], the kept boxes' indices
      int32 [K], notes: list of (source, reason) for every dropped box).
    """
    scale = FLICKR_FRAME if box_format == "flickr" else 1.0
    kept, index, notes = [], [], []
    lo, hi = BOX_RANGE
    for k, box in enumerate(boxes):
        norm = [float(c) / scale for c in box]
        if not all(math.isfinite(c) and lo <= c <= hi for c in norm):
            notes.append((source, f"box #{k + 1} {list(box)} has a corrupt coordinate: dropped"))
            continue
        xmin, ymin, xmax, ymax = np.clip(norm, 0.0, 1.0)
        kept.append([ymin, xmin, ymax, xmax])
        index.append(k)
    return (
        np.asarray(kept, np.float32).reshape(-1, 4),
        np.asarray(index, np.int32),
        notes,
    )


def read_example(task: ExampleTask) -> dict:
    """Reads, checks and converts one clip.

    Returns:
      {'id': str, 'image': JPEG bytes (RGB, shorter side 256), 'audio': int16 [N],
       'boxes': float32 [K, 4] normalised yxyx, 'annotators': int32 [K] (Flickr: the
       box's position in the XML; VGG-SS: 0), 'files': {'image', 'audio', 'annotation'},
       'notes': [(file, reason)] for dropped boxes}.
    Raises:
      MediaError: a missing, empty, corrupt or undecodable file, or a malformed annotation.
    """
    files = locate(task)
    missing = missing_files(task)
    if missing:
        raise MediaError(*missing[0])
    if _is_video(files["image"]):
        image = video.load_video_frame(files["image"], task.keyframe)
    else:
        image = media.load_image(files["image"])
    if _is_video(files["audio"]):
        audio = video.load_video_audio(files["audio"], task.sample_rate, task.audio_seconds)
    else:
        audio = media.load_audio(files["audio"], task.sample_rate, task.audio_seconds)
    boxes, annotators, notes = np.zeros([0, 4], np.float32), np.zeros([0], np.int32), []
    if task.box_format == "flickr":
        raw = flickr_layout.parse_flickr_annotation(files["annotation"])
        boxes, annotators, notes = clean_boxes(raw, "flickr", files["annotation"])
    elif task.box_format == "vggss":
        boxes, _, notes = clean_boxes(task.boxes, "vggss", str(task.annotation))
        annotators = np.zeros([len(boxes)], np.int32)
    elif task.box_format is not None:
        raise ValueError(f"unknown box_format {task.box_format!r}")
    return {
        "id": task.example_id,
        "image": media.encode_jpeg(image),
        "audio": audio,
        "boxes": boxes,
        "annotators": annotators,
        "files": files,
        "notes": notes,
    }


def _safe(read_fn, task):
    try:
        return read_fn(task)
    except MediaError as e:
        return e


def read_many(
    tasks: Iterable[ExampleTask],
    workers: int = 0,
    read_fn: Callable[[ExampleTask], dict] = read_example,
) -> Iterator[tuple[ExampleTask, dict | MediaError]]:
    """Yields (task, example or the MediaError that stopped it), in task order.

    Args:
      workers: threads decoding ahead (0 or 1: in the caller's thread). At most
        4 × workers clips are in flight, so memory stays flat on any split size.
      read_fn: the per-clip reader (`read_example`, or a builder's extension of it).
    """
    if workers <= 1:
        for task in tasks:
            yield task, _safe(read_fn, task)
        return
    window: collections.deque = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for task in tasks:
            window.append((task, pool.submit(_safe, read_fn, task)))
            if len(window) >= 4 * workers:
                head, future = window.popleft()
                yield head, future.result()
        while window:
            head, future = window.popleft()
            yield head, future.result()


def default_workers(requested: int, num_tasks: int) -> int:
    """`requested` threads, or with 0 one per CPU; none for a handful of clips."""
    if num_tasks < 32:
        return 0
    return requested if requested > 0 else (os.cpu_count() or 1)
