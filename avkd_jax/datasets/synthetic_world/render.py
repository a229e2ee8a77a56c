"""The pixels of a scene: textured backgrounds and objects drawn into their boxes."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from avkd_jax.datasets.synthetic_world.classes import check_class
from avkd_jax.datasets.synthetic_world.geometry import shape_mask

__all__ = ["IMAGE_SIZE", "render_background", "render_object"]

IMAGE_SIZE = 256


def _pick_colour(rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
    """A random RGB colour far from `avoid` (the mean colour under the object)."""
    best, best_d = None, -1.0
    for _ in range(16):
        c = rng.integers(0, 256, size=3).astype(np.float64)
        d = float(np.linalg.norm(c - avoid))
        if d > best_d:
            best, best_d = c, d
        # Far enough to be visible; stop early so colours stay close to uniform.
        if d >= 110.0:
            break
    return best


def render_object(
    rng: np.random.Generator, cls: int, canvas_rgb: np.ndarray, box: Sequence[int]
) -> np.ndarray:
    """Draws an object of class `cls` filling `box` on `canvas_rgb`, in place.

    The shape is the class's; the colour is random (chosen to contrast with what is
    under the box) with a gentle random brightness gradient, so colour says nothing
    about the class. Only pixels inside image[ymin:ymax, xmin:xmax] can change, and the
    shape touches all four sides of the box.

    Args:
      rng: numpy Generator (consumed).
      cls: class index in [0, NUM_CLASSES).
      canvas_rgb: uint8 [H, W, 3], modified in place.
      box: [xmin, ymin, xmax, ymax] ints, exclusive max, inside the canvas.

    Returns:
      bool [ymax - ymin, xmax - xmin]: the pixels of the box the shape covers.
    """
    spec = check_class(cls)
    if canvas_rgb.dtype != np.uint8 or canvas_rgb.ndim != 3 or canvas_rgb.shape[2] != 3:
        raise ValueError(
            f"canvas must be uint8 [H, W, 3], got {canvas_rgb.dtype} {canvas_rgb.shape}"
        )
    x0, y0, x1, y1 = (int(v) for v in box)
    h_img, w_img = canvas_rgb.shape[:2]
    if not (0 <= x0 < x1 <= w_img and 0 <= y0 < y1 <= h_img):
        raise ValueError(f"box {list(box)} not inside a {w_img}x{h_img} canvas")
    mask = shape_mask(spec.shape, x1 - x0, y1 - y0)
    region = canvas_rgb[y0:y1, x0:x1]
    colour = _pick_colour(rng, region.reshape(-1, 3).mean(axis=0))
    # A brightness ramp in a random direction, so an object is not one flat colour that
    # a single colour threshold would segment.
    theta = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0.05, 0.25)
    v = (np.arange(y1 - y0) + 0.5) / (y1 - y0) - 0.5
    u = (np.arange(x1 - x0) + 0.5) / (x1 - x0) - 0.5
    ramp = 1.0 + strength * (np.cos(theta) * u[None, :] + np.sin(theta) * v[:, None])
    shaded = np.clip(np.rint(colour[None, None, :] * ramp[..., None]), 0, 255)
    region[mask] = shaded[mask].astype(np.uint8)
    return mask


def render_background(rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """A random textured background: smooth colour blobs, stripes or a gradient, plus grain.

    Returns:
      uint8 [size, size, 3].
    """

    def blobs(cells: int) -> np.ndarray:
        small = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
        big = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(big, dtype=np.float32)

    coord = (np.arange(size, dtype=np.float32) + 0.5) / size
    kind = rng.integers(0, 3)
    if kind == 0:
        img = blobs(int(rng.integers(3, 9)))
    else:
        c1 = rng.integers(0, 256, size=3).astype(np.float32)
        c2 = rng.integers(0, 256, size=3).astype(np.float32)
        theta = rng.uniform(0, 2 * np.pi)
        # float() keeps the maths in float32 (numpy scalars would promote to float64).
        proj = float(np.cos(theta)) * coord[None, :] + float(np.sin(theta)) * coord[:, None]
        if kind == 1:
            period = rng.uniform(12, 64) / size
            t = 0.5 + 0.5 * np.sin(
                proj * float(2 * np.pi / period) + float(rng.uniform(0, 2 * np.pi))
            )
        else:
            t = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
        img = c1 + (c2 - c1) * t[..., None]
        # Low-contrast blobs on top so stripes and gradients are not perfectly regular.
        img = 0.75 * img + 0.25 * blobs(int(rng.integers(3, 9)))
    # Luminance grain (one channel: a third of the cost of colour grain).
    img += 6.0 * rng.standard_normal(size=(size, size, 1), dtype=np.float32)
    np.rint(img, out=img)
    return np.clip(img, 0, 255).astype(np.uint8)
