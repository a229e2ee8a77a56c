"""The IS3 protocol (Senocak et al., "Toward Interactive Sound Source Localization", TPAMI
2025; kaistmm/SSLalignment `test.py::validate`, `utils.py::Evaluator_iiou`), in numpy.

IS3 has 3,240 synthetic two-object scenes; each object is one annotation with its own sound
(`<scene>_<object>`, e.g. `accordion_female_10438_accordion`), so a scene is scored twice,
once per sounding object. Per instance: the map is upsampled to 224 x 224 (bilinear, corner
aligned), min-max normalised and binarised two ways, by the reference's median rule and by
its adaptive rule (about as many pixels as the box has); the instance's IoU is the LVS
cIoU formula against its box. cIoU / AUC summarise instances; iIoU / iAUC summarise scenes,
a scene passing a threshold only when every one of its instances does.

These follow the reference number for number, including what differs from the LVS
protocol in `protocol.py`: binary maps keep only pixels strictly above the threshold
(`>`, not `>=`), boxes are truncated with int() and painted with exclusive ends, and the
AUC thresholds are the floats 0.05 * i. docs/protocols/is3.md says what users bring.
"""

from __future__ import annotations

import json
import math
import os
from typing import Mapping, Sequence

import numpy as np

from avkd_jax.eval import diagnostics, protocol, registry

GT_SIZE = 224
PASS_IOU = 0.5
INSTANCES_PER_SCENE = 2
_ENTRY_KEYS = ("image", "audio", "gt_box")


def check_box(box, where: str) -> list:
    """An IS3 `gt_box` as 4 floats [xmin, ymin, xmax, ymax] in pixels of the 224 frame.

    Raises ValueError naming `where` unless it has 4 finite numbers in [0, 224] whose int()
    truncation is a non-empty box (the reference would wrap negative coordinates around
    and give an empty box an all-zero ground truth).
    """
    if isinstance(box, np.ndarray) and box.ndim == 1:
        values = box.tolist()
    elif isinstance(box, (list, tuple)):
        values = list(box)
    else:
        values = None
    if values is None or len(values) != 4:
        raise ValueError(f"{where}: gt_box must be 4 numbers [xmin, ymin, xmax, ymax], got {box!r}")
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
            raise ValueError(f"{where}: gt_box {box!r} has a non-number {v!r}")
        v = float(v)
        if not math.isfinite(v) or not 0 <= v <= GT_SIZE:
            raise ValueError(f"{where}: gt_box {box!r} has {v!r}, outside [0, {GT_SIZE}]")
        out.append(v)
    xmin, ymin, xmax, ymax = (int(v) for v in out)
    if xmax <= xmin or ymax <= ymin:
        raise ValueError(f"{where}: gt_box {box!r} is empty once truncated to int pixels")
    return out


def split_stem(stem: str, where: str = "IS3") -> tuple[str, str]:
    """(scene, instance) of an IS3 stem, as the reference groups them: the scene is every
    '_'-separated part but the last, the instance (the sounding object) is the last."""
    scene, sep, instance = stem.rpartition("_")
    if not sep or not scene or not instance:
        raise ValueError(f"{where}: stem {stem!r} is not '<scene>_<object>'")
    return scene, instance


def _stem(path: str) -> str:
    # The reference keys a sample by its base name up to the first '.'.
    return os.path.basename(path).split(".")[0]


def load_is3(path) -> dict:
    """Reads IS3's annotation file (`synthetic3240_bbox.json`).

    Args:
      path: the JSON list of {"image", "audio", "gt_box"}; only the base names of "image"
        and "audio" matter (the paths are the authors' own disk).
    Returns:
      stem → {'scene': str, 'instance': str, 'image': image base name (`<stem>.jpg`),
      'audio': audio base name (`<stem>.wav`), 'box': [xmin, ymin, xmax, ymax] floats as
      in the file}, in the file's order.
    Raises:
      ValueError naming the file and the entry (index and stem) for bad JSON, an entry that
      is not an object, a missing key, a bad gt_box, a repeated stem, or a scene with other
      than two instances.
    """
    path = os.fspath(path)
    try:
        with open(path) as f:
            entries = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of entries, got {type(entries).__name__}")
    out: dict = {}
    scenes: dict = {}
    for i, entry in enumerate(entries):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} is not an object: {entry!r}")
        missing = [k for k in _ENTRY_KEYS if k not in entry]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(map(repr, missing))}: {entry!r}")
        for key in ("image", "audio"):
            if not isinstance(entry[key], str) or not os.path.basename(entry[key]):
                raise ValueError(f"{where}: {key!r} must be a file path, got {entry[key]!r}")
        stem = _stem(entry["image"])
        where = f"{where} ({stem})"
        box = check_box(entry["gt_box"], where)
        scene, instance = split_stem(stem, where)
        if stem in out:
            raise ValueError(f"{where}: stem {stem!r} appears twice")
        out[stem] = {
            "scene": scene,
            "instance": instance,
            "image": os.path.basename(entry["image"]),
            "audio": os.path.basename(entry["audio"]),
            "box": box,
        }
        scenes.setdefault(scene, []).append(stem)
    for scene, stems in scenes.items():
        if len(stems) != INSTANCES_PER_SCENE:
            raise ValueError(
                f"{path}: scene {scene!r} has {len(stems)} instances ({', '.join(stems)}); "
                f"IS3 scenes have {INSTANCES_PER_SCENE}"
            )
    return out


def gt_map(box) -> np.ndarray:
    """Ground truth of one instance: its box, each coordinate truncated with int(),
    painted as 1 on rows ymin..ymax-1 and columns xmin..xmax-1.

    Args:
      box: [xmin, ymin, xmax, ymax] pixels of the 224 frame (checked by `check_box`).
    Returns:
      [224, 224] float64 of 0 and 1.
    """
    xmin, ymin, xmax, ymax = (int(v) for v in check_box(box, "gt_map"))
    gt = np.zeros([GT_SIZE, GT_SIZE])
    gt[ymin:ymax, xmin:xmax] = 1
    return gt


def protocol_map(scores) -> np.ndarray:
    """One raw map `[h, w]` (any size; larger = more likely the sound's source, e.g. the
    7 x 7 S / tau) → `[224, 224]` float32 as the reference scores it: bilinear upsampling
    with align_corners=True, then min-max normalised.

    A constant map gives all zeros, so neither rule marks a pixel (IoU 0). The reference
    upsamples it first, and float32 rounding in the interpolation weights makes most
    constants (3.25, 0.1; not -2.0) come out uneven by an ulp, which its min-max then
    stretches to [0, 1]: its result is rounding noise, so we take the constant's.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f"a score map must be one [h, w] map, got shape {scores.shape}")
    if scores.min() == scores.max():
        return np.zeros([GT_SIZE, GT_SIZE], np.float32)
    return protocol.protocol_maps(scores[None])[0]


def _binary(pred, index: int) -> np.ndarray:
    flat = np.asarray(pred).ravel()
    threshold = np.sort(flat)[index]
    # Strictly above: pixels tied with the threshold value are left out, as the reference.
    return (np.asarray(pred) > threshold).astype(np.float64)


def median_binary_map(pred) -> np.ndarray:
    """The reference's main rule: pixels strictly above np.sort(pred)[int(h * w * 0.5)]
    (at most h * w / 2 - 1 of them; fewer with ties).

    Args:
      pred: [h, w] normalised map (224 x 224 in the protocol).
    Returns:
      [h, w] float64 of 0 and 1.
    """
    pred = np.asarray(pred)
    if pred.ndim != 2:
        raise ValueError(f"pred must be [h, w], got shape {pred.shape}")
    return _binary(pred, int(pred.shape[0] * pred.shape[1] * 0.5))


def adaptive_k(gt) -> int:
    """The adaptive rule's k: the number of non-zero ground-truth pixels (the box's area),
    or h * w // 2 for an empty ground truth, as the reference."""
    gt = np.asarray(gt)
    k = int(np.sum(gt != 0))
    return k if k else gt.size // 2


def adaptive_binary_map(pred, k: int) -> np.ndarray:
    """The reference's adaptive rule: pixels strictly above np.sort(pred)[h * w - k], the
    k-th largest value; so k - 1 pixels when values are distinct, fewer with ties.

    Args:
      pred: [h, w] normalised map.
      k: 1..h*w, the box's area (`adaptive_k`).
    Returns:
      [h, w] float64 of 0 and 1.
    """
    pred = np.asarray(pred)
    if pred.ndim != 2:
        raise ValueError(f"pred must be [h, w], got shape {pred.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= pred.size:
        raise ValueError(f"k must be an int in 1..{pred.size}, got {k!r}")
    return _binary(pred, pred.size - int(k))


def instance_iou(inferred, gt) -> float:
    """The cIoU formula on one instance: sum(inferred * gt) / (sum(gt) + sum(inferred *
    (gt == 0))).

    Args:
      inferred: [h, w] binary map; gt: [h, w] from `gt_map` (non-empty).
    """
    inferred = np.asarray(inferred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if inferred.shape != gt.shape or gt.ndim != 2:
        raise ValueError(f"inferred {inferred.shape} and gt {gt.shape} must be one [h, w] shape")
    union = np.sum(gt) + np.sum(inferred * (gt == 0))
    if union == 0:
        raise ValueError("instance_iou: empty ground truth and empty prediction")
    return float(np.sum(inferred * gt) / union)


def score_instance(scores, box) -> tuple[float, float]:
    """(IoU by the median rule, IoU by the adaptive rule) of one raw map `[h, w]` against
    one gt_box."""
    pred = protocol_map(scores)
    gt = gt_map(box)
    return (
        instance_iou(median_binary_map(pred), gt),
        instance_iou(adaptive_binary_map(pred, adaptive_k(gt)), gt),
    )


def thresholds() -> list:
    """The AUC thresholds, the floats 0.05 * i for i = 0..20 (0.05 * 6 is
    0.30000000000000004, so an IoU of exactly 0.3 fails it, as in the reference)."""
    return list(protocol.THRESHOLDS)


def scene_success_curve(scene_ious: Mapping[str, Sequence[float]]) -> list:
    """For each threshold t of `thresholds()`: the fraction of scenes all of whose
    instances have IoU >= t (the mean over scenes of the min over instances of [IoU >= t]).

    Args:
      scene_ious: scene → its instances' IoUs.
    """
    if not scene_ious:
        raise ValueError("scene_success_curve needs at least one scene")
    table = [np.asarray(v, dtype=np.float64) for v in scene_ious.values()]
    if any(v.size == 0 for v in table):
        raise ValueError("every scene needs at least one IoU")
    return [float(np.mean([np.min(v >= t) for v in table])) for t in thresholds()]


def scene_summary(scene_ious: Mapping[str, Sequence[float]]) -> dict:
    """{'iiou': 100 * fraction of scenes all of whose instances have IoU >= 0.5,
    'iauc': 100 * trapezoid area under `scene_success_curve` over `thresholds()`}."""
    curve = scene_success_curve(scene_ious)
    table = [np.asarray(v, dtype=np.float64) for v in scene_ious.values()]
    return {
        "iiou": float(100 * np.mean([np.min(v >= PASS_IOU) for v in table])),
        "iauc": float(100 * np.trapezoid(curve, x=thresholds())),
    }


def instance_summary(ious: Sequence[float]) -> dict:
    """{'ciou': 100 * fraction of instances with IoU >= 0.5, 'auc': 100 * trapezoid area
    under (t, fraction with IoU >= t), t = 0.05 * i, 'mean_ciou': 100 * mean IoU}; the
    LVS summary (`protocol.summarize`) without its count."""
    s = protocol.summarize(ious)
    return {k: s[k] for k in ("ciou", "auc", "mean_ciou")}


class IS3Scores:
    """Accumulates IS3 scores, one instance (stem) at a time.

    `add(stem, scores, box)` scores one raw map against its gt_box; `result()` gives the
    percent metrics; `per_sample()` the per-instance IoUs. With `annotations` (from
    `load_is3`) every stem must be one of them with the same box, and scenes are those of
    the file; without, scenes come from the stems and have two instances each.
    """

    def __init__(self, annotations: Mapping | None = None):
        self.annotations = annotations
        self.expected: dict = {}
        if annotations is not None:
            for stem, a in annotations.items():
                self.expected[a["scene"]] = self.expected.get(a["scene"], 0) + 1
        self.rows: dict = {}  # stem → (scene, IoU median rule, IoU adaptive rule)

    def add(self, stem: str, scores: np.ndarray, box) -> None:
        """Scores one instance.

        Args:
          stem: `<scene>_<object>`, the image's base name without `.jpg`.
          scores: one map `[h, w]` of any size and any value scale where larger means more
            likely the source (e.g. the 7 x 7 S / tau); it is upsampled to 224 x 224 and
            min-max normalised (`protocol_map`), so shifting or positively scaling it
            changes nothing beyond float32 rounding.
          box: the entry's gt_box [xmin, ymin, xmax, ymax] in pixels of the 224 frame.
        """
        if not isinstance(stem, str):
            raise ValueError(f"IS3 stem must be a string, got {stem!r}")
        if stem in self.rows:
            raise ValueError(f"IS3 instance {stem!r} added twice")
        scene, _ = split_stem(stem)
        box = check_box(box, f"IS3 instance {stem!r}")
        if self.annotations is not None:
            if stem not in self.annotations:
                raise ValueError(f"IS3 instance {stem!r} is not in the annotations")
            if box != list(self.annotations[stem]["box"]):
                raise ValueError(
                    f"IS3 instance {stem!r}: box {box} is not the annotated "
                    f"{self.annotations[stem]['box']}"
                )
            scene = self.annotations[stem]["scene"]
        scores = np.asarray(scores)
        if scores.ndim != 2 or scores.size == 0:
            raise ValueError(
                f"IS3 instance {stem!r}: scores must be one [h, w] map, got {scores.shape}"
            )
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"IS3 instance {stem!r}: scores have non-finite values")
        self.rows[stem] = (scene, *score_instance(scores, box))

    def _scenes(self) -> dict:
        scenes: dict = {}
        for stem, (scene, _, _) in self.rows.items():
            scenes.setdefault(scene, []).append(stem)
        for scene, stems in scenes.items():
            want = self.expected.get(scene, INSTANCES_PER_SCENE)
            if len(stems) != want:
                raise ValueError(
                    f"IS3 scene {scene!r} has {len(stems)} of its {want} instances scored "
                    f"({', '.join(stems)})"
                )
        return scenes

    def result(self) -> dict:
        """{'ciou', 'auc', 'mean_ciou', 'ciou_adaptive', 'auc_adaptive', 'iiou', 'iauc',
        'iiou_adaptive', 'iauc_adaptive'} in percent, 'n_instances', 'n_scenes'.

        Raises ValueError when nothing was added or a scene lacks one of its instances.
        """
        if not self.rows:
            raise ValueError("IS3Scores.result: no instance was added")
        scenes = self._scenes()
        out = {}
        for col, suffix in ((1, ""), (2, "_adaptive")):
            ious = [row[col] for row in self.rows.values()]
            by_scene = {s: [self.rows[stem][col] for stem in stems] for s, stems in scenes.items()}
            inst = instance_summary(ious)
            if suffix:
                del inst["mean_ciou"]  # the reference reports the mean of the median rule only
            out.update({k + suffix: v for k, v in inst.items()})
            out.update({k + suffix: v for k, v in scene_summary(by_scene).items()})
        out["n_instances"] = len(self.rows)
        out["n_scenes"] = len(scenes)
        return out

    def per_sample(self) -> dict:
        """stem → {'scene', 'ciou', 'ciou_adaptive'} (IoUs as fractions), in add order."""
        return {
            stem: {"scene": scene, "ciou": a, "ciou_adaptive": b}
            for stem, (scene, a, b) in self.rows.items()
        }


@registry.register("is3")
class TwoSources:
    """Protocol 'is3' of `config.evals` on the scenes with a distractor: two instances
    per scene, the sounding object with the scene's sound and the distractor with its own
    (the audio swap's) sound, each scored against its own box by `IS3Scores`; an
    audio-blind variant gives both the same map. `result()`: variant → 'is3_ciou',
    'is3_auc', 'iiou', 'iauc' (and their '_adaptive' forms, %), 'is3_n_scenes'."""

    wants_swap = True

    def __init__(self, config=None):
        del config
        self.scores: dict = {}

    def update(self, batch, maps) -> None:
        if "objects" not in batch.data:
            return
        for k, (i, r) in enumerate(zip(batch.ids, batch.rows)):
            s = int(batch.data["swap_index"][r])
            if s < 0:
                continue
            objs, sounding = diagnostics.scene_objects(batch.data, r)
            for name, own in maps.maps.items():
                swapped = maps.swapped.get(name, own)
                acc = self.scores.setdefault(name, IS3Scores())
                acc.add(f"{i}_sounding", own[k], (objs[sounding] * GT_SIZE).tolist())
                acc.add(f"{i}_distractor", swapped[k], (objs[s] * GT_SIZE).tolist())

    def result(self) -> dict:
        out = {}
        for name, acc in self.scores.items():
            r = acc.result()
            out[name] = {
                ("is3_" + k if k in ("ciou", "auc", "mean_ciou") else k): v
                for k, v in r.items()
                if not k.startswith("n_")
            }
            out[name]["is3_n_scenes"] = r["n_scenes"]
        return out
