"""Evaluation: localisation maps, cIoU / AUC, and (below) the dataset evaluation loop."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shlex
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from avkd_jax import conv_impl as conv_impl_lib
from avkd_jax import errors, files, input_pipeline, models, pretrained, sharding, teacher_hints
from avkd_jax.datasets import hint_shards
from avkd_jax.losses import resize_bilinear

# =====================================================================================
# The LVS / EZ-VSL evaluation protocol (docs/design.md, Evaluation), in numpy.
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


def success_curve(cious: Sequence[float]) -> tuple[list, list]:
    """The protocol's success-rate curve: thresholds t = 0.05 * i (i = 0..20) and the
    fraction of samples with cIoU >= t; its trapezoid area is the AUC."""
    c = np.asarray(cious, dtype=np.float64).ravel()
    # 0.05 * i, not linspace: 0.05 * 3 = 0.15000000000000002, and a cIoU of exactly 0.15
    # must fall on the same side of it as in the reference.
    thresholds = [0.05 * i for i in range(AUC_STEPS)]
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


# ---------------------------------------------------------------------------------------
# Evaluating a model on a test split: variants, baselines, audio swap, result tables.
# ---------------------------------------------------------------------------------------

MAP_SIZE = 224


def model_maps(model, variables, image, pcm):
    """Localisation maps `[B, h, w]`: the diagonal S[i, i] of docs/design.md, Evaluation (τ omitted: the
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


def peak_object(pred, boxes_xyxy) -> int:
    """The object a map's peak is on: the index of the box holding the centre of the
    peak's cell of `pred`'s own grid, the one whose centre is nearest when boxes overlap
    there; -1 on none.

    Nearest-centre rather than "inside the box": the synthetic world's objects are large
    (median 57 % of the side) and overlap, so the image centre lies in the sounding box
    89 % of the time and in a distractor's 82 % (world seed 0); an audio-blind centre map
    would then pass an "inside the distractor's box" audio-swap test.

    A model's map is passed on its own h×w grid, not as the protocol's 224² upsampling:
    the protocol's corner-aligned resize draws the border cells' values on the image's
    outermost pixels, half a cell outward of the centre of what their features see, so a
    peak on a border cell whose centre lies in the object would read as a peak beside it
    (on the demo, 29 % of the swapped maps read that way peak on no object, 98 % of them
    on a border cell; BENCHMARKS.md).

    Args:
      pred: `[h, w]` map: a model's grid, or a 224² map (fusions, baselines).
      boxes_xyxy: `[N, 4]` normalised boxes.
    """
    h, w = np.shape(pred)
    iy, ix = _peak(pred)
    y, x = (iy + 0.5) / h, (ix + 0.5) / w
    best, best_d = -1, np.inf
    for k, (xmin, ymin, xmax, ymax) in enumerate(np.asarray(boxes_xyxy, dtype=np.float64)):
        if xmin <= x <= xmax and ymin <= y <= ymax:
            d = np.hypot(x - (xmin + xmax) / 2, y - (ymin + ymax) / 2)
            if d < best_d:
                best, best_d = k, d
    return best


# ---------------------------------------------------------------------------------------
# Object-guided inference (paper §3.5, docs/design.md, Evaluation): the object map and the fusions.
# ---------------------------------------------------------------------------------------

STUDENT = "AVC"
OG = "OG-AVC"
OG_DETR = "OG-AVC-DETR"
# The variants a maps picture shows, as the paper's Fig. 3 (baselines would crowd it).
PICTURE_VARIANTS = (STUDENT, OG, OG_DETR)
DEFAULT_PICTURES = 4
# The key of a set's results under which variants without their inputs are listed.
SKIPPED = "skipped"


def protocol_maps(maps) -> np.ndarray:
    """`[B, h, w]` maps on any grid → `[B, 224, 224]` as the protocol scores them: upsampled
    bilinearly with corner alignment, then min-max normalised. Every map (AVC, object,
    DETR) goes through this before it is scored or fused."""
    return normalize_map(upsample_map(maps, MAP_SIZE))


def object_maps(trunk, variables, image):
    """EZ-VSL's object map: uint8 `[B, H, W, 3]` → `[B, H/32, W/32]`, the mean over channels
    of |layer4| of an ImageNet ResNet18 (`models.ResNet18Trunk`) on the normalised image."""
    features = trunk.apply(variables, models.image_input(image), train=False)
    return jnp.mean(jnp.abs(features), axis=-1)


def detr_maps(hints, ids=None) -> np.ndarray:
    """DETR maps `[B, h, w]`, NaN everywhere where DETR kept no query → `[B, 224, 224]`.

    A map with nothing detected counts as zeros: in OG-AVC-DETR it adds the same constant
    to every cell of the sum, which cannot change which cells pass its median threshold.
    A map that is NaN in some cells only is corrupt: HintError, naming its id.
    """
    hints = np.asarray(hints, np.float32)
    nan = np.isnan(hints)
    nothing = nan.all(axis=(-2, -1))
    partly = nan.any(axis=(-2, -1)) & ~nothing
    if partly.any():
        k = int(np.flatnonzero(partly)[0])
        who = f"id {ids[k]}" if ids is not None else f"row {k}"
        raise errors.HintError(
            f"the DETR map of {who} is NaN in some cells only: a corrupt hint (re-extract it)"
        )
    return protocol_maps(np.where(nothing[:, None, None], np.float32(0), hints))


def fuse_og(avc, obj, alpha: float) -> np.ndarray:
    """OG-AVC: (1 − α)·AVC + α·object, of protocol maps `[..., 224, 224]` (paper: α = 0.4)."""
    return (1.0 - alpha) * np.asarray(avc) + alpha * np.asarray(obj)


def fuse_og_detr(avc, obj, detr) -> np.ndarray:
    """OG-AVC-DETR: (AVC + object + DETR) / 3, of protocol maps `[..., 224, 224]`."""
    return (np.asarray(avc) + np.asarray(obj) + np.asarray(detr)) / 3.0


@dataclasses.dataclass(frozen=True)
class ObjectModel:
    """The object-guided variants' ImageNet ResNet18.

    Attributes:
      width: its channel multiplier (conv1's output channels / 64), not the student's.
      variables: `models.ResNet18Trunk(width)`'s {'params', 'batch_stats'}.
      path: the `.npz` it was read from.
      conv_impl: its convolution and max-pool (`avkd_jax.conv_impl`).
    """

    width: float
    variables: dict
    path: str = ""
    conv_impl: str = conv_impl_lib.DEFAULT

    @property
    def trunk(self) -> models.ResNet18Trunk:
        return models.ResNet18Trunk(self.width, **conv_impl_lib.layers(self.conv_impl))


def load_object_model(config, builder) -> tuple[ObjectModel | None, str | None]:
    """`config.object_npz` as an ObjectModel, or (None, why the OG variants are skipped).

    A file that is not there skips them; a file that is there but unreadable or not a
    ResNet18 raises `errors.PretrainedError`.
    """
    if not config.get("object_npz"):
        return None, (
            "no object model: set --config.object_npz to torchvision's ImageNet ResNet18 "
            "converted by `python -m teachers.convert_resnet` (README: object-guided inference)"
        )
    path = pretrained.resolve_npz(config.object_npz, builder, config)
    if not os.path.exists(path):
        return None, f"the object model {path} (config.object_npz) does not exist"
    variables, width = pretrained.load_object_npz(path)
    conv_impl = config.model.get("conv_impl", conv_impl_lib.DEFAULT)
    return ObjectModel(width, variables, path, conv_impl), None


def detr_source(config, builder, split) -> tuple[teacher_hints.HintSource | None, str | None]:
    """The DETR maps of `split` for OG-AVC-DETR, or (None, why the variant is skipped).

    Missing hints of a teacher this side can run (the synthetic one) are made here; a real
    teacher's are not, and the reason holds the `teachers.extract` command that makes them.
    A truncated hint shard raises (`errors.HintError`).
    """
    teacher = config.get("og_detr_teacher")
    if not teacher:
        return None, "no DETR teacher: config.og_detr_teacher is empty"
    why = teacher_hints.problem(builder, split, teacher, config.hints_dir)
    if why and teacher in teacher_hints.SELF_SERVE_TEACHERS:
        teacher_hints.make_hints(builder, config, split, [teacher])
    elif why:
        command = shlex.join(teacher_hints.extract_command(builder, config, split, teacher))
        return None, f"{teacher} hints of the {split} split: {why}; extract them: {command}"
    try:
        source = teacher_hints.source_for(
            builder, config, split, teacher, [hint_shards.VISUAL_HINT]
        )
    except ValueError as e:
        return None, f"config.og_detr_teacher={teacher!r}: {e}"
    shape = source.spec.shapes[hint_shards.VISUAL_HINT]
    if len(shape) != 2:
        return None, (
            f"teacher {teacher!r}'s visual_hint is a {shape} feature map, not a 2-D map "
            "(OG-AVC-DETR wants DETR's attention map: og_detr_teacher='detr')"
        )
    teacher_hints.check_counts(builder, split, [source])
    return source, None


@dataclasses.dataclass
class SplitEval:
    """One evaluation set's outcome.

    Attributes:
      results: variant → summary (`summarize` plus diagnostics); `evaluate_sets` adds
        `SKIPPED` → {variant: reason} when some variant lacked its inputs.
      ids: the split's example ids, in file order.
      cious: variant → per-sample cIoU `[N]`, in `ids` order.
      pictures: one dict per picture id: 'id', 'image' (the model's uint8
        `[S, S, 3]` input), 'boxes' (ground truth `[K, 4]` normalised xyxy), 'gt'
        (`[224, 224]`) and 'maps' (variant → protocol map `[224, 224]`).
    """

    results: dict
    ids: list
    cious: dict
    pictures: list


@functools.cache
def _sharded(fn, module, mesh, num_inputs):
    """`fn(module, variables, *inputs)` jitted once per (module, mesh): variables
    replicated, the `num_inputs` batch inputs split on `data`, the maps replicated."""
    replicated = sharding.replicated(mesh)
    data = sharding.batch_sharded(mesh)
    return jax.jit(
        functools.partial(fn, module),
        in_shardings=(replicated,) + (data,) * num_inputs,
        out_shardings=replicated,
    )


def evaluate_split(model, variants, builder, config, mesh, split=None, baselines=False, fmt=None):
    """`evaluate_split_details(...).results`: variant → summary."""
    return evaluate_split_details(
        model, variants, builder, config, mesh, split, baselines, fmt
    ).results


def evaluate_split_details(
    model,
    variants,
    builder,
    config,
    mesh,
    split=None,
    baselines=False,
    fmt=None,
    objects: ObjectModel | None = None,
    detr: teacher_hints.HintSource | None = None,
    picture_ids=(),
) -> SplitEval:
    """Evaluates models, their object-guided fusions and with `baselines` the two map
    baselines on `split` with the protocol of docs/design.md, Evaluation.

    Args:
      variants: name → `{'params', 'batch_stats'}` of `model`, e.g. {'AVC': trained,
        'untrained': fresh}.
      split: the builder's split (default `config.eval_split`).
      baselines: also score the centre prior and (scenes with every object known) the
        audio-blind every-object map.
      fmt: the ground-truth rule, 'flickr' or 'vggss' (default `config.eval_format`).
      objects: with an 'AVC' variant, also score OG-AVC (α = `config.og_alpha`).
      detr: with `objects`, also score OG-AVC-DETR from these hints of `split`.
      picture_ids: the ids to keep maps of for pictures (empty: the first 4).
    Returns:
      a `SplitEval`. A summary has `ciou`, `auc`, `mean_ciou`, `n`; on the synthetic world
      also `peak_on_sounding` (% of scenes whose map peak is on the sounding object,
      `peak_object`; a model's peak on its own grid) and `swap_score` (the fraction of
      scenes with a distractor whose map peak moves onto the distractor when the image is
      paired with the distractor's sound), `swap_n`, both for the baselines too
      (audio-blind: their swap score is the chance level), and for model variants
      `border_peak` and the `peak_hist` over the h×w grid.
    """
    split = split or config.eval_split
    fmt = fmt or config.eval_format
    replicated = sharding.replicated(mesh)
    data = sharding.batch_sharded(mesh)
    batch_size = -(-config.eval_batch_size // jax.device_count()) * jax.device_count()
    maps_fn = _sharded(model_maps, model, mesh, 2)
    guided = objects is not None and STUDENT in variants
    detr = detr if guided else None
    if guided:
        objects_fn = _sharded(object_maps, objects.trunk, mesh, 1)
        object_vars = jax.device_put(objects.variables, replicated)
    guided_names = [OG] * guided + [OG_DETR] * (detr is not None)
    # The student's rows first, then its object-guided variants, then the others.
    names = [n for n in variants if n == STUDENT] + guided_names
    names += [n for n in variants if n != STUDENT]
    cious = {name: [] for name in names}
    if baselines:
        cious.update({"centre_prior": [], "every_object": []})
    diag = {name: {"peak_on_sounding": [], "swap": []} for name in cious}
    peaks = {name: [] for name in variants}
    centre = centre_prior_map()
    wanted = [str(i) for i in picture_ids or ()]
    ids, pictures = [], []

    batches = input_pipeline.eval_batches(
        builder, config, split, batch_size, [detr] if detr is not None else []
    )
    for batch in batches:
        rows = np.flatnonzero(batch["mask"])
        batch_ids = [batch["id"][r].decode() for r in rows]
        ids += batch_ids
        inputs = input_pipeline.replicated_global(
            {"image": batch["image"], "audio": batch["audio"]}, data
        )
        image, pcm = inputs["image"], inputs["audio"]
        has_objects = "objects" in batch
        has_swap = has_objects and (batch["swap_index"][rows] >= 0).any()
        if has_swap:
            swap_pcm = input_pipeline.replicated_global({"a": batch["swap_audio"]}, data)["a"]
        gts = [gt_map_of(batch, r, fmt) for r in rows]

        maps, swapped = {}, {}
        grids, grids_swapped = {}, {}  # The models' own maps, for `peak_object`.
        for name, variables in variants.items():
            raw = np.asarray(maps_fn(variables, image, pcm))[rows]
            peaks[name] += [_peak(m) for m in raw]
            maps[name], grids[name] = protocol_maps(raw), raw
            if has_swap:
                grids_swapped[name] = np.asarray(maps_fn(variables, image, swap_pcm))[rows]
                swapped[name] = protocol_maps(grids_swapped[name])
        if guided:
            obj = protocol_maps(np.asarray(objects_fn(object_vars, image))[rows])
            maps[OG] = fuse_og(maps[STUDENT], obj, config.og_alpha)
            if has_swap:
                swapped[OG] = fuse_og(swapped[STUDENT], obj, config.og_alpha)
            if detr is not None:
                boxes = detr_maps(batch[hint_shards.VISUAL_HINT][rows], batch_ids)
                maps[OG_DETR] = fuse_og_detr(maps[STUDENT], obj, boxes)
                if has_swap:
                    swapped[OG_DETR] = fuse_og_detr(swapped[STUDENT], obj, boxes)

        for name, pred in maps.items():
            cious[name] += [sample_ciou(p, g) for p, g in zip(pred, gts)]
        if has_objects:
            peak_maps, peak_swapped = maps | grids, swapped | grids_swapped
            for k, r in enumerate(rows):
                objs = batch["objects"]["bbox"][r, : batch["num_objects"][r], :][:, [1, 0, 3, 2]]
                sounding = np.flatnonzero(batch["objects"]["sounding"][r, : len(objs)])[0]
                s = batch["swap_index"][r]
                own = {
                    name: (pred[k], peak_swapped.get(name, pred)[k])
                    for name, pred in peak_maps.items()
                }
                if baselines:  # Audio-blind: the same map with either sound.
                    blind = normalize_map(every_object_map(objs))
                    cious["every_object"].append(sample_ciou(blind, gts[k]))
                    own["centre_prior"] = (centre, centre)
                    own["every_object"] = (blind, blind)
                for name, (pred, pred_swapped) in own.items():
                    diag[name]["peak_on_sounding"].append(peak_object(pred, objs) == sounding)
                    if s >= 0:
                        diag[name]["swap"].append(peak_object(pred_swapped, objs) == s)
        if baselines:
            cious["centre_prior"] += [sample_ciou(normalize_map(centre), g) for g in gts]
        for k, (r, i) in enumerate(zip(rows, batch_ids)):
            picked = i in wanted if wanted else len(pictures) < DEFAULT_PICTURES
            if picked:
                pictures.append(
                    {
                        "id": i,
                        "image": batch["image"][r],
                        "boxes": pixel_boxes(batch, r),
                        "gt": gts[k],
                        "maps": {n: maps[n][k] for n in PICTURE_VARIANTS if n in maps},
                    }
                )

    if wanted:
        absent = [i for i in wanted if i not in ids]
        if absent:
            logging.warning("picture_ids not in the %s split: %s", split, absent)
        pictures.sort(key=lambda p: wanted.index(p["id"]))

    results = {}
    for name, values in cious.items():
        if not values:
            continue
        summary = summarize(values)
        if name in peaks:
            grid = raw.shape[1:]
            hist = np.zeros(grid, int)
            for y, x in peaks[name]:
                hist[y, x] += 1
            border = hist.sum() - hist[1:-1, 1:-1].sum()
            summary["border_peak"] = 100.0 * border / max(hist.sum(), 1)
            summary["peak_hist"] = hist.tolist()
        if name in diag:
            d = diag[name]
            if d["peak_on_sounding"]:
                summary["peak_on_sounding"] = 100.0 * np.mean(d["peak_on_sounding"])
            if d["swap"]:
                summary["swap_score"] = float(np.mean(d["swap"]))
                summary["swap_n"] = len(d["swap"])
        results[name] = summary
    kept = {name: v for name, v in cious.items() if len(v) == len(ids)}
    return SplitEval(results, ids, kept, pictures)


def evaluate_sets(model, variants, eval_sets, config, mesh, baselines=False) -> dict:
    """Every set of `eval_sets` (name → `datasets.EvalSet`) with every variant whose inputs
    are there: the object-guided ones when `config.object_npz` (and for OG-AVC-DETR the
    set's `config.og_detr_teacher` hints) can be had, else noted under `SKIPPED`.

    Returns:
      set name → `SplitEval`.
    """
    if not eval_sets:
        return {}
    objects, why_not = None, f"no {STUDENT} variant to guide"
    if STUDENT in variants:
        objects, why_not = load_object_model(config, next(iter(eval_sets.values())).builder)
    out = {}
    for name, s in eval_sets.items():
        skipped, detr = {}, None
        if objects is None:
            skipped = {OG: why_not, OG_DETR: why_not}
        else:
            detr, why = detr_source(config, s.builder, s.split)
            if why:
                skipped[OG_DETR] = why
        for variant, why in skipped.items():
            logging.warning("%s on %s skipped: %s", variant, name, why)
        result = evaluate_split_details(
            model,
            variants,
            s.builder,
            config,
            mesh,
            s.split,
            baselines,
            s.fmt,
            objects,
            detr,
            tuple(config.get("picture_ids") or ()),
        )
        if skipped:
            result.results[SKIPPED] = skipped
        out[name] = result
    return out


def results_table(results: dict) -> str:
    """A Markdown table of variant → cIoU, AUC, mean cIoU, N (and the synthetic extras),
    one row per variant scored (the `SKIPPED` entry is not a variant)."""
    results = {k: v for k, v in results.items() if k != SKIPPED}
    cols = ["ciou", "auc", "mean_ciou", "n", "peak_on_sounding", "swap_score", "border_peak"]
    cols = [c for c in cols if any(c in r for r in results.values())]
    names = {
        "ciou": "cIoU@0.5",
        "auc": "AUC",
        "mean_ciou": "mean cIoU",
        "n": "N",
        "peak_on_sounding": "peak on sounding %",
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


def write_results(workdir: str, sets: dict, step: int) -> str:
    """Writes `results.json` (`{"step", "sets": {set: {variant: summary, 'skipped':
    {variant: reason}}}}`) and `results.md` (one section per set, the reasons for skipped
    variants under its table) in `workdir`; returns the Markdown text.

    Args:
      sets: evaluation set name (e.g. 'flickr_test') → `evaluate_split`'s results.
    """
    lines = [f"# Evaluation at step {step}"]
    for set_name, results in sets.items():
        lines += ["", f"## {set_name}", "", results_table(results)]
        skipped = results.get(SKIPPED, {})
        if skipped:
            lines += ["", "Not evaluated:", ""]
            lines += [f"- {variant}: {why}" for variant, why in skipped.items()]
        for name, r in results.items():
            if name != SKIPPED and "peak_hist" in r:
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
        files.write_text(
            os.path.join(workdir, "results.json"),
            json.dumps({"step": step, "sets": sets}, indent=1),
        )
        files.write_text(os.path.join(workdir, "results.md"), text)
    return text


def write_cious(workdir: str, sets: dict, step: int) -> str:
    """Writes the per-sample cIoUs beside results.json (which stays small) as `cious.json`:
    `{"step", "sets": {set: {"ids": [N], "cious": {variant: [N]}}}}`.

    Args:
      sets: set name → `SplitEval`.
    Returns:
      the file's path.
    """
    path = os.path.join(workdir, "cious.json")
    doc = {
        "step": step,
        "sets": {name: {"ids": e.ids, "cious": e.cious} for name, e in sets.items()},
    }
    if jax.process_index() == 0:
        files.write_text(path, json.dumps(doc))
    return path
