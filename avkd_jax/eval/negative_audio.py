"""The negative-audio protocol (Juanola et al., ICASSP 2025), in numpy.

Every test image is also heard with three negative sounds, silence, white noise and an
off-screen clip (a clip of another class), and a model should highlight nothing for them.
pIA is the fraction of the image area a negative sound's map marks above a threshold; the
area under the curve "fraction of images with pIA <= t", t = 0.05 * i, rewards models
that keep it low (the reference prints it as AOC). docs/protocols/negative_audio.md says
where each rule comes from.

These follow the reference code (xavijuanola/vssl_eval: `eval.py::eval`,
`utils_dir/eval_utils.py`, `datasets/datasets.py`) number for number where it is
defined: maps in the (S + 1) / 2 space of raw cosine similarities S, never min-max
normalised; a negative map upsampled as `cv2.resize(..., INTER_LINEAR)` (half-pixel
centres), the positive one as `F.interpolate(..., align_corners=True)`; a cell counts
when strictly above the threshold, compared in float32; the curve's thresholds are
0.05 * i and its area the trapezoid rule (sklearn.metrics.auc).
"""

from __future__ import annotations

import hashlib
import math
import zlib
from typing import Mapping, Sequence

import numpy as np

from avkd_jax.eval import protocol, registry
from avkd_jax.eval.upsampling import upsample_half_pixel

KINDS = ("silence", "noise", "offscreen")
MAP_SIZE = protocol.GT_SIZE
# eval.py's --threshold (default 0.5, and eval_models.sh passes 0.5): (S + 1) / 2 > 0.5 is S > 0.
PIA_THRESHOLD = 0.5
CALIBRATED = ("max", "max10", "maxq3")
# eval.py::main hard-codes these per-model thresholds (in each model's own map space); their
# derivation is not in the code. max10 is 1.1 * max. They belong to those checkpoints.
REFERENCE_THRESHOLDS = {
    "ezvsl": {"max": 0.6041, "max10": 0.6645, "maxq3": 0.6382},
    "slavc": {"max": 0.5201, "max10": 0.5721, "maxq3": 0.5450},
    "fnac": {"max": 0.5311, "max10": 0.5842, "maxq3": 0.5538},
    "lvs": {"max": 0.5527, "max10": 0.6080, "maxq3": 0.6077},
    "ssltie": {"max": 0.2641, "max10": 0.2906, "maxq3": 0.3338},
    "sslalign": {"max": 0.2660, "max10": 0.2926, "maxq3": 0.3175},
}
# Cosine similarities computed in bf16 can overshoot 1 a little; S / tau overshoots a lot.
_S_TOLERANCE = 0.01
SEP = "__"


# ---------------------------------------------------------------- the negative sounds


def silence(num_samples: int) -> np.ndarray:
    """The silent clip: `np.zeros_like(audio)`, `[num_samples]` float32 zeros."""
    return np.zeros([_count(num_samples, "num_samples")], np.float32)


def noise(num_samples: int, rng) -> np.ndarray:
    """The noise clip: white Gaussian noise N(0, 1) per sample, as `np.random.normal(0, 1,
    len(audio))` with audio in [-1, 1] full-scale units, so its std is full scale and it is
    not clipped (an int16 round trip would clip about a third of the samples; feed it to
    `audio.log_spectrogram` as floats).

    Args:
      num_samples: clip length in samples (the positive clip's length).
      rng: an int seed or a `np.random.Generator`.
    Returns:
      [num_samples] float32.
    """
    n = _count(num_samples, "num_samples")
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        rng = np.random.default_rng(int(rng))
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be an int seed or a numpy Generator, got {rng!r}")
    return rng.normal(0.0, 1.0, n).astype(np.float32)


def image_noise(image_id: str, num_samples: int) -> np.ndarray:
    """`noise` seeded by the crc32 of `image_id`: the same noise clip for an image in
    `--mode=eval` and `pair_maps`, whatever else is evaluated. `[num_samples]` float32."""
    return noise(num_samples, zlib.crc32(image_id.encode()))


def _count(n, field):
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{field} must be a positive int, got {n!r}")
    return int(n)


def _labels(classes, clip_id) -> frozenset:
    if clip_id not in classes:
        raise ValueError(f"classes has no class for clip {clip_id!r}")
    value = classes[clip_id]
    labels = frozenset([value] if isinstance(value, str) else value)
    if not labels or not all(isinstance(c, str) and c for c in labels):
        raise ValueError(f"classes[{clip_id!r}] must be a class name or names, got {value!r}")
    return labels


def _id_stream(seed: int, clip_id: str) -> np.random.Generator:
    """A generator of its own per (seed, id), so a pick does not depend on the order or
    subset of the other ids."""
    digest = hashlib.sha256(clip_id.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng([seed, *words])


def pick_offscreen(ids: Sequence[str], classes: Mapping, seed: int = 0) -> dict:
    """The off-screen clip of every image, by the reference's rule made deterministic.

    The reference drops the image's class(es) from the sorted class list, draws a class
    uniformly, then a clip of it uniformly (`random.choice` twice; IS3 drops the classes of
    both objects of the scene). Here the draws come from a generator seeded by `seed` and
    the image id (sha256), not from a global state, so a pick is the same whatever the
    order or subset of the other ids. A class's clips are the ids of `ids` with that class.

    Args:
      ids: the evaluated clip ids, each once.
      classes: id → its class name, or a collection of names (every one of them is
        excluded, and the clip is in each one's pool).
      seed: a non-negative int; the reference runs ten passes (seeds 1234, 2345, ...,
        9012, 9999) and pools them (`mean_over_passes`).
    Returns:
      image id → off-screen audio id, in the order of `ids`.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    ids = list(ids)
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"ids lists clip {dup!r} more than once")
    labels = {i: _labels(classes, i) for i in ids}
    names = sorted(set().union(*labels.values())) if ids else []
    pools = {c: sorted(i for i in ids if c in labels[i]) for c in names}
    out = {}
    for image_id in ids:
        others = [c for c in names if c not in labels[image_id]]
        if not others:
            raise ValueError(f"no class other than {sorted(labels[image_id])} for {image_id!r}")
        rng = _id_stream(int(seed), image_id)
        pool = pools[others[int(rng.integers(len(others)))]]
        out[image_id] = pool[int(rng.integers(len(pool)))]
    return out


def classes_from_vggss(entries) -> dict:
    """VGG-SS annotation entries (`vggss.json`: {"file", "class", ...}) → {file: class},
    the class of each test clip that `pick_offscreen` needs."""
    out = {}
    for k, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or "file" not in entry or "class" not in entry:
            raise ValueError(f"vggss entry {k} must have 'file' and 'class', got {entry!r}")
        out[entry["file"]] = entry["class"]
    return out


# ---------------------------------------------------------------- the keys of the maps


def pair_key(image_id: str, kind: str, audio_id: str | None = None) -> str:
    """The key of one negative map: `<image id>__silence`, `<image id>__noise`, and
    `<image id>__<audio id>` for the off-screen clip's sound."""
    _check_id(image_id, "image_id")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind != "offscreen":
        if audio_id is not None:
            raise ValueError(f"audio_id is only for kind 'offscreen', got {audio_id!r}")
        return f"{image_id}{SEP}{kind}"
    _check_id(audio_id, "audio_id")
    if audio_id in ("silence", "noise"):
        raise ValueError(f"audio_id {audio_id!r} would read as that negative sound")
    if audio_id == image_id:
        raise ValueError(f"the off-screen clip of {image_id!r} must be another clip")
    return f"{image_id}{SEP}{audio_id}"


def parse_pair_key(key: str, known_ids=None) -> tuple:
    """`pair_key`'s inverse: key → (image_id, kind, audio_id or None).

    Ids may hold '__' themselves (VGGSound ids can start with it), so a key can split in
    more than one place; `known_ids` (the clip ids) then picks the split whose image id
    (and off-screen audio id) are known. A key that does not split in exactly one way
    raises.
    """
    if not isinstance(key, str):
        raise ValueError(f"pair key must be a string, got {key!r}")
    if known_ids is None or isinstance(known_ids, (set, frozenset)):
        known = known_ids
    else:
        known = set(known_ids)
    found = set()
    start = key.find(SEP)
    while start != -1:
        image_id, rest = key[:start], key[start + len(SEP) :]
        if image_id and rest and (known is None or image_id in known):
            if rest in ("silence", "noise"):
                found.add((image_id, rest, None))
            elif rest != image_id and (known is None or rest in known):
                found.add((image_id, "offscreen", rest))
        start = key.find(SEP, start + 1)
    if len(found) != 1:
        how = "no" if not found else "more than one"
        raise ValueError(f"pair key {key!r} splits in {how} way into <image>__<sound>")
    return found.pop()


def _check_id(value, field):
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be a non-empty string, got {value!r}")


# ---------------------------------------------------------------- maps and metrics


def to_unit(scores) -> np.ndarray:
    """Raw cosine similarities S `[..., h, w]` → (S + 1) / 2, float32: the map the reference's
    EZ-VSL / SLAVC / FNAC models return and every threshold here applies to."""
    s = np.asarray(scores, dtype=np.float32)
    return (s + np.float32(1)) / np.float32(2)


def pia(unit_map, threshold) -> float:
    """pIA of one map: the fraction of its cells strictly above `threshold`,
    `(m > t).sum() / m.size`, compared in float32 as the reference's float32 maps are.

    Args:
      unit_map: [224, 224] upsampled map in the (S + 1) / 2 space.
      threshold: a float (or the float32 threshold taken from the positive map).
    Returns:
      pIA in [0, 1] as a Python float.
    """
    m = np.asarray(unit_map, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"pia needs one [H, W] map, got shape {m.shape}")
    return float(np.count_nonzero(m > np.float32(threshold)) / m.size)


def pia_curve(pias: Sequence[float]) -> tuple:
    """The curve: thresholds t = 0.05 * i (i = 0..20) and the fraction of samples with
    pIA <= t (ties count, as the reference's `<=`)."""
    p = np.asarray(pias, dtype=np.float64).ravel()
    if p.size == 0:
        raise ValueError("pia_curve needs at least one pIA")
    thresholds = list(protocol.THRESHOLDS)
    return thresholds, [float(np.sum(p <= t) / p.size) for t in thresholds]


def pia_auc(pias: Sequence[float]) -> float:
    """Trapezoid area under `pia_curve`, in [0, 1] (1 when no map marks a cell)."""
    thresholds, fractions = pia_curve(pias)
    return float(np.trapezoid(fractions, x=thresholds))


def positive_thresholds(positive_unit, gt=None) -> dict:
    """The thresholds the reference takes from the positive map.

    Args:
      positive_unit: [224, 224] positive map in the (S + 1) / 2 space, upsampled with
        corner alignment.
      gt: optional [224, 224] ground truth (`protocol.gt_map`).
    Returns:
      {'thrciou': its median value, np.sort(m.flatten())[int(224 * 224 * 0.5)]} and, with
      `gt`, 'thrciou_adap': np.sort(m.flatten())[224 * 224 - n] where n is the number of
      nonzero gt cells, or 224 * 224 // 2 when there are none (float32 values).
    """
    m = np.asarray(positive_unit, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"positive map must be one [H, W] map, got shape {m.shape}")
    ordered = np.sort(m.flatten())
    out = {"thrciou": ordered[int(m.shape[0] * m.shape[1] * 0.5)]}
    if gt is not None:
        g = np.asarray(gt)
        if g.shape != m.shape:
            raise ValueError(f"gt {g.shape} must have the positive map's shape {m.shape}")
        n = int((g != 0).sum())
        if n == 0:
            n = int(m.shape[0] * m.shape[1]) // 2
        out["thrciou_adap"] = ordered[int(m.shape[0] * m.shape[1]) - n]
    return out


def mean_over_passes(results: Sequence[Mapping]) -> dict:
    """Pools passes as the reference's ten seeds do: with the same images in every pass,
    the pooled pIA means, curve areas and mean peaks are the means of the passes' own;
    counts add. median_* keys become the mean of the passes' medians (not the pooled
    median)."""
    results = list(results)
    if not results:
        raise ValueError("mean_over_passes needs at least one result")
    keys = set(results[0])
    for k, r in enumerate(results):
        if set(r) != keys:
            raise ValueError(f"result {k} has keys {sorted(set(r) ^ keys)} the first lacks or has")
    return {
        key: (
            sum(r[key] for r in results)
            if key.startswith("n_")
            else float(np.mean([r[key] for r in results]))
        )
        for key in results[0]
    }


def _check_scores(scores, what) -> np.ndarray:
    s = np.asarray(scores)
    if s.ndim != 2 or 0 in s.shape:
        raise ValueError(f"{what}: scores must be one [h, w] map, got shape {s.shape}")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise ValueError(f"{what}: scores must be numbers, got dtype {s.dtype}")
    s = s.astype(np.float32)
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{what}: scores has non-finite values")
    lo, hi = float(s.min()), float(s.max())
    if lo < -1 - _S_TOLERANCE or hi > 1 + _S_TOLERANCE:
        raise ValueError(
            f"{what}: scores must be raw cosine similarities S in [-1, 1] (not S / tau), "
            f"got values in [{lo:.4g}, {hi:.4g}]"
        )
    return s


class NegativeAudioScores:
    """pIA and its curve area for the negative sounds, over a test set.

    `add(image_id, kind, scores, audio_id=None)` takes one negative map: `scores` `[h, w]`
    (any size, 7 x 7 from the model) of raw cosine similarities S in [-1, 1], not S / tau
    and not normalised; it is mapped to (S + 1) / 2 and upsampled to 224 as the reference
    does. `audio_id` names the off-screen clip (required for kind 'offscreen').
    `add_positive(image_id, scores, gt=None)` takes the image's own sound's map (same
    space), which the 'thrciou' thresholds need, and its ground truth `[224, 224]`, which
    'thrciou_adap' needs. `result()` gives, for each kind heard (in percent):

      pia_<kind>, aoc_<kind>: at the fixed threshold `threshold` (0.5);
      pia_<kind>_thrciou, aoc_<kind>_thrciou: at the positive map's median (if positives);
      pia_<kind>_thrciou_adap, aoc_<kind>_thrciou_adap: at the positive map's value that
        marks as many cells as the ground truth has (if every positive has `gt`);
      pia_<kind>_<name>, aoc_<kind>_<name>: at each calibrated threshold of `thresholds`
        (names 'max', 'max10', 'maxq3');
      max_heatmap_<kind>, median_max_heatmap_<kind>: mean and median of the maps' peaks
        (in the (S + 1) / 2 space, not percent; as max_heatmap, median_max_heatmap for the
        positives); n_<kind> (and n_positive): counts.

    `per_sample()` gives pair key → {metric: value} per map (pIA in percent, 'peak').
    """

    def __init__(self, thresholds: Mapping | None = None, threshold: float = PIA_THRESHOLD):
        thresholds = dict(thresholds or {})
        for name, value in list(thresholds.items()) + [("threshold", threshold)]:
            if name != "threshold" and name not in CALIBRATED:
                raise ValueError(f"thresholds: unknown name {name!r}; expected {CALIBRATED}")
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not math.isfinite(value)
            ):
                raise ValueError(f"thresholds[{name!r}] must be a finite number, got {value!r}")
        self.threshold = float(threshold)
        self.thresholds = {n: float(thresholds[n]) for n in CALIBRATED if n in thresholds}
        self.negatives: dict = {}  # (image_id, kind) -> (S map [h, w] float32, audio_id)
        self.positives: dict = {}  # image_id -> (S map [h, w] float32, gt or None)

    def add(self, image_id: str, kind: str, scores, audio_id: str | None = None) -> None:
        key = pair_key(image_id, kind, audio_id)
        if (image_id, kind) in self.negatives:
            raise ValueError(f"{key}: the {kind} map of {image_id!r} was added twice")
        self.negatives[(image_id, kind)] = (_check_scores(scores, key), audio_id)

    def add_positive(self, image_id: str, scores, gt=None) -> None:
        _check_id(image_id, "image_id")
        if image_id in self.positives:
            raise ValueError(f"{image_id}: the positive map was added twice")
        if gt is not None:
            gt = np.asarray(gt, dtype=np.float64)
            if gt.shape != (MAP_SIZE, MAP_SIZE) or not np.all(np.isfinite(gt)):
                raise ValueError(f"{image_id}: gt must be a finite [224, 224] map, got {gt.shape}")
        self.positives[image_id] = (_check_scores(scores, f"{image_id} (positive)"), gt)

    def _levels(self) -> dict:
        """image id → {threshold name: value} for the thresholds every map is scored at."""
        with_gt = [i for i, (_, g) in self.positives.items() if g is not None]
        if with_gt and len(with_gt) != len(self.positives):
            lacking = next(i for i, (_, g) in self.positives.items() if g is None)
            raise ValueError(f"{lacking}: positive has no gt while others have one")
        fixed = {"": np.float32(self.threshold)}
        fixed.update({f"_{n}": np.float32(t) for n, t in self.thresholds.items()})
        levels = {}
        for image_id, _ in self.negatives:
            if image_id in levels:
                continue
            own = dict(fixed)
            if self.positives:
                if image_id not in self.positives:
                    raise ValueError(f"{image_id}: negative maps but no positive map")
                s, g = self.positives[image_id]
                pos = protocol.upsample_map(to_unit(s)[None], MAP_SIZE)[0]
                own.update({f"_{n}": t for n, t in positive_thresholds(pos, g).items()})
            levels[image_id] = own
        return levels

    def _scored(self) -> dict:
        """(image_id, kind) → {'pia<suffix>': fraction, 'peak': max of the map}."""
        if not self.negatives:
            raise ValueError("no negative maps were added")
        levels = self._levels()
        out = {}
        for (image_id, kind), (s, _) in self.negatives.items():
            unit = to_unit(s)
            big = upsample_half_pixel(unit, MAP_SIZE)
            row = {f"pia{suffix}": pia(big, t) for suffix, t in levels[image_id].items()}
            row["peak"] = float(unit.max())
            out[(image_id, kind)] = row
        return out

    def result(self) -> dict:
        scored = self._scored()
        out = {}
        for kind in KINDS:
            rows = [r for (_, k), r in scored.items() if k == kind]
            if not rows:
                continue
            out[f"n_{kind}"] = len(rows)
            for name in [n for n in rows[0] if n.startswith("pia")]:
                suffix = name[len("pia") :]
                values = [r[name] for r in rows]
                out[f"pia_{kind}{suffix}"] = float(100 * np.mean(values))
                out[f"aoc_{kind}{suffix}"] = float(100 * pia_auc(values))
            peaks = [r["peak"] for r in rows]
            out[f"max_heatmap_{kind}"] = float(np.mean(peaks))
            out[f"median_max_heatmap_{kind}"] = float(np.median(peaks))
        if self.positives:
            peaks = [float(to_unit(s).max()) for s, _ in self.positives.values()]
            out["n_positive"] = len(peaks)
            out["max_heatmap"] = float(np.mean(peaks))
            out["median_max_heatmap"] = float(np.median(peaks))
        return out

    def per_sample(self) -> dict:
        out = {}
        for (image_id, kind), row in self._scored().items():
            key = pair_key(image_id, kind, self.negatives[(image_id, kind)][1])
            out[key] = {n: (100 * v if n.startswith("pia") else v) for n, v in row.items()}
        return out


@registry.register("negative_audio")
class NegativeAudio:
    """Protocol 'negative_audio' of `config.evals` on scenes that list their objects:
    every image with silence, noise and an off-screen clip's sound (`Maps.negatives`),
    each variant with negatives scored by `NegativeAudioScores` from its S
    (`Maps.similarity`). `result()`: variant → 'pia_<kind>', 'aoc_<kind>' (%, at S > 0)
    and 'pia_<kind>_thrciou', 'aoc_<kind>_thrciou' (at the own sound's median)."""

    wants_swap = False
    wants_negatives = True

    def __init__(self, config=None):
        del config
        self.scores: dict = {}

    def update(self, batch, maps) -> None:
        for name, negatives in maps.negatives.items():
            acc = self.scores.setdefault(name, NegativeAudioScores())
            positive = maps.similarity(name)
            for k, (i, gt) in enumerate(zip(batch.ids, batch.gts)):
                acc.add_positive(i, positive[k], gt)
                for kind in KINDS:
                    other = maps.offscreen_ids[k] if kind == "offscreen" else None
                    if kind != "offscreen" or other is not None:
                        acc.add(i, kind, negatives[kind][k], other)

    def result(self) -> dict:
        keep = tuple(
            f"{a}_{kind}{t}" for a in ("pia", "aoc") for kind in KINDS for t in ("", "_thrciou")
        )
        return {
            name: {k: v for k, v in acc.result().items() if k in keep}
            for name, acc in self.scores.items()
        }
