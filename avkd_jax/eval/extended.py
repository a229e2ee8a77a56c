"""The Extended Flickr-SoundNet / Extended VGG-SS protocol of SLAVC (Mo & Morgado, NeurIPS
2022), in numpy, number for number as stoneMo/SLAVC's `test.py::validate` and
`utils.py::EvaluatorFull` (docs/protocols/extended.md).

Pairs: the positives of `flickr_test.csv` / `vggss_test.csv` with their boxes, and the
negatives of `*_test_plus_silent.csv` (image `video`, sound `audio`, no box). Per pair:

- scores: the audio-visual map S/τ upsampled to 224² (`upsample_bicubic`: torch's bicubic,
  `align_corners=True`), mapped by the fixed bounds [−1/τ, 1/τ] to (x + 1/τ) / (2/τ), in
  float32 (`av_scores`); not normalised per image;
- confidence: `np.sort(scores.ravel())[-n // 4:].mean()`, the float32 mean of the
  12,544 largest of the 50,176 cells (ties cannot change it);
- binary map (`--relative_prediction`, the setting of their README's test command): the
  scores min-max normalised per image (a constant map is left as it is), threshold
  `np.sort(pred.ravel())[int(n * 0.5)]`, the 25,089th smallest value (index 25,088),
  inferred = pred >= threshold: exactly the top 25,088 cells when nothing ties at the
  threshold, every cell tied with it besides (a constant map: all cells). Without
  relative prediction: scores >= 0.5;
- cIoU = Σ(inferred·gt) / (Σgt + Σ(inferred·[gt == 0])), gt as `protocol.gt_map` (equal
  to their `bbox2gtmap`); a negative's is 0 (their code gives 0 too, or 0/0 = NaN
  when nothing is inferred, which no metric reads); area = Σgt; boxes = their `len(bb)`,
  0 for a negative (their `bb == 0` rule).

Metrics (`full_stats`, as `EvaluatorFull.finalize_stats`): per subset ('all', 'visible',
size subsets of the visible pairs by area: small [0, 32²), medium [32², 96²), large
[96², 144²), huge [144², 10⁸)) and cIoU threshold (0.5, 0.75): Precision (at confidence
threshold −1000: every pair passes), AP (thresholds `np.sort(conf)[:-1][::-skip]`,
skip = max(1, N // 200), precision made non-increasing from the right, summed over recall
steps), F1 at the thresholds `sorted(conf)[::max(1, N // 10)]`, AUC of the visible pairs'
cIoU success curve; NaN for an empty subset. The headline numbers (`ExtendedScores.result`)
are AP and max-F1 on 'all' and LocAcc (= Precision) and AUC on 'visible', in percent.

The object-guided variant (`fuse_og_extended`): α·AV + (1 − α)·object on the bounded
scales, α = 0.9 (their README), the object map (mean |layer4| of an ImageNet ResNet18,
also bicubic) mapped by the fixed bounds [0, 2.5].

Not a `config.evals` protocol: the eval loop hands accumulators `update(batch, maps)` with
maps already bilinear and min-max normalised, and positive rows only; this protocol
needs the raw S/τ maps and the negative pairs (`ExtendedScores.add` takes one pair).
"""

from __future__ import annotations

import numpy as np

from avkd_jax.eval import protocol, registry
from avkd_jax.eval.upsampling import upsample_bicubic

MAP_SIZE = protocol.GT_SIZE
TAU = 0.03
ALPHA = 0.9  # their README's and scripts' --alpha (test.py's default is 0.4)
OBJECT_BOUNDS = (0.0, 2.5)
PRED_SIZE = 0.5  # --pred_size: the fraction of cells below the relative threshold
PRED_THR = 0.5  # --pred_thr: the absolute threshold without --relative_prediction
IOU_THRS = (0.5, 0.75)
PRECISION_CONF_THR = -1000  # their "Precision": every pair counts as detected
SUBSETS = ("all", "visible", "small", "medium", "large", "huge")
SIZE_SUBSETS = ("small", "medium", "large", "huge")
MIN_SIZES = {"small": 0, "medium": 32**2, "large": 96**2, "huge": 144**2}
MAX_SIZES = {"small": 32**2, "medium": 96**2, "large": 144**2, "huge": 10000**2}

_F32 = np.float32


# --- scores --------------------------------------------------------------------------


def bounded(x, lo: float, hi: float) -> np.ndarray:
    """Their `min_max_norm(x, lo, hi)` = (x − lo) / (hi − lo) with fixed bounds, in float32
    (hi − lo computed in float64 first, as Python does)."""
    return (np.asarray(x, dtype=_F32) - _F32(lo)) / _F32(hi - lo)


def av_scores(s_over_tau, tau: float = TAU) -> np.ndarray:
    """A raw audio-visual map S/τ (`[h, w]` or `[B, h, w]`, any grid) → its scores on
    224², upsampled bicubically and mapped by the bounds [−1/τ, 1/τ]."""
    return bounded(upsample_bicubic(s_over_tau), -1.0 / tau, 1.0 / tau)


def object_scores(obj) -> np.ndarray:
    """A raw object map (mean over channels of |layer4|, `[h, w]` or `[B, h, w]`) → its
    scores on 224², upsampled bicubically and mapped by the bounds [0, 2.5]."""
    return bounded(upsample_bicubic(obj), *OBJECT_BOUNDS)


def fuse_og_extended(av, obj, alpha: float = ALPHA, tau: float = TAU) -> np.ndarray:
    """Their object-guided scores (AV+OGL): `av_scores(av)·α + object_scores(obj)·(1 − α)`,
    float32, of a raw S/τ map and a raw object map (each upsampled bicubically to 224²
    and mapped by its fixed bounds, [−1/τ, 1/τ] and [0, 2.5]; no per-image
    normalisation before the sum). Score the result with `ExtendedScores.add_scores`.

    α weighs the audio-visual map here, the opposite of EZ-VSL's OG (`fusion.fuse_og`).
    """
    return av_scores(av, tau) * alpha + object_scores(obj) * (1 - alpha)


def _scores_map(scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=_F32)
    if scores.ndim != 2 or 0 in scores.shape:
        raise ValueError(f"scores must be one [h, w] map, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores has NaN or infinite values")
    return scores


def _top_quarter_mean(sorted_flat) -> float:
    return float(sorted_flat[-sorted_flat.size // 4 :].mean())


def confidence(scores) -> float:
    """Their confidence: the float32 mean of the top quarter of the cells,
    `np.sort(scores.ravel())[-n // 4:].mean()` (n // 4 rounded up for n not a multiple
    of 4: `-n // 4` is floor division of −n)."""
    return _top_quarter_mean(np.sort(_scores_map(scores).ravel()))


def _binary_from_sorted(scores, sorted_flat, relative_prediction, pred_size, pred_thr):
    if not relative_prediction:
        return scores >= pred_thr
    if not 0 <= pred_size < 1:
        raise ValueError(f"pred_size must be in [0, 1), got {pred_size}")
    lo, hi = sorted_flat[0], sorted_flat[-1]
    span = hi - lo
    k = int(scores.size * pred_size)
    if span == 0:  # utils.normalize_img leaves a constant map as it is
        return scores >= sorted_flat[k]
    # The k-th of the normalised values is the normalised k-th value (the map is monotone).
    return (scores - lo) / span >= (sorted_flat[k : k + 1] - lo) / span


def binary_map(scores, relative_prediction: bool = True, pred_size=PRED_SIZE, pred_thr=PRED_THR):
    """Their binary prediction of a scores map `[h, w]`, bool.

    relative: pred = (scores − min) / (max − min) (a constant map unchanged), inferred =
    pred >= np.sort(pred.ravel())[int(n * pred_size)]: at least n − int(n·pred_size)
    cells, more when cells tie at the threshold. Absolute: scores >= pred_thr.
    """
    scores = _scores_map(scores)
    flat = np.sort(scores.ravel())
    return _binary_from_sorted(scores, flat, relative_prediction, pred_size, pred_thr)


def pair_ciou(inferred, gt) -> float:
    """Σ(inferred·gt) / (Σgt + Σ(inferred·[gt == 0])) of a binary map and a ground-truth
    map of the same shape; gt None (a negative): 0. A positive with an empty gt and
    nothing inferred gives their 0/0 = NaN."""
    inferred = np.asarray(inferred, dtype=bool)
    if gt is None:
        return 0.0
    gt = np.asarray(gt, dtype=np.float64)
    if gt.shape != inferred.shape:
        raise ValueError(f"gt {gt.shape} and the prediction {inferred.shape} differ in shape")
    hit = float(gt[inferred].sum())
    denominator = float(gt.sum()) + float(np.count_nonzero(inferred & (gt == 0)))
    return hit / denominator if denominator else float("nan")


def score_pair(scores, gt, relative_prediction=True, pred_size=PRED_SIZE, pred_thr=PRED_THR):
    """One pair's (cIoU, confidence) from its 224² scores (one sort for both)."""
    scores = _scores_map(scores)
    flat = np.sort(scores.ravel())
    inferred = _binary_from_sorted(scores, flat, relative_prediction, pred_size, pred_thr)
    return pair_ciou(inferred, gt), _top_quarter_mean(flat)


# --- EvaluatorFull's metrics ---------------------------------------------------------


def _curve(bb, ciou, conf, thresholds, iou_thr):
    """Their calc_precision_recall at each threshold, vectorised: a pair is detected when
    conf >= threshold; a detected positive is a true positive when cIoU >= iou_thr, else
    a false positive; a detected negative (bb == 0) a false positive; an undetected
    positive a false negative. Precision / recall are 1 where their denominator is 0."""
    positive = bb != 0
    hit = positive & (ciou >= iou_thr)  # NaN cIoU: a miss
    order = np.argsort(conf, kind="stable")
    below_hit = np.concatenate([[0], np.cumsum(hit[order])])
    below_pos = np.concatenate([[0], np.cumsum(positive[order])])
    start = np.searchsorted(conf[order], np.asarray(thresholds, dtype=np.float64), side="left")
    detected = len(conf) - start
    tp = hit.sum() - below_hit[start]
    fp = detected - tp
    fn = below_pos[start]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp == 0, 1.0, tp / (tp + fp))
        recall = np.where(tp + fn == 0, 1.0, tp / (tp + fn))
    return precision, recall


def average_precision(bb, ciou, conf, iou_thr=0.5) -> float:
    """Their calc_ap: thresholds np.sort(conf)[:-1][::-skip] (from the second largest
    down, skip = max(1, N // 200)), precision replaced by its maximum over the thresholds
    that follow (lower ones), Σ precision_max[i]·(recall[i+1] − recall[i]), summed in order
    (Python's sum before 3.12). 0 for N < 3."""
    bb, ciou, conf = _lists(bb, ciou, conf)
    skip = max(1, len(conf) // 200)
    thresholds = np.sort(conf)[:-1][::-skip]
    precision, recall = _curve(bb, ciou, conf, thresholds, iou_thr)
    if len(precision) == 0:
        return 0.0
    precision_max = np.maximum.accumulate(precision[::-1])[::-1]
    ap = 0.0
    for term in (precision_max[:-1] * (recall[1:] - recall[:-1])).tolist():
        ap += term
    return ap


def f1_scores(bb, ciou, conf, iou_thr=0.5) -> list:
    """Their F1 list: 2·r·p / (r + p) (0 where r + p = 0) at the thresholds
    sorted(conf)[::max(1, N // 10)], ascending (about 10 of them)."""
    bb, ciou, conf = _lists(bb, ciou, conf)
    thresholds = np.sort(conf)[:: max(1, len(conf) // 10)]
    p, r = _curve(bb, ciou, conf, thresholds, iou_thr)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(r + p > 0, 2 * r * p / (r + p), 0.0)
    return f1.tolist()


def precision_at(bb, ciou, conf, conf_thr=PRECISION_CONF_THR, iou_thr=0.5) -> float:
    """Their precision at one confidence threshold (at −1000 on the visible pairs: the
    fraction with cIoU >= iou_thr, LocAcc)."""
    bb, ciou, conf = _lists(bb, ciou, conf)
    return float(_curve(bb, ciou, conf, [conf_thr], iou_thr)[0][0])


def visible_auc(bb, ciou) -> float:
    """Their cal_auc: the trapezoid area of the success curve (t = 0.05·i, i = 0..20) of
    the visible pairs' cIoU (`protocol.success_curve`); NaN without visible pairs."""
    bb, ciou = np.asarray(bb), np.asarray(ciou, dtype=np.float64)
    visible = ciou[bb > 0]
    if visible.size == 0:
        return float("nan")
    thresholds, fractions = protocol.success_curve(visible)
    return float(np.trapezoid(fractions, x=thresholds))


def _lists(bb, ciou, conf):
    bb = np.asarray(bb, dtype=np.int64)
    ciou = np.asarray(ciou, dtype=np.float64)
    conf = np.asarray(conf, dtype=np.float64)
    if not bb.shape == ciou.shape == conf.shape or bb.ndim != 1:
        raise ValueError(f"bb {bb.shape}, ciou {ciou.shape}, conf {conf.shape} must be [N] each")
    return bb, ciou, conf


def subset_rows(subset: str, area, bb) -> np.ndarray:
    """Their filter_subset: the indices of 'all' (every pair), 'visible' (bb > 0) or a
    size subset (min <= area < max, visible only)."""
    area, bb = np.asarray(area, dtype=np.float64), np.asarray(bb)
    if subset == "all":
        keep = bb >= 0
    elif subset == "visible":
        keep = bb > 0
    elif subset in MIN_SIZES:
        keep = (MIN_SIZES[subset] <= area) & (area < MAX_SIZES[subset]) & (bb > 0)
    else:
        raise ValueError(f"unknown subset {subset!r}; known: {', '.join(SUBSETS)}")
    return np.flatnonzero(keep)


def full_stats(bb, area, ciou, conf, iou_thrs=IOU_THRS) -> dict:
    """EvaluatorFull.finalize_stats: for each cIoU threshold and subset ('all', 'visible',
    small, medium, large, huge), keys 'Precision-<subset>@<50|75>', 'AP-…', 'AUC-…' and
    'F1-…' (their list of F1 values, which they print as a string of percentages); every
    value NaN for an empty subset. Fractions, not percent."""
    bb, ciou, conf = _lists(bb, ciou, conf)
    area = np.asarray(area, dtype=np.float64)
    out = {}
    for iou_thr in iou_thrs:
        for subset in SUBSETS:
            name = f"{subset}@{int(iou_thr * 100)}"
            rows = subset_rows(subset, area, bb)
            if len(rows) == 0:
                p = ap = auc = f1 = float("nan")
            else:
                b, c, k = bb[rows], ciou[rows], conf[rows]
                p = precision_at(b, c, k, PRECISION_CONF_THR, iou_thr)
                ap = average_precision(b, c, k, iou_thr)
                auc = visible_auc(b, c)
                f1 = f1_scores(b, c, k, iou_thr)
            out[f"Precision-{name}"] = p
            out[f"F1-{name}"] = f1
            out[f"AP-{name}"] = ap
            out[f"AUC-{name}"] = auc
    return out


def headline(stats: dict, iou_thr=0.5) -> dict:
    """`full_stats` → percent: 'ap' (AP on 'all'), 'max_f1' (the largest F1 on 'all'),
    'loc_acc' (Precision on 'visible'), 'auc' (AUC on 'visible'), and per size subset
    'ap_<s>', 'max_f1_<s>', 'loc_acc_<s>', 'auc_<s>' (NaN when empty)."""
    tag = int(iou_thr * 100)

    def pct(key):
        return 100 * float(stats[key])

    def max_f1(subset):
        f1 = stats[f"F1-{subset}@{tag}"]
        return float("nan") if np.isscalar(f1) else 100 * max(f1)

    out = {
        "ap": pct(f"AP-all@{tag}"),
        "max_f1": max_f1("all"),
        "loc_acc": pct(f"Precision-visible@{tag}"),
        "auc": pct(f"AUC-visible@{tag}"),
    }
    for s in SIZE_SUBSETS:
        out[f"ap_{s}"] = pct(f"AP-{s}@{tag}")
        out[f"max_f1_{s}"] = max_f1(s)
        out[f"loc_acc_{s}"] = pct(f"Precision-{s}@{tag}")
        out[f"auc_{s}"] = pct(f"AUC-{s}@{tag}")
    return out


class ExtendedScores:
    """The pairs of an Extended Flickr-SoundNet / VGG-SS evaluation, scored one at a time.

    Args:
      tau: the τ of the maps passed to `add` (their bounds are ±1/τ).
      relative_prediction: their `--relative_prediction` (the README's setting): the binary
        map is the top half of the per-image min-max normalised scores; False: scores >=
        `pred_thr`.
      pred_size, pred_thr: their `--pred_size` / `--pred_thr` (0.5 both).
    """

    def __init__(self, tau=TAU, relative_prediction=True, pred_size=PRED_SIZE, pred_thr=PRED_THR):
        if not tau > 0:
            raise ValueError(f"tau must be positive, got {tau}")
        self.tau, self.relative_prediction = tau, relative_prediction
        self.pred_size, self.pred_thr = pred_size, pred_thr
        self.keys: list = []
        self._index: dict = {}
        self.ciou: list = []
        self.conf: list = []
        self.area: list = []
        self.bb: list = []

    def __len__(self):
        return len(self.keys)

    def add(self, key: str, scores, gt, n_boxes: int) -> None:
        """One pair from its raw map S/τ `[h, w]` (any grid; upsampled bicubically unless
        already 224², then mapped by [−1/τ, 1/τ]).

        Args:
          key: the pair's unique name (a positive and a negative of the same image differ).
          gt: the positive's `[224, 224]` ground truth (`protocol.gt_map`); None: a negative.
          n_boxes: the positive's number of boxes (their `len(bb)`: annotators' boxes on
            Flickr, objects on VGG-SS), >= 1; 0 for a negative.
        """
        scores = _scores_map(scores)
        self.add_scores(key, av_scores(scores, self.tau), gt, n_boxes)

    def add_scores(self, key: str, scores, gt, n_boxes: int) -> None:
        """One pair from scores already on their bounded scale, `[224, 224]`
        (`av_scores`, `object_scores`, `fuse_og_extended`); the rest as `add`."""
        key = str(key)
        if key in self._index:
            raise ValueError(f"pair {key!r} added twice")
        if isinstance(n_boxes, bool) or int(n_boxes) != n_boxes or n_boxes < 0:
            raise ValueError(f"pair {key!r}: n_boxes must be a count >= 0, got {n_boxes!r}")
        n_boxes = int(n_boxes)
        if (gt is None) != (n_boxes == 0):
            raise ValueError(
                f"pair {key!r}: a negative has gt None and n_boxes 0, a positive a gt map and "
                f"n_boxes >= 1; got gt {'None' if gt is None else 'a map'} and n_boxes {n_boxes}"
            )
        scores = _scores_map(scores)
        if scores.shape != (MAP_SIZE, MAP_SIZE):
            raise ValueError(f"pair {key!r}: scores must be 224 x 224, got {scores.shape}")
        if gt is not None:
            gt = np.asarray(gt, dtype=np.float64)
            if gt.shape != (MAP_SIZE, MAP_SIZE):
                raise ValueError(f"pair {key!r}: gt must be 224 x 224, got {gt.shape}")
        ciou, conf = score_pair(scores, gt, self.relative_prediction, self.pred_size, self.pred_thr)
        self._index[key] = len(self.keys)
        self.keys.append(key)
        self.ciou.append(ciou)
        self.conf.append(conf)
        self.area.append(0.0 if gt is None else float(gt.sum()))
        self.bb.append(n_boxes)

    def full_stats(self, iou_thrs=IOU_THRS) -> dict:
        """`full_stats` of the pairs added (their finalize_stats; fractions)."""
        if not self.keys:
            raise ValueError("no pairs added")
        return full_stats(self.bb, self.area, self.ciou, self.conf, iou_thrs)

    def result(self, iou_thr=0.5) -> dict:
        """The metrics in percent at cIoU threshold `iou_thr`: 'ap', 'max_f1' (on every
        pair), 'loc_acc', 'auc' (on the positives), the size subsets' `<metric>_<subset>`
        (`headline`), 'n_pos', 'n_neg'."""
        out = headline(self.full_stats((iou_thr,)), iou_thr)
        n_pos = sum(b > 0 for b in self.bb)
        out.update(n_pos=n_pos, n_neg=len(self.bb) - n_pos)
        return out

    def per_sample(self) -> dict:
        """key → {'ciou', 'confidence'} of every pair added, in the order added."""
        return {k: {"ciou": c, "confidence": f} for k, c, f in zip(self.keys, self.ciou, self.conf)}


# The keys an evaluation's summary gets from protocol 'extended' (prefixed: 'auc' is LVS's).
LOOP_KEYS = ("ap", "max_f1", "loc_acc", "auc")


@registry.register("extended")
class Extended:
    """Protocol 'extended' of `config.evals` on scenes that list their objects: each
    image with its own sound (a positive) and with an off-screen clip's sound (a negative,
    `Maps.offscreen_ids`), every variant with negatives scored by `ExtendedScores` from
    its S/τ (`Maps.similarity` / config.tau), and OG-AVC as their object-guided variant
    (`fuse_og_extended` of the student's S/τ and the object map, α = 0.9, whatever
    `config.og_alpha` is). `result()`: variant → 'ext_ap', 'ext_max_f1', 'ext_loc_acc',
    'ext_auc' (%), 'ext_n_neg'."""

    wants_swap = False
    wants_negatives = True

    def __init__(self, config=None):
        self.tau = config.tau if config is not None else TAU
        self.scores: dict = {}

    def update(self, batch, maps) -> None:
        for name, negatives in maps.negatives.items():
            positive = maps.similarity(name)
            self._pairs(name, batch, maps, positive / self.tau, negatives["offscreen"] / self.tau)
        if maps.guided and maps.guided[1] in maps.negatives:
            guided, student = maps.guided
            pos = maps.similarity(student) / self.tau
            neg = maps.negatives[student]["offscreen"] / self.tau
            self._pairs(guided, batch, maps, pos, neg, maps.object_grid)

    def _pairs(self, name, batch, maps, positive, offscreen, obj=None) -> None:
        """Each row's positive and (where it has one) off-screen pair, S/τ `[n, h, w]`;
        with `obj` `[n, h', w']` fused as their object-guided variant."""
        acc = self.scores.setdefault(name, ExtendedScores(self.tau))
        for k, (i, r, gt) in enumerate(zip(batch.ids, batch.rows, batch.gts)):
            pairs = [(i, positive[k], gt, int(batch.data["num_boxes"][r]))]
            if maps.offscreen_ids[k] is not None:
                pairs.append((f"{i}__{maps.offscreen_ids[k]}", offscreen[k], None, 0))
            for key, s_over_tau, g, n in pairs:
                if obj is None:
                    acc.add(key, s_over_tau, g, n)
                else:
                    acc.add_scores(key, fuse_og_extended(s_over_tau, obj[k], tau=self.tau), g, n)

    def result(self) -> dict:
        out = {}
        for name, acc in self.scores.items():
            r = acc.result()
            out[name] = {f"ext_{k}": r[k] for k in LOOP_KEYS}
            out[name]["ext_n_neg"] = r["n_neg"]
        return out
