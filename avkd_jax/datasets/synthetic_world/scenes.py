"""Scene layout and assembly: which objects go where, and the scene's pixels and sound.

Everything is a pure function of (seed, split, index), drawn from independent generators
per concern (`streams`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avkd_jax.datasets.synthetic_world.classes import NUM_CLASSES
from avkd_jax.datasets.synthetic_world.render import (
    IMAGE_SIZE,
    render_background,
    render_object,
)
from avkd_jax.datasets.synthetic_world.sound import (
    SAMPLE_RATE,
    add_background_noise,
    synthesize_sound,
    to_int16,
)

__all__ = [
    "ASPECT_RANGE",
    "SPLIT_CODES",
    "layout_from_rng",
    "make_scene",
    "render_scene",
    "scene_layout",
    "streams",
]

# Scene statistics (docs/design.md, The synthetic world). Sounding objects and
# distractors share them, so neither size nor aspect tells which object sounds.
AREA_FRACTION_RANGE = (0.2, 0.45)
ASPECT_RANGE = (0.75, 4.0 / 3.0)  # width / height, sampled log-uniformly
MAX_PAIR_IOU = 0.1
# Joint placement: up to ROUNDS x BATCH candidate layouts (vectorised), then a distractor
# is dropped: 2 objects of these sizes almost always fit, 3 often do not.
PLACEMENT_BATCH = 2048
PLACEMENT_ROUNDS = 16
NUM_ANNOTATORS = 3
ANNOTATOR_JITTER_PX = 4
DURATION_S_RANGE = (3.0, 5.0)

SPLIT_CODES = {"train": 0, "test": 1, "validation": 2}


def _split_code(split) -> int:
    if isinstance(split, (int, np.integer)):
        return int(split)
    if split not in SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_CODES)}")
    return SPLIT_CODES[split]


def streams(seed: int, split, index: int) -> dict[str, np.random.Generator]:
    """Independent generators per concern, so e.g. skipping object drawing leaves the
    background, the layout and the audio unchanged."""
    root = np.random.default_rng([int(seed), _split_code(split), int(index)])
    names = ("layout", "background", "objects", "audio", "swap")
    return dict(zip(names, root.spawn(len(names))))


def _pairwise_ok(boxes: list[np.ndarray]) -> np.ndarray:
    """boxes: per object int [M, 4] candidates -> bool [M], all pairwise IoU <= 0.1."""
    ok = np.ones(boxes[0].shape[0], dtype=bool)
    for i in range(len(boxes)):
        for j in range(i):
            a, b = boxes[i], boxes[j]
            iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
            ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
            inter = iw * ih
            union = (
                (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
                + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
                - inter
            )
            ok &= inter <= MAX_PAIR_IOU * union
    return ok


def _place(rng: np.random.Generator, sizes: list[tuple[int, int]], size: int):
    """Rejection-samples positions for all objects jointly, uniformly over the layouts
    with pairwise IoU <= 0.1. Returns a list of boxes, or None if none was found.

    Jointly, not one object after another: a first object dropped in the middle would
    block the others, and greedy placement then rarely fits more than one.
    """
    if len(sizes) == 1:
        ((w, h),) = sizes
        x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        return [[x0, y0, x0 + w, y0 + h]]
    for _ in range(PLACEMENT_ROUNDS):
        cands = []
        for w, h in sizes:
            x0 = rng.integers(0, size - w + 1, size=PLACEMENT_BATCH)
            y0 = rng.integers(0, size - h + 1, size=PLACEMENT_BATCH)
            cands.append(np.stack([x0, y0, x0 + w, y0 + h], axis=1))
        hits = np.flatnonzero(_pairwise_ok(cands))
        if hits.size:
            return [[int(v) for v in c[hits[0]]] for c in cands]
    return None


def layout_from_rng(rng: np.random.Generator, size: int = IMAGE_SIZE):
    n_wanted = 1 + int(rng.integers(0, 3))
    classes = [int(c) for c in rng.choice(NUM_CLASSES, size=n_wanted, replace=False)]
    sizes = []
    for _ in classes:
        # Sizes are drawn once and never redrawn on rejection: redrawing would make the
        # objects that survive crowded scenes smaller than the others, a size cue.
        area = rng.uniform(*AREA_FRACTION_RANGE) * size * size
        aspect = np.exp(rng.uniform(np.log(ASPECT_RANGE[0]), np.log(ASPECT_RANGE[1])))
        sizes.append(
            (
                int(min(size, max(2, round(np.sqrt(area * aspect))))),
                int(min(size, max(2, round(np.sqrt(area / aspect))))),
            )
        )
    boxes = _place(rng, sizes, size)
    while boxes is None:
        # Drop the last object (classes and sizes are i.i.d., so it is a random one).
        classes, sizes = classes[:-1], sizes[:-1]
        boxes = _place(rng, sizes, size)
    # Which placed object sounds is drawn only now, uniformly, so within a scene the
    # sounding object is exchangeable with its distractors (same size/place statistics).
    n = len(boxes)
    sounding = int(rng.integers(0, n))
    order = rng.permutation(n)  # drawing order = list order
    objects = [{"cls": classes[i], "box": boxes[i], "sounding": bool(i == sounding)} for i in order]
    s_box = np.array(boxes[sounding])
    annotators = []
    for _ in range(NUM_ANNOTATORS):
        jitter = rng.integers(-ANNOTATOR_JITTER_PX, ANNOTATOR_JITTER_PX + 1, size=4)
        annotators.append([int(v) for v in np.clip(s_box + jitter, 0, size)])
    swap_index = next((i for i, o in enumerate(objects) if not o["sounding"]), None)
    return objects, annotators, swap_index


def scene_layout(seed: int, split, index: int) -> dict[str, Any]:
    """The layout of scene (seed, split, index) without rendering pixels or sound.

    Returns:
      dict with `objects` (list of {cls: int, box: [xmin, ymin, xmax, ymax] int,
      sounding: bool} in drawing order), `annotator_boxes` (3 boxes) and `swap_index`
      (index in objects of the first distractor, or None) -- identical to make_scene's.
    """
    objects, annotators, swap_index = layout_from_rng(streams(seed, split, index)["layout"])
    return {"objects": objects, "annotator_boxes": annotators, "swap_index": swap_index}


def make_scene(
    seed: int,
    split,
    index: int,
    sample_rate: int = SAMPLE_RATE,
    draw_objects: bool = True,
    include_swap: bool = True,
) -> dict[str, Any]:
    """Generates one scene, a pure function of (seed, split, index).

    Args:
      seed: world seed.
      split: "train", "test", "validation" or an int split code.
      index: scene index within the split.
      sample_rate: audio rate in Hz.
      draw_objects: False renders the background only (everything else unchanged), so
        tests can see which pixels the objects changed.
      include_swap: False skips synthesizing `swap_audio` (None then).

    Returns:
      dict with
        image: uint8 [256, 256, 3].
        audio: int16 [N], N = round(U(3, 5) s * sample_rate): sounding object + noise.
        objects: list of {cls, box, sounding} in drawing order (see scene_layout).
        annotator_boxes: 3 x [xmin, ymin, xmax, ymax], the sounding box jittered
          independently by up to +-4 px per coordinate, clipped to [0, 256].
        swap_index: index in objects of the first distractor, None without distractors.
        swap_audio: int16 [N], a sound of that distractor's class with the same
          length/noise recipe (fresh noise, SNR, level); None without distractors.
    """
    rng = streams(seed, split, index)
    return render_scene(
        rng, layout_from_rng(rng["layout"]), sample_rate, draw_objects, include_swap
    )


def render_scene(rng, layout, sample_rate, draw_objects, include_swap):
    objects, annotators, swap_index = layout
    image = render_background(rng["background"])
    if draw_objects:
        for obj in objects:
            render_object(rng["objects"], obj["cls"], image, obj["box"])
    a_rng = rng["audio"]
    n = int(round(a_rng.uniform(*DURATION_S_RANGE) * sample_rate))
    sounding_cls = next(o["cls"] for o in objects if o["sounding"])
    audio = to_int16(
        add_background_noise(
            a_rng, synthesize_sound(a_rng, sounding_cls, n, sample_rate), sample_rate
        )
    )
    swap_audio = None
    if swap_index is not None and include_swap:
        s_rng = rng["swap"]
        swap_audio = to_int16(
            add_background_noise(
                s_rng,
                synthesize_sound(s_rng, objects[swap_index]["cls"], n, sample_rate),
                sample_rate,
            )
        )
    return {
        "image": image,
        "audio": audio,
        "objects": objects,
        "annotator_boxes": annotators,
        "swap_index": swap_index,
        "swap_audio": swap_audio,
    }
