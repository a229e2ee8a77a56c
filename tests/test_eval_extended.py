"""The Extended Flickr-SoundNet / VGG-SS protocol (SLAVC; avkd_jax/eval/extended.py, docs/protocols/extended.md):
torch's bicubic upsampling, the per-pair scores, and the metrics against a loop-based
transcription of stoneMo/SLAVC's `test.py::validate` and `utils.py::EvaluatorFull`;
hand-worked cases; with `<repo>/../shared/metadata`, Extended VGG-SS's 10,316 pairs."""

import csv
import json
import math
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.paths import REPO

from avkd_jax.eval import extended, protocol

META = REPO.parent / "shared" / "metadata"
N = 224 * 224

try:  # their cal_auc's sklearn.metrics.auc is np.trapezoid(y, x) for increasing x
    from sklearn.metrics import auc as sklearn_auc
except ImportError:  # pragma: no cover

    def sklearn_auc(x, y):
        return float(np.trapezoid(y, x))


# --- a transcription of the reference (SLAVC utils.py / test.py / datasets.py) -----------
# Loops and all, as theirs; without the result files, the distributed gather and the F1
# string formatting ('F1-…' is kept as the list of floats they format).


class EvaluatorFull:
    def __init__(self, iou_thrs=(0.5, 0.75)):
        self.iou_thrs = iou_thrs
        self.min_sizes = {"small": 0, "medium": 32**2, "large": 96**2, "huge": 144**2}
        self.max_sizes = {"small": 32**2, "medium": 96**2, "large": 144**2, "huge": 10000**2}
        self.ciou_list, self.area_list, self.confidence_list = [], [], []
        self.name_list, self.bb_list = [], []

    @staticmethod
    def calc_precision_recall(bb_list, ciou_list, confidence_list, confidence_thr, ciou_thr=0.5):
        true_pos, false_pos, false_neg = 0, 0, 0
        for bb, ciou, confidence in zip(bb_list, ciou_list, confidence_list):
            if bb == 0:
                if confidence >= confidence_thr:
                    false_pos += 1
            else:
                if confidence >= confidence_thr:
                    if ciou >= ciou_thr:
                        true_pos += 1
                    else:
                        false_pos += 1
                else:
                    false_neg += 1
        precision = 1.0 if true_pos + false_pos == 0 else true_pos / (true_pos + false_pos)
        recall = 1.0 if true_pos + false_neg == 0 else true_pos / (true_pos + false_neg)
        return precision, recall

    def calc_ap(self, bb_list_full, ciou_list_full, confidence_list_full, iou_thr=0.5):
        precision, recall, skip_thr = [], [], max(1, len(ciou_list_full) // 200)
        for thr in np.sort(np.array(confidence_list_full))[:-1][::-skip_thr]:
            p, r = self.calc_precision_recall(
                bb_list_full, ciou_list_full, confidence_list_full, thr, iou_thr
            )
            precision.append(p)
            recall.append(r)
        precision_max = [np.max(precision[i:]) for i in range(len(precision))]
        ap = sum(
            [precision_max[i] * (recall[i + 1] - recall[i]) for i in range(len(precision_max) - 1)]
        )
        return ap

    def cal_auc(self, bb_list, ciou_list):
        ss = [i for i, bb in enumerate(bb_list) if bb > 0]
        ciou = [ciou_list[i] for i in ss]
        with np.errstate(divide="ignore", invalid="ignore"):
            cious = [np.sum(np.array(ciou) >= 0.05 * i) / len(ciou) for i in range(21)]
        thr = [0.05 * i for i in range(21)]
        return sklearn_auc(thr, cious)

    def filter_subset(self, subset, name_list, area_list, bb_list, ciou_list, conf_list):
        if subset == "visible":
            ss = [i for i, bb in enumerate(bb_list) if bb > 0]
        elif subset == "non-visible/non-audible":
            ss = [i for i, bb in enumerate(bb_list) if bb == 0]
        elif subset == "all":
            ss = [i for i, bb in enumerate(bb_list) if bb >= 0]
        else:
            ss = [
                i
                for i, sz in enumerate(area_list)
                if self.min_sizes[subset] <= sz < self.max_sizes[subset] and bb_list[i] > 0
            ]
        if len(ss) == 0:
            return [], [], [], [], []
        pick = lambda xs: [xs[i] for i in ss]
        return (
            pick(name_list),
            pick(area_list),
            pick(bb_list),
            pick(ciou_list),
            pick(conf_list),
        )

    def finalize_stats(self):
        metrics = {}
        for iou_thr in self.iou_thrs:
            for subset in ["all", "visible", "small", "medium", "large", "huge"]:
                _, _, bb_list, ciou_list, conf_list = self.filter_subset(
                    subset,
                    self.name_list,
                    self.area_list,
                    self.bb_list,
                    self.ciou_list,
                    self.confidence_list,
                )
                subset_name = f"{subset}@{int(iou_thr * 100)}"
                if len(ciou_list) == 0:
                    p, r, ap, f1, auc = np.nan, np.nan, np.nan, np.nan, np.nan
                else:
                    p, r = self.calc_precision_recall(  # noqa: RUF059 (theirs)
                        bb_list, ciou_list, conf_list, -1000, iou_thr
                    )
                    ap = self.calc_ap(bb_list, ciou_list, conf_list, iou_thr)
                    auc = self.cal_auc(bb_list, ciou_list)
                    conf_thr = list(sorted(conf_list))[:: max(1, len(conf_list) // 10)]  # noqa: C413
                    pr = [
                        self.calc_precision_recall(bb_list, ciou_list, conf_list, thr, iou_thr)
                        for thr in conf_thr
                    ]
                    f1 = [2 * r * p / (r + p) if r + p > 0 else 0.0 for p, r in pr]
                metrics[f"Precision-{subset_name}"] = p
                metrics[f"F1-{subset_name}"] = f1
                metrics[f"AP-{subset_name}"] = ap
                metrics[f"AUC-{subset_name}"] = auc
        return metrics

    def update(self, bb, gt, conf, pred, pred_thr, name):
        infer = np.zeros((224, 224))
        infer[pred >= pred_thr] = 1
        with np.errstate(divide="ignore", invalid="ignore"):
            ciou = np.sum(infer * gt) / (np.sum(gt) + np.sum(infer * (gt == 0)))
        area = gt.sum()
        self.confidence_list.append(conf)
        self.ciou_list.append(ciou)
        self.area_list.append(area)
        self.name_list.append(name)
        self.bb_list.append(len(bb))


def normalize_img(value, vmax=None, vmin=None):
    vmin = value.min() if vmin is None else vmin
    vmax = value.max() if vmax is None else vmax
    if not (vmax - vmin) == 0:  # noqa: SIM201 (theirs)
        value = (value - vmin) / (vmax - vmin)
    return value


def bbox2gtmap(bboxes, format="flickr"):
    gt_map = np.zeros([224, 224])
    for xmin, ymin, xmax, ymax in bboxes:
        temp = np.zeros([224, 224])
        temp[ymin:ymax, xmin:xmax] = 1
        gt_map += temp
    if format == "flickr":
        gt_map = gt_map / 2
        gt_map[gt_map > 1] = 1
    elif format == "vggss":
        gt_map[gt_map > 0] = 1
    return gt_map


def their_boxes(boxes, fmt):
    """datasets.py load_all_bboxes: Flickr pixel coordinates → int(224 * int(c) / 256);
    VGG-SS normalised → (clip(box, 0, 1) * 224).astype(int)."""
    if fmt == "flickr":
        return [[int(224 * int(c) / 256) for c in box] for box in boxes]
    return [(np.clip(np.array(box), 0, 1) * 224).astype(int) for box in boxes]


def torch_bicubic(maps):
    x = torch.from_numpy(np.asarray(maps, np.float32))[:, None]
    return F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=True)[:, 0].numpy()


def their_validate(raw_av, raw_obj, gts, boxes, tau=0.03, alpha=0.9, relative=True):
    """test.py::validate for one batch: the AV, object and AV+object evaluators updated."""
    evaluators = [EvaluatorFull() for _ in range(3)]
    heatmap_av, heatmap_obj = torch_bicubic(raw_av), torch_bicubic(raw_obj)
    av_min, av_max = -1.0 / tau, 1.0 / tau
    obj_min, obj_max = 0.0, 2.5
    min_max_norm = lambda x, xmin, xmax: (x - xmin) / (xmax - xmin)
    for i in range(len(raw_av)):
        n = heatmap_av[i].size
        scores_av = min_max_norm(heatmap_av[i], av_min, av_max)
        scores_obj = min_max_norm(heatmap_obj[i], obj_min, obj_max)
        scores_av_obj = scores_av * alpha + scores_obj * (1 - alpha)
        for ev, scores in zip(evaluators, (scores_av, scores_obj, scores_av_obj)):
            conf = np.sort(scores.flatten())[-n // 4 :].mean()
            if relative:
                pred = normalize_img(scores)
                thr = np.sort(pred.flatten())[int(n * 0.5)]
            else:
                pred, thr = scores, 0.5
            gt = np.zeros([224, 224]) if gts[i] is None else gts[i]
            ev.update(boxes[i], gt, conf, pred, thr, f"pair{i}")
    return evaluators


def assert_same_stats(ours, theirs):
    """Every key of theirs equal (both NaN, or equal; AP to 1e-12: Python >= 3.12 sums
    their AP terms with compensation)."""
    assert set(ours) == set(theirs)
    for key, want in theirs.items():
        got = ours[key]
        if isinstance(want, list):
            assert isinstance(got, list) and got == [float(w) for w in want], key
        elif math.isnan(want):
            assert math.isnan(got), key
        elif key.startswith("AP-") and sys.version_info >= (3, 12):
            assert got == pytest.approx(float(want), abs=1e-12), key
        else:
            assert got == float(want), key


# --- bicubic upsampling ------------------------------------------------------------------


def torch_has_fma_kernels():
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


@pytest.mark.parametrize(
    "h,w", [(7, 7), (14, 14), (1, 1), (1, 7), (2, 3), (5, 9), (50, 31), (300, 100)]
)
def test_bicubic_equals_torch(h, w):
    rng = np.random.default_rng(h * 1000 + w)
    maps = (rng.normal(size=(6, h, w)) * rng.uniform(0.01, 40)).astype(np.float32)
    want = torch_bicubic(maps)
    got = extended.upsample_bicubic(maps)
    assert got.dtype == np.float32 and got.shape == (6, 224, 224)
    # float32 rounding: a few units in the last place of the largest value at most ...
    np.testing.assert_allclose(got, want, rtol=0, atol=4 * np.spacing(np.abs(want).max()))
    # ... and bit for bit against the x86 builds (their kernels use fused multiply-adds).
    if torch_has_fma_kernels():
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(extended.upsample_bicubic(maps[2]), got[2])  # [h, w] too


def test_bicubic_of_a_224_map_is_the_map_and_of_a_constant_the_constant():
    m = np.random.default_rng(0).normal(size=(224, 224)).astype(np.float32)
    out = extended.upsample_bicubic(m)
    np.testing.assert_array_equal(out, m)
    assert out is not m
    np.testing.assert_array_equal(torch_bicubic(m[None])[0], m)
    # The float32 cubic weights sum to 1 only to rounding: a constant comes back within a
    # few units in the last place (torch's too).
    const = np.full((1, 7, 7), 3.25, np.float32)
    c = extended.upsample_bicubic(const)
    np.testing.assert_allclose(c, 3.25, rtol=0, atol=16 * np.spacing(np.float32(3.25)))
    np.testing.assert_allclose(
        torch_bicubic(const), 3.25, rtol=0, atol=16 * np.spacing(np.float32(3.25))
    )
    # Corner alignment: the corners are the input's corners.
    r = np.random.default_rng(1).normal(size=(7, 7)).astype(np.float32)
    u = extended.upsample_bicubic(r)
    assert [u[0, 0], u[0, -1], u[-1, 0], u[-1, -1]] == [r[0, 0], r[0, -1], r[-1, 0], r[-1, -1]]


def test_bicubic_rejects_bad_shapes():
    for bad in (np.zeros(7), np.zeros((2, 2, 3, 3)), np.zeros((0, 7))):
        with pytest.raises(ValueError, match="maps must be"):
            extended.upsample_bicubic(bad)


# --- scores, confidence, binary map ------------------------------------------------------


def test_bounded_scores_and_the_object_guided_fusion_equal_theirs():
    rng = np.random.default_rng(2)
    raw_av = rng.uniform(-1 / 0.03, 1 / 0.03, size=(4, 7, 7)).astype(np.float32)
    raw_obj = rng.uniform(0, 3, size=(4, 7, 7)).astype(np.float32)
    av = torch_bicubic(raw_av)
    obj = torch_bicubic(raw_obj)
    want_av = (av - -1.0 / 0.03) / (1.0 / 0.03 - -1.0 / 0.03)
    want_obj = (obj - 0.0) / (2.5 - 0.0)
    want = want_av * 0.9 + want_obj * (1 - 0.9)
    assert want.dtype == np.float32
    tol = {"rtol": 0, "atol": 1e-6}  # bit for bit where the bicubic is
    exact = torch_has_fma_kernels()
    check = (
        np.testing.assert_array_equal
        if exact
        else (lambda a, b: np.testing.assert_allclose(a, b, **tol))
    )
    check(extended.av_scores(raw_av), want_av)
    check(extended.object_scores(raw_obj), want_obj)
    check(extended.fuse_og_extended(raw_av, raw_obj), want)
    check(extended.fuse_og_extended(raw_av[1], raw_obj[1], alpha=0.9, tau=0.03), want[1])
    # α weighs the audio-visual map: α = 1 is the AV scores alone.
    check(extended.fuse_og_extended(raw_av, raw_obj, alpha=1.0), want_av)


def test_confidence_is_the_mean_of_the_top_quarter():
    m = np.zeros((224, 224), np.float32)
    flat = m.reshape(-1)
    flat[: N // 4] = 1  # exactly the top quarter (12,544 cells) at 1
    assert extended.confidence(m) == 1.0
    flat[N // 4 - 1] = 0  # one cell fewer: 12,543 of the 12,544 are 1
    assert extended.confidence(m) == float(np.float32(12543) / np.float32(12544))
    flat[:] = 0
    flat[: N // 4 + 100] = 0.25  # more cells than a quarter at the top value: still 0.25
    assert extended.confidence(m) == 0.25
    # Unsorted values: the float32 mean of the sorted top quarter, as theirs.
    r = np.random.default_rng(3).uniform(size=(224, 224)).astype(np.float32)
    want = np.sort(r.flatten())[-N // 4 :].mean()
    assert extended.confidence(r) == float(want) and want.dtype == np.float32
    # n not a multiple of 4: -n // 4 rounds the count up (7 of 25).
    s = np.arange(25, dtype=np.float32).reshape(5, 5)
    assert extended.confidence(s) == float(np.mean(np.arange(18, 25, dtype=np.float32)))


def test_binary_map_is_the_top_half_with_ties_at_the_threshold():
    rng = np.random.default_rng(4)
    distinct = rng.permutation(N).astype(np.float32).reshape(224, 224)
    b = extended.binary_map(distinct)
    assert b.sum() == N // 2 and distinct[b].min() == N // 2  # the 25,088 largest
    # 20,000 cells at 0, 10,000 at 0.5, the rest at 1: index 25,088 falls in the 0.5 block,
    # so every cell at 0.5 or 1 is inferred (30,176 cells).
    tied = np.zeros(N, np.float32)
    tied[20000:30000] = 0.5
    tied[30000:] = 1
    tied = rng.permutation(tied).reshape(224, 224)
    assert extended.binary_map(tied).sum() == N - 20000
    # Ties just below the threshold are left out: 25,088 cells at 0 (indices 0..25,087 of
    # the sorted map), the rest distinct: the threshold is 1, the 25,088 others inferred.
    below = np.zeros(N, np.float32)
    below[25088:] = np.arange(1, N - 25088 + 1)
    assert extended.binary_map(below.reshape(224, 224)).sum() == N // 2
    # One more 0 and the threshold is the minimum itself: every cell is inferred.
    below[25088] = 0
    assert extended.binary_map(below.reshape(224, 224)).all()
    # The threshold is on the per-image normalised scores: a positive affine change of the
    # scores changes nothing.
    np.testing.assert_array_equal(extended.binary_map(tied * 0.1 + 0.3), extended.binary_map(tied))
    # Absolute prediction: scores >= 0.5.
    np.testing.assert_array_equal(extended.binary_map(tied, relative_prediction=False), tied >= 0.5)
    with pytest.raises(ValueError, match="pred_size"):
        extended.binary_map(tied, pred_size=1.0)


def test_a_constant_map_marks_every_cell_relatively_and_none_absolutely_below_half():
    const = np.full((224, 224), 0.3, np.float32)
    assert extended.binary_map(const).all()  # normalize_img leaves it: every cell >= it
    assert not extended.binary_map(const, relative_prediction=False).any()
    gt = protocol.gt_map([[0.0, 0.0, 0.5, 0.5]], "vggss")  # 112 x 112 cells
    ciou, conf = extended.score_pair(const, gt)
    assert ciou == 112 * 112 / N and conf == float(np.full(N // 4, 0.3, np.float32).mean())
    assert extended.score_pair(const, gt, relative_prediction=False)[0] == 0.0
    # A negative's cIoU is 0, whatever is inferred (their 0 / count, or 0 / 0 when nothing).
    assert extended.score_pair(const, None) == (0.0, conf)
    assert extended.score_pair(const, None, relative_prediction=False)[0] == 0.0
    # A positive with an empty ground truth and nothing inferred: their 0 / 0.
    assert math.isnan(extended.pair_ciou(np.zeros((224, 224), bool), np.zeros((224, 224))))


def test_pair_scores_equal_their_update_for_flickr_consensus_maps():
    rng = np.random.default_rng(5)
    for k in range(20):
        scores = extended.av_scores(rng.normal(size=(7, 7)).astype(np.float32) * 20)
        if k % 5 == 0:
            scores = np.round(scores, 2)  # ties
        boxes = [sorted(rng.integers(0, 256, 2)) for _ in range(3)]
        boxes = [[a[0], b[0], a[1], b[1]] for a, b in zip(boxes, boxes[::-1])]
        gt = protocol.gt_map(boxes, "flickr")
        ev = EvaluatorFull()
        pred = normalize_img(scores)
        ev.update(boxes, gt, None, pred, np.sort(pred.flatten())[int(N * 0.5)], "x")
        ciou, _ = extended.score_pair(scores, gt)
        assert ciou == ev.ciou_list[0] or (math.isnan(ciou) and math.isnan(ev.ciou_list[0]))


def test_gt_map_equals_their_bbox2gtmap():
    rng = np.random.default_rng(6)
    for _ in range(30):
        k = int(rng.integers(1, 5))
        pixel = np.sort(rng.integers(0, 257, (k, 2, 2)), axis=1)  # [k, (lo, hi), (x, y)]
        flickr = [[b[0, 0], b[0, 1], b[1, 0], b[1, 1]] for b in pixel]
        np.testing.assert_array_equal(
            protocol.gt_map(flickr, "flickr"), bbox2gtmap(their_boxes(flickr, "flickr"), "flickr")
        )
        unit = np.sort(rng.uniform(-0.2, 1.2, (k, 2, 2)), axis=1)
        vggss = [[b[0, 0], b[0, 1], b[1, 0], b[1, 1]] for b in unit]
        np.testing.assert_array_equal(
            protocol.gt_map(vggss, "vggss"), bbox2gtmap(their_boxes(vggss, "vggss"), "vggss")
        )


# --- the metrics -------------------------------------------------------------------------


def band_scores(value):
    """A 224² scores map at `value` on exactly 25,088 cells (rows 0..111, every column) and
    0 elsewhere: its binary map is those cells and its confidence `value` (dyadic: exact)."""
    m = np.zeros((224, 224), np.float32)
    m[:112] = value
    return m


def vggss_rows_gt(y0, y1, x0=0.0, x1=1.0):
    return protocol.gt_map([[x0, y0, x1, y1]], "vggss")


def test_four_pairs_worked_by_hand():
    # Every binary map is rows 0..111 (25,088 cells, half the image).
    #   A  positive  conf 0.875  gt rows 0..111           cIoU 25088 / 25088 = 1     area 25088 (huge)
    #   B  negative  conf 0.75
    #   C  positive  conf 0.625  gt rows 56..167          cIoU 12544 / (25088 + 12544) = 1/3  (huge)
    #   D  positive  conf 0.25   gt rows 0..111, cols 0..111  cIoU 12544 / 25088 = 0.5  area 12544 (large)
    # AP ('all', N = 4, skip 1): thresholds sorted(conf)[:-1] reversed = 0.75, 0.625, 0.25:
    #   0.75:  A tp, B fp; C, D fn   -> p 1/2, r 1/3
    #   0.625: A tp, B, C fp; D fn   -> p 1/3, r 1/2
    #   0.25:  A, D tp; B, C fp      -> p 1/2, r 1
    #   precision_max = 1/2, 1/2, 1/2; AP = 1/2 (1/2 - 1/3) + 1/2 (1 - 1/2) = 1/3.
    # F1 (thresholds every conf, N // 10 = 0 -> step 1): 0.25: 2/3; 0.625: 2 (1/6) / (5/6) = 0.4;
    #   0.75: 0.4; 0.875: p 1, r 1/3 -> 0.5. max-F1 = 2/3.
    # LocAcc: A and D of the 3 positives have cIoU >= 0.5: 2/3.
    # AUC: success 1 for t = 0.05 i, i <= 6 (1/3 >= 0.30000000000000004), 2/3 for i = 7..10
    #   (0.05 * 10 == 0.5), 1/3 for i = 11..20: 0.05 (7 + 4 (2/3) + 10 (1/3) - (1 + 1/3) / 2).
    # Size subsets: large = {D}: AP 0 (a single pair has no threshold but its own), F1 at
    #   0.25: p = r = 1, LocAcc 1, AUC 0.05 (11 - 1/2); huge = {A, C}: AP 0 (one threshold),
    #   F1 2/3 at both 0.625 and 0.875, LocAcc 1/2, AUC 0.05 (7 + 14 (1/2) - (1 + 1/2) / 2);
    #   small and medium are empty: NaN.
    acc = extended.ExtendedScores()
    acc.add_scores("A", band_scores(0.875), vggss_rows_gt(0, 0.5), 1)
    acc.add_scores("B", band_scores(0.75), None, 0)
    acc.add_scores("C", band_scores(0.625), vggss_rows_gt(0.25, 0.75), 2)
    acc.add_scores("D", band_scores(0.25), vggss_rows_gt(0, 0.5, 0, 0.5), 1)
    assert acc.per_sample() == {
        "A": {"ciou": 1.0, "confidence": 0.875},
        "B": {"ciou": 0.0, "confidence": 0.75},
        "C": {"ciou": 12544 / (25088 + 12544), "confidence": 0.625},
        "D": {"ciou": 0.5, "confidence": 0.25},
    }
    r = acc.result()
    approx = lambda v: pytest.approx(v, abs=1e-9)
    assert r["ap"] == approx(100 / 3)
    assert r["max_f1"] == approx(200 / 3)
    assert r["loc_acc"] == approx(200 / 3)
    assert r["auc"] == approx(5 * (7 + 4 * 2 / 3 + 10 / 3 - (1 + 1 / 3) / 2))
    assert (r["ap_large"], r["max_f1_large"], r["loc_acc_large"]) == (0.0, 100.0, 100.0)
    assert r["auc_large"] == approx(5 * (11 - 0.5))
    assert (r["ap_huge"], r["loc_acc_huge"]) == (0.0, 50.0)
    assert r["max_f1_huge"] == approx(200 / 3)
    assert r["auc_huge"] == approx(5 * (7 + 14 * 0.5 - (1 + 0.5) / 2))
    for s in ("small", "medium"):
        assert all(math.isnan(r[f"{m}_{s}"]) for m in ("ap", "max_f1", "loc_acc", "auc"))
    assert (r["n_pos"], r["n_neg"]) == (3, 1)
    headline = {"ap", "max_f1", "loc_acc", "auc", "n_pos", "n_neg"}
    sizes = {f"{m}_{s}" for m in ("ap", "max_f1", "loc_acc", "auc") for s in extended.SIZE_SUBSETS}
    assert set(r) == headline | sizes
    # Their own numbers for these four pairs.
    ev = EvaluatorFull()
    ev.bb_list, ev.ciou_list, ev.confidence_list = list(acc.bb), list(acc.ciou), list(acc.conf)
    ev.area_list, ev.name_list = list(acc.area), list(acc.keys)
    assert_same_stats(acc.full_stats(), ev.finalize_stats())


def random_lists(rng, n):
    """bb (0 = negative, about a third), area (every size subset, boundaries included),
    cIoU (a few values, 0.5 and 0.75 among them; NaN sometimes) and confidences (tied
    half of the time)."""
    bb = np.where(rng.uniform(size=n) < 0.35, 0, rng.integers(1, 4, n))
    edges = [0, 32**2 - 0.5, 32**2, 96**2, 96**2 - 0.5, 144**2, 144**2 + 0.5, 50176]
    area = np.where(rng.uniform(size=n) < 0.3, rng.choice(edges, n), rng.uniform(0, 50176, n))
    area = np.where(bb == 0, 0.0, area)
    ciou = rng.choice([0.0, 0.1, 0.49, 0.5, 0.6, 0.75, 0.9, 1.0], n)
    ciou = np.where(rng.uniform(size=n) < 0.4, rng.uniform(size=n), ciou)
    ciou = np.where((bb > 0) & (rng.uniform(size=n) < 0.02), np.nan, ciou)
    ciou = np.where(bb == 0, 0.0, ciou)
    if rng.uniform() < 0.5:
        conf = rng.choice(rng.uniform(size=7), n)  # heavy ties
    else:
        conf = rng.uniform(size=n)
    conf = conf.astype(np.float32)
    return bb.tolist(), area.tolist(), ciou.tolist(), [np.float32(c) for c in conf]


@pytest.mark.parametrize(
    "n", [1, 2, 3, 4, 9, 10, 11, 19, 20, 21, 57, 199, 200, 201, 399, 400, 401, 999, 1203]
)
def test_metrics_equal_the_transcription(n):
    rng = np.random.default_rng(n)
    for trial in range(3):
        bb, area, ciou, conf = random_lists(rng, n)
        if trial == 1:  # no negatives
            bb = [max(b, 1) for b in bb]
        if trial == 2 and n > 1:  # no positives but one
            bb = [0] * (n - 1) + [1]
        ev = EvaluatorFull()
        ev.bb_list, ev.area_list, ev.ciou_list, ev.confidence_list = bb, area, ciou, conf
        ev.name_list = list(range(n))
        theirs = ev.finalize_stats()
        ours = extended.full_stats(bb, area, ciou, [float(c) for c in conf])
        assert_same_stats(ours, theirs)


def test_only_negatives_give_their_values():
    bb, area, ciou, conf = [0] * 5, [0.0] * 5, [0.0] * 5, [0.1, 0.2, 0.2, 0.7, 0.9]
    ours = extended.full_stats(bb, area, ciou, conf)
    ev = EvaluatorFull()
    ev.bb_list, ev.area_list, ev.ciou_list, ev.confidence_list = bb, area, ciou, conf
    ev.name_list = list(range(5))
    assert_same_stats(ours, ev.finalize_stats())
    # 'all': precision 0 (every detection false), AUC NaN (no visible pair); the rest empty.
    assert ours["Precision-all@50"] == 0.0 and math.isnan(ours["AUC-all@50"])
    assert math.isnan(ours["AP-visible@50"]) and math.isnan(ours["F1-visible@50"])


@pytest.mark.parametrize("n_pairs,relative", [(3, True), (40, True), (450, True), (60, False)])
def test_scores_equal_their_validate_end_to_end(n_pairs, relative):
    """Raw S/τ and object maps → their validate (torch bicubic, their normalisations,
    EvaluatorFull) and ours: every per-pair cIoU and confidence and every statistic equal,
    for the AV, object-only and AV+object evaluators. 450 pairs: AP stride 2."""
    rng = np.random.default_rng(n_pairs)
    raw_av = (rng.uniform(-1, 1, (n_pairs, 7, 7)) / 0.03).astype(np.float32)
    raw_av[::7] = np.round(raw_av[::7])  # some coarse maps (ties after upsampling are rare)
    raw_obj = rng.uniform(0, 3, (n_pairs, 7, 7)).astype(np.float32)
    gts, boxes = [], []
    for i in range(n_pairs):
        if rng.uniform() < 0.4:
            gts.append(None), boxes.append([])
            continue
        fmt = "flickr" if i % 2 else "vggss"
        k = int(rng.integers(1, 4))
        if fmt == "flickr":
            b = np.sort(rng.integers(0, 257, (k, 2, 2)), axis=1)
        else:
            b = np.sort(rng.uniform(0, 1, (k, 2, 2)), axis=1)
        b = [[x[0, 0], x[0, 1], x[1, 0], x[1, 1]] for x in b]
        gts.append(protocol.gt_map(b, fmt)), boxes.append(their_boxes(b, fmt))
    theirs = their_validate(raw_av, raw_obj, gts, boxes, relative=relative)
    ours = [extended.ExtendedScores(relative_prediction=relative) for _ in range(3)]
    for i in range(n_pairs):
        nb = len(boxes[i])
        ours[0].add(f"pair{i}", raw_av[i], gts[i], nb)
        ours[1].add_scores(f"pair{i}", extended.object_scores(raw_obj[i]), gts[i], nb)
        ours[2].add_scores(f"pair{i}", extended.fuse_og_extended(raw_av[i], raw_obj[i]), gts[i], nb)
    exact = torch_has_fma_kernels()
    for acc, ev in zip(ours, theirs):
        per = acc.per_sample()
        got_ciou = [per[f"pair{i}"]["ciou"] for i in range(n_pairs)]
        got_conf = [per[f"pair{i}"]["confidence"] for i in range(n_pairs)]
        want_ciou = [0.0 if g is None else float(c) for g, c in zip(gts, ev.ciou_list)]
        want_conf = [float(c) for c in ev.confidence_list]
        if not exact:  # a CPU build without fused multiply-adds: scores differ in the last bits
            np.testing.assert_allclose(got_conf, want_conf, rtol=0, atol=1e-6)
            continue
        assert got_ciou == want_ciou and got_conf == want_conf
        assert acc.area == [float(a) for a in ev.area_list] and acc.bb == ev.bb_list
        assert_same_stats(acc.full_stats(), ev.finalize_stats())
        r = acc.result()
        stats = ev.finalize_stats()
        assert r["ap"] == pytest.approx(100 * stats["AP-all@50"], abs=1e-10)
        assert r["max_f1"] == 100 * max(stats["F1-all@50"])
        assert r["loc_acc"] == 100 * stats["Precision-visible@50"]
        assert r["auc"] == 100 * stats["AUC-visible@50"]
        r75 = acc.result(iou_thr=0.75)
        assert r75["loc_acc"] == 100 * stats["Precision-visible@75"]


def test_bad_pairs_are_refused():
    acc = extended.ExtendedScores()
    m = np.zeros((7, 7), np.float32)
    gt = vggss_rows_gt(0, 0.5)
    acc.add("a", m, gt, 1)
    with pytest.raises(ValueError, match="added twice"):
        acc.add("a", m, gt, 1)
    with pytest.raises(ValueError, match="a negative has gt None and n_boxes 0"):
        acc.add("b", m, None, 2)
    with pytest.raises(ValueError, match="a negative has gt None and n_boxes 0"):
        acc.add("b", m, gt, 0)
    with pytest.raises(ValueError, match="n_boxes must be a count"):
        acc.add("b", m, gt, -1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        acc.add("b", np.full((7, 7), np.nan), gt, 1)
    with pytest.raises(ValueError, match="one \\[h, w\\] map"):
        acc.add("b", np.zeros((1, 7, 7)), gt, 1)
    with pytest.raises(ValueError, match="224 x 224"):
        acc.add_scores("b", m, gt, 1)
    with pytest.raises(ValueError, match="gt must be 224 x 224"):
        acc.add("b", m, np.zeros((7, 7)), 1)
    with pytest.raises(ValueError, match="tau must be positive"):
        extended.ExtendedScores(tau=0)
    with pytest.raises(ValueError, match="no pairs added"):
        extended.ExtendedScores().result()
    assert len(acc) == 1


# --- Extended VGG-SS's real pair lists ---------------------------------------------------


@pytest.mark.skipif(not META.is_dir(), reason=f"{META} is not here")
def test_extended_vggss_pairs_end_to_end():
    """vggss_test.csv (5,158 positives, boxes from vggss.json) and
    vggss_test_plus_silent.csv (5,158 negatives): 10,316 pairs of random maps scored in
    under 20 s, the metrics equal to the transcription's on them."""
    positives = [line.strip() for line in (META / "vggss_test.csv").read_text().splitlines()]
    positives = [p for p in positives if p]
    boxes = {e["file"]: e["bbox"] for e in json.loads((META / "vggss.json").read_text())}
    with open(META / "vggss_test_plus_silent.csv", newline="") as f:
        rows = [r for r in csv.reader(f)]
    assert rows[0] == ["video", "audio", "label"]
    negatives = [(r[0], r[1]) for r in rows[1:] if r[2] == "non-sounding"]  # as datasets.py
    assert len(positives) == 5158 and len(negatives) == 5158
    gts = {i: protocol.gt_map(boxes[i], "vggss") for i in positives}  # not timed: the data side
    rng = np.random.default_rng(0)
    maps = (rng.uniform(-1, 1, (len(positives) + len(negatives), 7, 7)) / 0.03).astype(np.float32)
    start = time.perf_counter()
    acc = extended.ExtendedScores()
    for k, i in enumerate(positives):
        acc.add(i, maps[k], gts[i], len(boxes[i]))
    for k, (video, audio) in enumerate(negatives):
        acc.add(f"{video}|{audio}", maps[len(positives) + k], None, 0)
    result = acc.result()
    elapsed = time.perf_counter() - start
    print(f"10,316 pairs scored in {elapsed:.1f} s")  # Timed by benchmarks/score.py, not here.
    assert (result["n_pos"], result["n_neg"]) == (5158, 5158) and len(acc.per_sample()) == 10316
    for key in ("ap", "max_f1", "loc_acc", "auc"):
        assert 0 <= result[key] <= 100
    ev = EvaluatorFull(iou_thrs=(0.5,))
    ev.bb_list, ev.area_list, ev.ciou_list = list(acc.bb), list(acc.area), list(acc.ciou)
    ev.confidence_list, ev.name_list = list(acc.conf), list(acc.keys)
    assert_same_stats(acc.full_stats((0.5,)), ev.finalize_stats())
