"""The LVS / EZ-VSL evaluation protocol (docs/design.md, Evaluation), in numpy.

These follow the reference test code number for number (including its int truncations,
its median index and its float thresholds 0.05 * i), because published cIoU / AUC
figures depend on those details. Protocol 'lvs' of `config.evals` scores every variant
with them.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from avkd_jax.eval import registry
from avkd_jax.eval.upsampling import upsample_map  # noqa: F401  (part of this protocol)

GT_SIZE = 224
FLICKR_FRAME = 256  # Flickr-SoundNet annotations are pixel boxes in a 256 x 256 frame.
AUC_STEPS = 21
# The success curves' thresholds 0.05 * i, not linspace: 0.05 * 3 = 0.15000000000000002, and
# a value of exactly 0.15 must fall on the same side of it as in the reference code.
THRESHOLDS = tuple(0.05 * i for i in range(AUC_STEPS))


def _check_box(box, fmt: str) -> list:
    try:
        values = np.asarray(box).ravel().tolist()
    except ValueError:  # ragged nesting
        values = None
    if not isinstance(values, list) or len(values) != 4:
        raise ValueError(f"{fmt} box must be 4 numbers [xmin, ymin, xmax, ymax], got {box!r}")
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise ValueError(f"{fmt} box {box!r} has a bad coordinate {v!r}")
    return values


def gt_map(boxes, fmt: str) -> np.ndarray:
    """Ground-truth map of one image.

    Args:
      boxes: list of [xmin, ymin, xmax, ymax] or an [N, 4] array, one box per annotator
        ('flickr') or per annotated object ('vggss'); an empty list gives an empty map.
      fmt: 'flickr': pixel boxes in a 256 x 256 frame, each coordinate mapped to
        int(224 * int(c) / 256); each box painted as 1, the maps summed, halved and
        clipped to 1, so a cell is 0.5 where one annotator marked it and 1 where two or
        more did (annotator consensus). Coordinates that come out negative are clipped
        to 0 (the reference would let numpy wrap them around; no real annotation has
        them). 'vggss': normalised boxes, (clip(box, 0, 1) * 224).astype(int), the
        union painted as 1.
    Returns:
      [224, 224] float64.
    """
    if fmt not in ("flickr", "vggss"):
        raise ValueError(f"unknown box format {fmt!r}; expected 'flickr' or 'vggss'")
    if isinstance(boxes, np.ndarray) and boxes.size == 0:
        boxes = []
    total = np.zeros([GT_SIZE, GT_SIZE])
    for box in list(boxes):
        values = _check_box(box, fmt)
        if fmt == "flickr":
            coords = [int(GT_SIZE * int(c) / FLICKR_FRAME) for c in values]
            xmin, ymin, xmax, ymax = (max(c, 0) for c in coords)
        else:
            xmin, ymin, xmax, ymax = (np.clip(np.array(values), 0, 1) * GT_SIZE).astype(int)
        temp = np.zeros([GT_SIZE, GT_SIZE])
        temp[ymin:ymax, xmin:xmax] = 1
        total += temp
    if fmt == "flickr":
        total /= 2
        total[total > 1] = 1
    else:
        total[total > 0] = 1
    return total


def normalize_map(m) -> np.ndarray:
    """Min-max normalise each map to [0, 1].

    A constant map (max == min) becomes all zeros rather than NaN. Its threshold is then
    0 and every cell is inferred, which is also what the reference gets (it leaves such a
    map unchanged: the threshold equals the constant and every cell is >= it); when
    fusing maps, zeros versus a constant only shifts the fused map, so its median
    threshold marks the same cells.

    Args:
      m: [..., H, W].
    Returns:
      [..., H, W] floating (float64 for integer input).
    """
    m = np.asarray(m)
    if not np.issubdtype(m.dtype, np.floating):
        m = m.astype(np.float64)
    lo = m.min(axis=(-2, -1), keepdims=True)
    hi = m.max(axis=(-2, -1), keepdims=True)
    span = hi - lo
    safe = np.where(span > 0, span, 1)
    return np.where(span > 0, (m - lo) / safe, 0).astype(m.dtype)


def sample_ciou(pred, gt) -> float:
    """Consensus IoU of one prediction.

    The prediction is thresholded at its median as the reference computes it,
    np.sort(pred.flatten())[224 * 224 // 2], so at least half the cells are inferred;
    cIoU = sum(inferred * gt) / (sum(gt) + sum(inferred * (gt == 0))).

    Args:
      pred: [224, 224] min-max normalised map.
      gt: [224, 224] from `gt_map` (values 0, 0.5, 1).
    Returns:
      cIoU as a Python float.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must be the same 2-D shape")
    # The k-th smallest value, as np.sort(...)[k] gives it, without sorting every cell.
    k = pred.size // 2
    threshold = np.partition(pred.ravel(), k)[k]
    inferred = (pred >= threshold).astype(np.float64)
    hit = np.sum(inferred * gt)
    return float(hit / (np.sum(gt) + np.sum(inferred * (gt == 0))))


def success_curve(cious: Sequence[float]) -> tuple[list, list]:
    """The protocol's success-rate curve: thresholds t = 0.05 * i (i = 0..20) and the
    fraction of samples with cIoU >= t; its trapezoid area is the AUC."""
    c = np.asarray(cious, dtype=np.float64).ravel()
    thresholds = list(THRESHOLDS)
    return thresholds, [float(np.sum(c >= t) / c.size) for t in thresholds]


def summarize(cious: Sequence[float]) -> dict:
    """Dataset-level numbers from per-sample cIoUs.

    Returns:
      {'ciou': 100 * fraction with cIoU >= 0.5,
       'auc': 100 * trapezoid area under (t, fraction with cIoU >= t), t = 0.05 * i,
              i = 0..20 (as sklearn.metrics.auc over the reference's thresholds),
       'mean_ciou': 100 * mean cIoU,
       'n': number of samples}.
    """
    c = np.asarray(cious, dtype=np.float64).ravel()
    if c.size == 0:
        raise ValueError("summarize needs at least one cIoU")
    thresholds, fractions = success_curve(c)
    return {
        "ciou": float(100 * np.mean(c >= 0.5)),
        "auc": float(100 * np.trapezoid(fractions, x=thresholds)),
        "mean_ciou": float(100 * np.mean(c)),
        "n": int(c.size),
    }


MAP_SIZE = GT_SIZE


def protocol_maps(maps) -> np.ndarray:
    """`[B, h, w]` maps on any grid → `[B, 224, 224]` as the protocol scores them: upsampled
    bilinearly with corner alignment, then min-max normalised. Every map (AVC, object,
    DETR) goes through this before it is scored or fused."""
    return normalize_map(upsample_map(maps, MAP_SIZE))


def pixel_boxes(batch, row):
    """Row `row`'s ground-truth boxes as `[N, 4]` normalised xyxy (from tfds yxyx)."""
    b = batch["boxes"][row, : batch["num_boxes"][row]]
    return b[:, [1, 0, 3, 2]]


def gt_map_of(batch, row, fmt):
    """The protocol's 224² ground truth for one row of an eval batch."""
    boxes = pixel_boxes(batch, row)
    if fmt == "flickr":
        # Flickr boxes are integer pixels of a 256 frame, stored as exact k/256 fractions.
        boxes = np.rint(boxes * 256).astype(int)
    return gt_map(boxes, fmt)


@registry.register("lvs")
class Ciou:
    """cIoU per sample of every variant, summarised as `summarize` does.

    `update(batch, maps)` scores `maps.maps[variant]` `[n, 224, 224]` against `batch.gts`;
    `result()` gives variant → `summarize` of its cIoUs (variants never scored are left
    out); `per_sample()` variant → cIoUs `[N]` of the variants scored on every sample.
    """

    wants_swap = False

    def __init__(self, config=None):
        del config
        self.cious: dict = {}
        self.n = 0

    def update(self, batch, maps) -> None:
        self.n += len(batch.gts)
        for name, pred in maps.maps.items():
            for p, g in zip(pred, batch.gts):
                self.add(name, p, g)

    def add(self, name: str, pred, gt) -> float:
        """One sample of variant `name`: its protocol map and ground truth `[224, 224]`;
        returns its cIoU."""
        ciou = sample_ciou(pred, gt)
        self.cious.setdefault(name, []).append(ciou)
        return ciou

    def result(self) -> dict:
        return {name: summarize(values) for name, values in self.cious.items() if values}

    def per_sample(self) -> dict:
        return {name: v for name, v in self.cious.items() if len(v) == self.n}
