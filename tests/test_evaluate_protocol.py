"""The LVS / EZ-VSL protocol functions on hand-worked examples and against torch."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avkd_jax.eval import protocol

# Flickr pixel coordinates (256 frame) -> int(224 * c / 256):
#   0 -> 0, 64 -> 56, 100 -> 87 (87.5), 128 -> 112, 192 -> 168, 255 -> 223 (223.125).
FLICKR_BOXES = [
    [0, 0, 128, 128],  # A: rows/cols 0..111
    [64, 64, 192, 192],  # B: 56..167
    [100, 100, 255, 255],  # C: 87..222
]


def test_flickr_gt_map_consensus_values():
    gt = protocol.gt_map(FLICKR_BOXES, "flickr")
    assert gt.shape == (224, 224) and gt.dtype == np.float64
    assert set(np.unique(gt)) == {0.0, 0.5, 1.0}
    assert gt[10, 10] == 0.5  # A only
    assert gt[60, 60] == 1.0  # A and B: 2 / 2
    assert gt[100, 100] == 1.0  # A, B and C: 3 / 2 clipped to 1
    assert gt[200, 200] == 0.5  # C only
    assert gt[10, 200] == 0.0  # none
    # 100 -> 87: row 87 is in C, row 86 is not (the B-only cells beside it stay 0.5).
    assert gt[86, 150] == 0.5 and gt[87, 150] == 1.0
    # 255 -> 223: the slice end is exclusive, so index 222 is painted and 223 is not.
    assert gt[222, 222] == 0.5 and gt[223, 222] == 0.0 and gt[222, 223] == 0.0
    # 192 -> 168: B covers up to index 167.
    assert gt[167, 167] == 1.0 and gt[168, 168] == 0.5
    # Total mass, counted by region: cells covered once give 0.5, twice or more give 1.
    count = np.zeros((224, 224))
    for x0, y0, x1, y1 in [(0, 0, 112, 112), (56, 56, 168, 168), (87, 87, 223, 223)]:
        count[y0:y1, x0:x1] += 1
    assert gt.sum() == 0.5 * np.sum(count == 1) + np.sum(count >= 2)


def test_flickr_rounding_and_orientation():
    # x 0..100 px -> cols 0..86, y 200..255 px -> rows 175..222 (224*200/256 = 175).
    gt = protocol.gt_map(np.array([[0, 200, 100, 255]]), "flickr")
    rows, cols = np.nonzero(gt)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (175, 222, 0, 86)
    assert np.all(gt[gt > 0] == 0.5)
    # int(c) first: 99.9 px counts as 99 px -> int(86.625) = 86, so cols 0..85.
    gt = protocol.gt_map([[0.0, 0.0, 99.9, 10.0]], "flickr")
    assert np.nonzero(gt)[1].max() == 85


def test_vggss_gt_map_clips_and_unions():
    boxes = [
        [-2.9e16, 0.2, 1.7, 3.0],  # -> [0, 44, 224, 224]: 0.2 * 224 = 44.8 -> 44
        [0.1, 0.5, 0.3, 0.6],  # -> cols 22..66, rows 112..133 (inside the first box)
    ]
    gt = protocol.gt_map(boxes, "vggss")
    expected = np.zeros((224, 224))
    expected[44:224, 0:224] = 1
    np.testing.assert_array_equal(gt, expected)

    gt = protocol.gt_map(boxes[1:], "vggss")
    rows, cols = np.nonzero(gt)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (112, 133, 22, 66)
    assert np.all(gt[gt > 0] == 1.0)


def test_gt_map_empty_and_bad_inputs():
    assert not protocol.gt_map([], "vggss").any()
    assert not protocol.gt_map(np.zeros((0, 4)), "flickr").any()
    with pytest.raises(ValueError, match="coco"):
        protocol.gt_map(FLICKR_BOXES, "coco")
    with pytest.raises(ValueError, match=r"\[1, 2, 3\]"):
        protocol.gt_map([[1, 2, 3]], "flickr")
    with pytest.raises(ValueError, match="nan"):
        protocol.gt_map([[0.1, float("nan"), 0.5, 0.5]], "vggss")
    with pytest.raises(ValueError, match="inf"):
        protocol.gt_map(np.array([[0, 0, np.inf, 10]]), "flickr")
    with pytest.raises(ValueError, match="'a'"):
        protocol.gt_map([["a", 0, 1, 1]], "vggss")
    with pytest.raises(ValueError, match="4 numbers"):
        protocol.gt_map([0, 0, 10, 10], "flickr")  # one box not wrapped in a list


def ramp_down():
    """pred[y, x] = 1 - y / 223: the top 112 rows are the upper half."""
    return np.repeat(1 - np.arange(224)[:, None] / 223, 224, axis=1)


def test_sample_ciou_hand_worked():
    pred = ramp_down()
    left = np.zeros((224, 224))
    left[:, :112] = 1
    # Inferred = rows 0..111 (exactly half). Hit = 112 * 112; sum(gt) = 224 * 112;
    # inferred outside gt = 112 * 112 -> 12544 / (25088 + 12544) = 1 / 3.
    assert protocol.sample_ciou(pred, left) == pytest.approx(1 / 3, abs=1e-15)
    assert protocol.sample_ciou(pred, left.T) == 1.0  # gt = the top half
    # A single Flickr annotator's box weighs 0.5: (0.5 * 12544) / (0.5 * 25088 + 12544).
    gt = protocol.gt_map([[0, 0, 128, 256]], "flickr")
    np.testing.assert_array_equal(gt, 0.5 * left)
    assert protocol.sample_ciou(pred, gt) == pytest.approx(0.25, abs=1e-15)
    assert isinstance(protocol.sample_ciou(pred, gt), float)


def test_sample_ciou_median_index_and_ties():
    # Distinct values 0..50175: the threshold is sorted[25088] = 25088, so 25088 cells.
    rng = np.random.default_rng(0)
    pred = rng.permutation(224 * 224).reshape(224, 224) / (224 * 224 - 1)
    gt = (pred >= 25088 / (224 * 224 - 1)).astype(float)
    assert gt.sum() == 25088
    assert protocol.sample_ciou(pred, gt) == 1.0
    # A constant map (normalised to zeros) infers every cell: 112*112 / (224*224).
    box = protocol.gt_map([[0, 0, 0.5, 0.5]], "vggss")
    flat = protocol.normalize_map(np.full((224, 224), 3.0))
    assert protocol.sample_ciou(flat, box) == pytest.approx(0.25)


def test_summarize_hand_worked():
    out = protocol.summarize([0.0, 0.5, 1.0])
    assert out["n"] == 3
    assert out["ciou"] == pytest.approx(200 / 3)
    assert out["mean_ciou"] == pytest.approx(50.0)
    # fraction >= t: 1 at t = 0; 2/3 for t = 0.05 .. 0.5 (0.05 * 10 == 0.5 exactly);
    # 1/3 for t = 0.55 .. 1.0. Trapezoids: 0.05 * (1 + 2/3) / 2 + 9 * 0.05 * 2/3
    #   + 0.05 * (2/3 + 1/3) / 2 + 9 * 0.05 * 1/3 = 0.041667 + 0.3 + 0.025 + 0.15.
    assert out["auc"] == pytest.approx(100 * (0.05 * 5 / 6 + 0.3 + 0.025 + 0.15), abs=1e-9)
    assert out["auc"] == pytest.approx(51.6666666667, abs=1e-8)


def test_summarize_uses_the_references_float_thresholds():
    # 0.05 * 3 = 0.15000000000000002 > 0.15, so a cIoU of exactly 0.15 fails t_3:
    # fractions 1, 1, 1, 0, ... -> area 0.05 + 0.05 + 0.025 = 0.125.
    # (np.linspace(0, 1, 21)[3] == 0.15 would give 0.175.)
    assert protocol.summarize([0.15])["auc"] == pytest.approx(12.5, abs=1e-9)
    assert protocol.summarize(np.array([0.5]))["ciou"] == 100.0
    assert protocol.summarize([0.4999])["ciou"] == 0.0
    with pytest.raises(ValueError):
        protocol.summarize([])


def test_upsample_and_normalize_vs_torch():
    rng = np.random.default_rng(1)
    maps = rng.standard_normal((2, 7, 7)).astype(np.float32)
    up = protocol.upsample_map(maps)
    assert isinstance(up, np.ndarray) and up.dtype == np.float32 and up.shape == (2, 224, 224)
    ref = F.interpolate(
        torch.tensor(maps)[:, None], size=(224, 224), mode="bilinear", align_corners=True
    )[:, 0].numpy()
    np.testing.assert_allclose(up, ref, rtol=0, atol=1e-5)
    # Corners are the input corners exactly with align_corners=True.
    np.testing.assert_allclose(
        up[:, [0, -1]][:, :, [0, -1]], maps[:, [0, -1]][:, :, [0, -1]], atol=1e-6
    )

    norm = protocol.normalize_map(up)
    ref64 = ref.astype(np.float64)
    for k in range(2):
        expected = (ref64[k] - ref64[k].min()) / (ref64[k].max() - ref64[k].min())
        np.testing.assert_allclose(norm[k], expected, rtol=0, atol=1e-5)
        assert norm[k].min() == 0.0 and norm[k].max() == pytest.approx(1.0)


def test_normalize_map_constant_gives_zeros_without_warnings():
    maps = np.stack([np.full((7, 7), 2.5), np.arange(49.0).reshape(7, 7)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = protocol.normalize_map(maps)
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_allclose(out[1], np.arange(49.0).reshape(7, 7) / 48)
