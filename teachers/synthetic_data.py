"""The synthetic teachers' labelled data: single objects and single sounds of the world's
classes, from a seed namespace the students' scenes never use.

`labelled_image` gives a detector's target (a class per 25×25 cell), `labelled_clip` a
classifier's; `generate` makes many, the same whatever the number of worker processes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing

import numpy as np
from PIL import Image

from avkd_jax.datasets import synthetic_world as world
from teachers import common

INPUT_SIZE = 200  # DETR's 800 / 4: the same 25×25 output grid at stride 8.
GRID = 25
STRIDE = INPUT_SIZE // GRID
BACKGROUND = world.NUM_CLASSES  # Class index of "no object".
# Labelled data comes from `default_rng([NAMESPACE + seed, stream, index])`; the world's
# scenes come from `default_rng([world_seed, split, index])` with small split codes, so the
# two never share a generator. Held-out scenes use the 'validation' split the students
# never see.
NAMESPACE = 20231009
STREAMS = {
    "visual_train": 0,
    "visual_heldout": 1,
    "audio_train": 2,
    "audio_heldout": 3,
    # The ImageNet stand-in's single objects (`teachers/synthetic_pretrain.py`).
    "object_train": 4,
    "object_heldout": 5,
}
OBJECT_AREA = (0.05, 0.45)  # Smaller objects than the scenes' too: a detector should see them.
COVERED = 0.5  # A cell is the object's when the object's mask covers half of it.


def visual_input(images) -> np.ndarray:
    """uint8 images `[H, W, 3]` → uint8 `[B, 200, 200, 3]` (PIL bilinear, antialiased)."""
    out = [
        np.asarray(
            Image.fromarray(np.asarray(im)).resize(
                (INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR
            )
        )
        for im in images
    ]
    return np.stack(out)


def _overlap(n: int, cells: int) -> np.ndarray:
    """`[cells, n]`: the length of pixel p inside cell i (cells are n / cells pixels wide)."""
    edges = np.arange(cells + 1) * n / cells
    p = np.arange(n)[None, :]
    return np.clip(np.minimum(edges[1:, None], p + 1) - np.maximum(edges[:-1, None], p), 0, None)


def cell_coverage(mask: np.ndarray) -> np.ndarray:
    """bool `[H, W]` → the fraction of each of the 25×25 cells it covers (exact area, cell
    borders falling inside pixels counted fractionally)."""
    rows, cols = _overlap(mask.shape[0], GRID), _overlap(mask.shape[1], GRID)
    covered = rows @ mask.astype(np.float64) @ cols.T
    return covered / (rows.sum(1)[:, None] * cols.sum(1)[None, :])


def _object_box(rng, size=world.IMAGE_SIZE):
    area = rng.uniform(*OBJECT_AREA) * size * size
    aspect = np.exp(rng.uniform(np.log(world.ASPECT_RANGE[0]), np.log(world.ASPECT_RANGE[1])))
    w = int(min(size, max(8, round(np.sqrt(area * aspect)))))
    h = int(min(size, max(8, round(np.sqrt(area / aspect)))))
    x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
    return [x0, y0, x0 + w, y0 + h]


def labelled_object(stream: str, index: int, seed: int):
    """One object of a random class on a textured background, at the world's size.

    Returns:
      (uint8 [256, 256, 3] image, class index, bool [256, 256] mask of the object).
    """
    rng = np.random.default_rng([NAMESPACE + seed, STREAMS[stream], index])
    image = world.render_background(rng)
    cls = int(rng.integers(world.NUM_CLASSES))
    x0, y0, x1, y1 = box = _object_box(rng)
    full = np.zeros(image.shape[:2], bool)
    full[y0:y1, x0:x1] = world.render_object(rng, cls, image, box)
    return image, cls, full


def labelled_image(stream: str, index: int, seed: int):
    """One object of a random class on a textured background, and its cell labels.

    Returns:
      (uint8 [200, 200, 3], int64 [25, 25] labels: the class where the object's mask
      covers at least half the cell, BACKGROUND elsewhere).
    """
    image, cls, full = labelled_object(stream, index, seed)
    labels = np.where(cell_coverage(full) >= COVERED, cls, BACKGROUND)
    return visual_input([image])[0], labels.astype(np.int64)


def labelled_clip(stream: str, index: int, seed: int, seconds: float):
    """One sound of a random class with the world's background noise: (int16 [N], class)."""
    rng = np.random.default_rng([NAMESPACE + seed, STREAMS[stream], index])
    cls = int(rng.integers(world.NUM_CLASSES))
    n = round(seconds * world.SAMPLE_RATE)
    mix = world.add_background_noise(rng, world.synthesize_sound(rng, cls, n))
    return np.round(np.clip(mix, -1, 1) * 32767).astype(np.int16), cls


def _make(task):
    kind, stream, start, stop, seed, seconds = task
    if kind == "image":
        items = [labelled_image(stream, i, seed) for i in range(start, stop)]
    else:
        items = [labelled_clip(stream, i, seed, seconds) for i in range(start, stop)]
    return np.stack([a for a, _ in items]), np.stack([b for _, b in items])


def map_chunks(make, tasks: list, workers=None, progress=False, desc=None) -> list:
    """`[make(t) for t in tasks]`, in worker processes when there are several.

    `make` must be a module-level function (spawned workers import it by name). The results
    are in the order of `tasks`, whatever the number of workers.
    """
    from avkd_jax import terminal

    workers = common.available_cores() if workers is None else workers
    with contextlib.ExitStack() as stack:
        if workers <= 1 or len(tasks) <= 1:
            results = map(make, tasks)
        else:
            # spawn: the parent holds torch's thread pool, which a fork would copy locked.
            ctx = multiprocessing.get_context("spawn")
            pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx)
            results = stack.enter_context(pool).map(make, tasks)
        return list(
            terminal.progress_bar(
                results,
                total=len(tasks),
                desc=desc,
                disable=not progress,
                leave=False,
            )
        )


def generate(kind: str, stream: str, count: int, seed: int, seconds=1.5, workers=None):
    """`count` labelled images or clips, the same whatever the number of worker processes."""
    chunk = 64
    tasks = [
        (kind, stream, s, min(s + chunk, count), seed, seconds) for s in range(0, count, chunk)
    ]
    parts = map_chunks(_make, tasks, workers)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
