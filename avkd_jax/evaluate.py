"""Evaluation: localisation maps, cIoU / AUC, and (below) the dataset evaluation loop."""

from __future__ import annotations

import functools
import json
import math
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from avkd_jax import input_pipeline
from avkd_jax.losses import resize_bilinear

P = jax.sharding.PartitionSpec

# =====================================================================================
# The LVS / EZ-VSL evaluation protocol (DESIGN.md section 4), in numpy.
#
# These follow the reference test code number for number (including its int truncations,
# its median index and its float thresholds 0.05 * i), because published cIoU / AUC
# figures depend on those details.
# =====================================================================================

GT_SIZE = 224
FLICKR_FRAME = 256  # Flickr-SoundNet annotations are pixel boxes in a 256 x 256 frame.
AUC_STEPS = 21


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


def upsample_map(maps, size: int = GT_SIZE) -> np.ndarray:
    """Bilinear upsampling with corner alignment, as EZ-VSL's test code.

    Equal to F.interpolate(maps[:, None], size=(size, size), mode='bilinear',
    align_corners=True)[:, 0].

    Args:
      maps: [B, h, w] (7 x 7 similarity or object maps).
    Returns:
      [B, size, size] numpy float32.
    """
    out = resize_bilinear(np.asarray(maps, dtype=np.float32), (size, size), align_corners=True)
    return np.asarray(out, dtype=np.float32)


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
    threshold = np.sort(pred.flatten())[pred.size // 2]
    inferred = (pred >= threshold).astype(np.float64)
    hit = np.sum(inferred * gt)
    return float(hit / (np.sum(gt) + np.sum(inferred * (gt == 0))))


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
    # 0.05 * i, not linspace: 0.05 * 3 = 0.15000000000000002, and a cIoU of exactly 0.15
    # must fall on the same side of it as in the reference.
    thresholds = [0.05 * i for i in range(AUC_STEPS)]
    fractions = [np.sum(c >= t) / c.size for t in thresholds]
    return {
        "ciou": float(100 * np.mean(c >= 0.5)),
        "auc": float(100 * np.trapezoid(fractions, x=thresholds)),
        "mean_ciou": float(100 * np.mean(c)),
        "n": int(c.size),
    }


# ---------------------------------------------------------------------------------------
# Evaluating a model on a test split: variants, baselines, audio swap, result tables.
# ---------------------------------------------------------------------------------------

MAP_SIZE = 224


def model_maps(model, variables, image, pcm):
    """Localisation maps `[B, h, w]`: the diagonal S[i, i] of DESIGN §4 (τ omitted: the
    maps are min-max normalised afterwards, so a positive scale changes nothing)."""
    audio_emb, visual_map = model.apply(variables, image, pcm, train=False)
    return jnp.einsum("bhwc,bc->bhw", visual_map, audio_emb)


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


def centre_prior_map(size=MAP_SIZE):
    """A Gaussian at the image centre: `[size, size]`, the position-only baseline."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    s = size / 4
    return np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * s * s))


def every_object_map(boxes_xyxy, size=MAP_SIZE):
    """The audio-blind baseline: every object of the scene, sounding or not, painted.

    Each box is 1 inside and decays with the distance to it outside. The decay matters:
    with the protocol's median threshold a binary map covering less than half the image
    has threshold 0 and so marks the whole image; the decay makes the threshold keep the
    objects and a margin around them instead.
    """
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    out = np.zeros([size, size])
    for xmin, ymin, xmax, ymax in np.asarray(boxes_xyxy) * size:
        dx = np.maximum(np.maximum(xmin - xx, xx - xmax), 0)
        dy = np.maximum(np.maximum(ymin - yy, yy - ymax), 0)
        out = np.maximum(out, np.exp(-np.hypot(dx, dy) / (0.1 * size)))
    return out


def _peak(pred):
    """(y, x) of the maximum of a 2-D map."""
    return np.unravel_index(np.argmax(pred), pred.shape)


def _in_box(yx, box_xyxy, size=MAP_SIZE):
    y, x = (np.asarray(yx) + 0.5) / size
    xmin, ymin, xmax, ymax = box_xyxy
    return bool(xmin <= x <= xmax and ymin <= y <= ymax)


def evaluate_split(model, variants, builder, config, mesh, split=None, baselines=False):
    """Evaluates models, and with `baselines` the two map baselines, on `split` with the
    protocol of DESIGN §4.

    Args:
      variants: name → `{'params', 'batch_stats'}` of `model`, e.g. {'AVC': trained,
        'untrained': fresh}.
      baselines: also score the centre prior and (scenes with every object known) the
        audio-blind every-object map.
    Returns:
      name → summary `{'ciou', 'auc', 'mean_ciou', 'n', ...}`. On the synthetic world a
      model's summary also has `peak_in_box`, `swap_score` (fraction of scenes with a
    distractor whose map peak lands on the distractor when the image is paired with the
    distractor's sound), `swap_n`, `border_peak` and the `peak_hist` over the h×w grid.
    """
    split = split or config.eval_split
    replicated = jax.sharding.NamedSharding(mesh, P())
    data = jax.sharding.NamedSharding(mesh, P("data"))
    batch_size = -(-config.eval_batch_size // jax.device_count()) * jax.device_count()
    maps_fn = jax.jit(
        functools.partial(model_maps, model),
        in_shardings=(replicated, data, data),
        out_shardings=replicated,
    )

    model_variants = dict(variants)
    cious = {name: [] for name in model_variants}
    if baselines:
        cious.update({"centre_prior": [], "every_object": []})
    diag = {name: {"peak_in_box": [], "swap": [], "peaks": []} for name in model_variants}
    centre = centre_prior_map()

    for batch in input_pipeline.eval_batches(builder, config, split, batch_size):
        rows = np.flatnonzero(batch["mask"])
        inputs = input_pipeline.replicated_global(
            {"image": batch["image"], "audio": batch["audio"]}, data
        )
        image, pcm = inputs["image"], inputs["audio"]
        has_objects = "objects" in batch
        has_swap = has_objects and (batch["swap_index"][rows] >= 0).any()
        if has_swap:
            swap_pcm = input_pipeline.replicated_global({"a": batch["swap_audio"]}, data)["a"]
        gts = [gt_map_of(batch, r, config.eval_format) for r in rows]
        for name, variables in model_variants.items():
            raw = np.asarray(maps_fn(variables, image, pcm))
            pred = normalize_map(upsample_map(raw[rows], MAP_SIZE))
            cious[name] += [sample_ciou(p, g) for p, g in zip(pred, gts)]
            diag[name]["peaks"] += [_peak(m) for m in raw[rows]]
            if has_objects:
                swapped = None
                if has_swap:
                    swapped = np.asarray(maps_fn(variables, image, swap_pcm))
                    swapped = upsample_map(swapped[rows], MAP_SIZE)
                for k, r in enumerate(rows):
                    objs = batch["objects"]["bbox"][r, : batch["num_objects"][r], :][
                        :, [1, 0, 3, 2]
                    ]
                    sounding = np.flatnonzero(batch["objects"]["sounding"][r, : len(objs)])[0]
                    diag[name]["peak_in_box"].append(_in_box(_peak(pred[k]), objs[sounding]))
                    s = batch["swap_index"][r]
                    if s >= 0:
                        diag[name]["swap"].append(_in_box(_peak(swapped[k]), objs[s]))
        if baselines:
            cious["centre_prior"] += [sample_ciou(normalize_map(centre), g) for g in gts]
            if has_objects:
                for r, g in zip(rows, gts):
                    objs = batch["objects"]["bbox"][r, : batch["num_objects"][r], :][
                        :, [1, 0, 3, 2]
                    ]
                    cious["every_object"].append(
                        sample_ciou(normalize_map(every_object_map(objs)), g)
                    )

    results = {}
    for name, values in cious.items():
        if not values:
            continue
        summary = summarize(values)
        if name in diag:
            d = diag[name]
            grid = (raw.shape[1], raw.shape[2])
            hist = np.zeros(grid, int)
            for y, x in d["peaks"]:
                hist[y, x] += 1
            border = hist.sum() - hist[1:-1, 1:-1].sum()
            summary["border_peak"] = 100.0 * border / max(hist.sum(), 1)
            summary["peak_hist"] = hist.tolist()
            if d["peak_in_box"]:
                summary["peak_in_box"] = 100.0 * np.mean(d["peak_in_box"])
            if d["swap"]:
                summary["swap_score"] = float(np.mean(d["swap"]))
                summary["swap_n"] = len(d["swap"])
        results[name] = summary
    return results


def results_table(results: dict) -> str:
    """A Markdown table of variant → cIoU, AUC, mean cIoU, N (and the synthetic extras)."""
    cols = ["ciou", "auc", "mean_ciou", "n", "peak_in_box", "swap_score", "border_peak"]
    cols = [c for c in cols if any(c in r for r in results.values())]
    names = {
        "ciou": "cIoU@0.5",
        "auc": "AUC",
        "mean_ciou": "mean cIoU",
        "n": "N",
        "peak_in_box": "peak in box %",
        "swap_score": "audio swap",
        "border_peak": "border peak %",
    }
    lines = [
        "| variant | " + " | ".join(names[c] for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for variant, r in results.items():
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(
                "–"
                if v is None
                else (f"{v}" if c == "n" else f"{v:.2f}" if c != "swap_score" else f"{v:.3f}")
            )
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def peak_histogram_text(hist) -> str:
    """The peak histogram as rows of counts, one grid row per line."""
    return "\n".join(" ".join(f"{c:4d}" for c in row) for row in hist)


def write_results(workdir: str, results: dict, step: int, split: str) -> str:
    """Writes `results.json` and `results.md` in `workdir`; returns the Markdown text."""
    lines = [f"# Evaluation at step {step} on `{split}`", "", results_table(results)]
    for name, r in results.items():
        if "peak_hist" in r:
            lines += [
                "",
                f"Map peaks of {name} over the {len(r['peak_hist'])}×"
                f"{len(r['peak_hist'][0])} grid:",
                "",
                "```",
                peak_histogram_text(r["peak_hist"]),
                "```",
            ]
    text = "\n".join(lines) + "\n"
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump({"step": step, "split": split, "results": results}, f, indent=1)
        with open(os.path.join(workdir, "results.md"), "w") as f:
            f.write(text)
    return text
