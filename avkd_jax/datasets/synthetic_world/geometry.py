"""Boxes and shapes: box IoU and the boolean mask of each class's shape.

Box convention: [xmin, ymin, xmax, ymax] int pixels with exclusive max.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["RING_INNER", "box_iou", "shape_mask"]


def box_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """IoU of two [xmin, ymin, xmax, ymax] boxes (exclusive max, pixel areas)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _regular_star(points: int, inner: float) -> list[tuple[float, float]]:
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return list(zip(radii * np.cos(angles), radii * np.sin(angles)))


def _cross(arm: float) -> list[tuple[float, float]]:
    a = arm
    return [
        (-a, -1),
        (a, -1),
        (a, -a),
        (1, -a),
        (1, a),
        (a, a),
        (a, 1),
        (-a, 1),
        (-a, a),
        (-1, a),
        (-1, -a),
        (-a, -a),
    ]


# Polygons in any coordinates; they are stretched so their bounding box is the object box.
_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "square": [(0, 0), (1, 0), (1, 1), (0, 1)],
    "triangle": [(0.5, 0), (1, 1), (0, 1)],
    "cross": _cross(0.3),
    "star": _regular_star(5, 0.45),
    "diamond": [(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)],
    "hexagon": [(0.25, 0), (0.75, 0), (1, 0.5), (0.75, 1), (0.25, 1), (0, 0.5)],
}
RING_INNER = 0.55  # inner radius / outer radius


def shape_mask(shape: str, width: int, height: int) -> np.ndarray:
    """Boolean mask [height, width] of a shape that touches all four sides of its box."""
    if width < 2 or height < 2:
        raise ValueError(f"box too small for a shape: {width}x{height}")
    img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(img)
    w1, h1 = width - 1, height - 1
    if shape in ("disc", "ring"):
        draw.ellipse([0, 0, w1, h1], fill=255)
        if shape == "ring":
            mx, my = (1 - RING_INNER) / 2 * w1, (1 - RING_INNER) / 2 * h1
            draw.ellipse([mx, my, w1 - mx, h1 - my], fill=0)
    elif shape in _POLYGONS:
        pts = np.asarray(_POLYGONS[shape], dtype=np.float64)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        pts = (pts - lo) / (hi - lo) * np.array([w1, h1])
        draw.polygon([tuple(p) for p in pts], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.asarray(img) > 0
