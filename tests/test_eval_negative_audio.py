"""The negative-audio protocol (Juanola et al.) against loop-based transcriptions of the
reference's definitions (xavijuanola/vssl_eval), torch and sklearn where it uses them,
hand-worked cases, and an audio-blind model that must score badly."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.paths import REPO
from sklearn import metrics as sk_metrics

from avkd_jax.eval import negative_audio as na
from avkd_jax.eval import protocol

META = REPO.parent / "shared" / "metadata"


# ------------------------------------------------ transcriptions of the reference


def ref_cv2_linear(m, size=224):
    """cv2.resize(m, (size, size), INTER_LINEAR) for float maps, one cell at a time:
    fx = (dx + 0.5) * scale - 0.5, sx = floor(fx); sx < 0 -> (0, weight 0);
    sx >= w - 1 -> (w - 1, weight 0); rows first, then columns."""
    m = np.asarray(m, dtype=np.float64)
    h, w = m.shape

    def taps(n_in, d):
        f = (d + 0.5) * (n_in / size) - 0.5
        s = int(np.floor(f))
        f -= s
        if s < 0:
            s, f = 0, 0.0
        if s >= n_in - 1:
            s, f = n_in - 1, 0.0
        return s, min(s + 1, n_in - 1), f

    rows = np.zeros((h, size))
    for y in range(h):
        for dx in range(size):
            s0, s1, f = taps(w, dx)
            rows[y, dx] = m[y, s0] * (1 - f) + m[y, s1] * f
    out = np.zeros((size, size))
    for dy in range(size):
        s0, s1, f = taps(h, dy)
        out[dy] = rows[s0] * (1 - f) + rows[s1] * f
    return out


def ref_compute_pia(binarized):
    """eval_utils.compute_pIA: np.sum(mask) / mask.size, counted cell by cell."""
    highlighted = 0
    for row in binarized:
        for v in row:
            highlighted += int(v)
    return highlighted / binarized.size


def ref_compute_auc_pia(values):
    """eval_utils.compute_AUC_pIA: fraction with pIA <= 0.05 * i, sklearn's auc."""
    fractions = []
    for i in range(21):
        count = 0
        for v in values:
            if v <= 0.05 * i:
                count += 1
        fractions.append(count / len(values))
    return sk_metrics.auc([0.05 * i for i in range(21)], fractions)


def torch_corner(m):
    t = torch.tensor(np.asarray(m, np.float32))[None, None]
    return F.interpolate(t, size=(224, 224), mode="bilinear", align_corners=True)[0, 0].numpy()


def torch_half_pixel(m):
    t = torch.tensor(np.asarray(m, np.float32))[None, None]
    return F.interpolate(t, size=(224, 224), mode="bilinear", align_corners=False)[0, 0].numpy()


def reference_metrics(samples, threshold=0.5, calibrated=None, upsample=None, corner=None):
    """eval.py::eval and binarized_negatives_thresholds for EZ-VSL-type models: maps
    Savl = (S + 1) / 2; positive upsampled by F.interpolate(align_corners=True), its median
    and adaptive thresholds; negatives upsampled as cv2 INTER_LINEAR (torch's half-pixel
    bilinear here), binarised with '>'; pIA means and compute_AUC_pIA, times 100.

    samples: list of (S_pos [7, 7], gt [224, 224], {kind: S_neg [7, 7]}); `upsample` and
    `corner` replace the negatives' and the positive's upsampling.
    """
    calibrated = calibrated or {}
    upsample = upsample or torch_half_pixel
    corner = corner or torch_corner
    lists = {}
    for s_pos, gt, negs in samples:
        pred = corner((torch.tensor(s_pos, dtype=torch.float32) + 1) / 2)
        thr_ciou = np.sort(pred.flatten())[int(pred.shape[0] * pred.shape[1] * 0.5)]
        gt_nums = (gt != 0).sum()
        if int(gt_nums) == 0:
            gt_nums = int(pred.shape[0] * pred.shape[1]) // 2
        thr_adap = np.sort(pred.flatten())[int(pred.shape[0] * pred.shape[1]) - int(gt_nums)]
        for kind, s_neg in negs.items():
            p = upsample((torch.tensor(s_neg, dtype=torch.float32) + 1) / 2)
            levels = {"": threshold, "_thrciou": thr_ciou, "_thrciou_adap": thr_adap}
            levels.update({f"_{n}": t for n, t in calibrated.items()})
            for suffix, t in levels.items():
                lists.setdefault(f"{kind}{suffix}", []).append(ref_compute_pia((p > t).astype(int)))
    out = {}
    for name, values in lists.items():
        kind, _, rest = name.partition("_")
        suffix = f"_{rest}" if rest else ""
        out[f"pia_{kind}{suffix}"] = np.mean(np.array(values)) * 100
        out[f"aoc_{kind}{suffix}"] = ref_compute_auc_pia(values) * 100
    return out


def blob_scores(center, radius, high, low, size=7):
    """[size, size] S map: `high` inside a disc of `radius` cells around `center`."""
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2
    return np.where(inside, high, low).astype(np.float32)


# ------------------------------------------------ negative sounds


def test_silence_and_noise():
    s = na.silence(16000)
    assert s.shape == (16000,) and s.dtype == np.float32 and not s.any()
    x = na.noise(160000, 7)
    assert x.shape == (160000,) and x.dtype == np.float32
    # N(0, 1) in full-scale units: std 1, not clipped to [-1, 1].
    assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1.0) < 0.01
    assert float(np.abs(x).max()) > 3.0
    np.testing.assert_array_equal(x, na.noise(160000, 7))
    np.testing.assert_array_equal(na.noise(100, np.random.default_rng(3)), na.noise(100, 3))
    assert not np.array_equal(na.noise(100, 1), na.noise(100, 2))
    for bad in (0, -5, 2.0, True):
        with pytest.raises(ValueError, match="num_samples"):
            na.silence(bad)
    with pytest.raises(ValueError, match="rng"):
        na.noise(10, "seed")


# ------------------------------------------------ upsampling


def test_half_pixel_upsampling_is_cv2_inter_linear():
    rng = np.random.default_rng(0)
    for shape in [(7, 7), (5, 9), (1, 3), (224, 224)]:
        m = rng.normal(size=shape).astype(np.float32)
        ours = na.upsample_half_pixel(m)
        assert ours.shape == (224, 224) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref_cv2_linear(m), rtol=0, atol=2e-6)
        np.testing.assert_allclose(ours, torch_half_pixel(m), rtol=0, atol=2e-6)
    # Same size: the identity, bit for bit.
    np.testing.assert_array_equal(na.upsample_half_pixel(m), m)
    # Batched.
    b = rng.normal(size=(3, 7, 7)).astype(np.float32)
    np.testing.assert_array_equal(na.upsample_half_pixel(b)[1], na.upsample_half_pixel(b[1]))
    # Border cells: the first 4 output columns all equal the first input column.
    assert np.all(na.upsample_half_pixel(b[0])[:, :16] == na.upsample_half_pixel(b[0])[:, :1])


def test_half_pixel_upsampling_against_cv2_itself():
    cv2 = pytest.importorskip("cv2")
    m = np.random.default_rng(1).normal(size=(7, 7)).astype(np.float32)
    want = cv2.resize(m, dsize=(224, 224), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(na.upsample_half_pixel(m), want, rtol=0, atol=2e-6)


# ------------------------------------------------ pIA and its curve


def test_pia_matches_the_reference_definition():
    rng = np.random.default_rng(2)
    for _ in range(5):
        m = rng.uniform(0, 1, size=(224, 224)).astype(np.float32)
        for t in (0.0, 0.25, 0.5, 0.6382, 1.0):
            assert na.pia(m, t) == ref_compute_pia((m > t).astype(int))


def test_pia_hand_worked_and_ties():
    # All-zero S is 0.5 everywhere in (S + 1) / 2: exactly at the threshold, so no cell
    # counts ('>', not '>=').
    zero = na.upsample_half_pixel(na.to_unit(np.zeros((7, 7))))
    assert na.pia(zero, 0.5) == 0.0
    assert na.pia(zero, 0.4999) == 1.0
    assert na.pia(na.upsample_half_pixel(na.to_unit(np.full((7, 7), 0.2))), 0.5) == 1.0
    assert na.pia(na.upsample_half_pixel(na.to_unit(np.full((7, 7), -0.2))), 0.5) == 0.0
    # Left half S = 0 (a tie), right half S = 0.5 (0.75): half the image.
    half = np.zeros((224, 224), np.float32)
    half[:, 112:] = 0.5
    assert na.pia(na.upsample_half_pixel(na.to_unit(half)), 0.5) == 0.5
    # 7 x 7 with one column raised: columns of output cells whose taps touch it.
    col = np.zeros((7, 7), np.float32)
    col[:, 6] = 1.0
    # Output column dx reads input columns floor((dx + 0.5) / 32 - 0.5) and the next;
    # dx >= 176 has a positive weight on column 6 (dx = 176: fx = 5.015625).
    assert na.pia(na.upsample_half_pixel(na.to_unit(col)), 0.5) == (224 - 176) / 224


def test_pia_compares_in_float32():
    # A float32 map compared to a Python float is compared in float32 (numpy's rules),
    # so a cell equal to float32(t) never counts, even where float32(t) > t.
    t = next(
        v for m in na.REFERENCE_THRESHOLDS.values() for v in m.values() if float(np.float32(v)) > v
    )
    cell = np.full((224, 224), np.float32(t))
    assert float(cell[0, 0]) > t  # a float64 comparison would count it
    assert na.pia(cell, t) == 0.0


def test_pia_curve_and_area_hand_worked():
    thresholds, fractions = na.pia_curve([0.0, 0.5, 1.0])
    assert thresholds[3] == 0.15000000000000002 and thresholds[20] == 1.0
    assert fractions[0] == pytest.approx(1 / 3) and fractions[10] == pytest.approx(2 / 3)
    assert fractions[9] == pytest.approx(1 / 3) and fractions[20] == 1.0
    # 0.45 / 3 + 0.05 * (1/3 + 2/3) / 2 + 0.45 * 2/3 + 0.05 * (2/3 + 1) / 2 = 0.516666...
    assert na.pia_auc([0.0, 0.5, 1.0]) == pytest.approx(0.31 / 0.6, abs=1e-12)
    assert na.pia_auc([0.0, 0.0]) == pytest.approx(1.0)  # nothing marked: full area
    assert na.pia_auc([1.0]) == pytest.approx(0.025)  # everything marked: the last step
    # pIA 0.25 = 12544 / 50176 ties with t = 0.05 * 5 == 0.25 and counts there.
    assert na.pia_auc([12544 / 50176]) == pytest.approx(0.775)
    with pytest.raises(ValueError, match="at least one"):
        na.pia_auc([])


def test_pia_area_matches_sklearn_transcription():
    rng = np.random.default_rng(3)
    for n in (1, 7, 100):
        values = list(rng.integers(0, 50177, size=n) / 50176) + [0.25, 0.0]
        assert na.pia_auc(values) == pytest.approx(ref_compute_auc_pia(values), abs=1e-12)


def test_positive_thresholds_hand_worked():
    m = np.arange(224 * 224, dtype=np.float32).reshape(224, 224) / (224 * 224)
    gt = np.zeros((224, 224))
    assert na.positive_thresholds(m)["thrciou"] == np.float32(25088 / 50176)
    # No gt cell: the adaptive index falls back to half the image.
    assert na.positive_thresholds(m, gt)["thrciou_adap"] == np.float32(25088 / 50176)
    gt[:10, :10] = 0.5  # 100 nonzero cells (values 0.5 count too)
    assert na.positive_thresholds(m, gt)["thrciou_adap"] == np.float32((50176 - 100) / 50176)
    with pytest.raises(ValueError, match="shape"):
        na.positive_thresholds(m, np.zeros((7, 7)))


# ------------------------------------------------ the accumulator against the reference


def random_samples(seed, n=6):
    rng = np.random.default_rng(seed)
    samples = []
    for k in range(n):
        s_pos = rng.uniform(-0.3, 0.9, size=(7, 7)).astype(np.float32)
        gt = np.zeros((224, 224))
        if k % 3:
            y, x = rng.integers(0, 150, size=2)
            gt[y : y + 60, x : x + 70] = 1.0
        negs = {
            "silence": rng.uniform(-0.2, 0.4, size=(7, 7)).astype(np.float32),
            "noise": rng.uniform(-0.5, 0.8, size=(7, 7)).astype(np.float32),
            "offscreen": rng.uniform(-0.1, 0.9, size=(7, 7)).astype(np.float32),
        }
        samples.append((s_pos, gt, negs))
    return samples


def fill(acc, samples, prefix=""):
    for k, (s_pos, gt, negs) in enumerate(samples):
        image = f"{prefix}img{k}"
        acc.add_positive(image, s_pos, gt=gt)
        for kind, s in negs.items():
            acc.add(image, kind, s, audio_id=f"{prefix}aud{k}" if kind == "offscreen" else None)


def test_accumulator_matches_reference_pipeline():
    samples = random_samples(4)
    calibrated = na.REFERENCE_THRESHOLDS["ezvsl"]
    acc = na.NegativeAudioScores(thresholds=calibrated)
    fill(acc, samples)
    got = acc.result()
    # With the same upsamplings, every threshold, count and area is exact.
    exact = reference_metrics(
        samples,
        calibrated=calibrated,
        upsample=na.upsample_half_pixel,
        corner=lambda m: protocol.upsample_map(np.asarray(m)[None])[0],
    )
    assert {k for k in got if k.startswith(("pia_", "aoc_"))} == set(exact)
    for key, value in exact.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    # With torch's bilinear upsamplings (float32 rounding of their own, and the reference
    # ran them on a GPU) a cell within an ulp of a threshold taken from the positive map
    # may flip: allow three such cells over the whole set.
    want = reference_metrics(samples, calibrated=calibrated)
    cells = 100 / (224 * 224 * len(samples))
    for key, value in want.items():
        tol = 3 * cells if key.startswith("pia_") else 1e-9
        assert got[key] == pytest.approx(value, abs=tol), key
    for kind in na.KINDS:
        assert got[f"n_{kind}"] == len(samples)
        peaks = [float(((s[2][kind] + 1) / 2).max()) for s in samples]
        assert got[f"max_heatmap_{kind}"] == pytest.approx(np.mean(peaks))
        assert got[f"median_max_heatmap_{kind}"] == pytest.approx(np.median(peaks))
    assert got["n_positive"] == len(samples)


def test_accumulator_without_positives_reports_the_fixed_threshold_only():
    samples = random_samples(5)
    acc = na.NegativeAudioScores()
    for k, (_, _, negs) in enumerate(samples):
        acc.add(f"img{k}", "silence", negs["silence"])
    got = acc.result()
    want = reference_metrics(samples)
    assert set(got) == {
        "n_silence",
        "pia_silence",
        "aoc_silence",
        "max_heatmap_silence",
        "median_max_heatmap_silence",
    }
    assert got["pia_silence"] == pytest.approx(want["pia_silence"], abs=1e-9)
    assert got["aoc_silence"] == pytest.approx(want["aoc_silence"], abs=1e-9)


def test_accumulator_hand_worked():
    acc = na.NegativeAudioScores()
    acc.add("a", "silence", np.zeros((7, 7)))  # all 0.5: a tie, nothing marked
    acc.add("b", "silence", np.full((7, 7), 0.2))  # all marked
    acc.add("a", "noise", np.full((3, 3), -1.0))
    got = acc.result()
    assert got["pia_silence"] == 50.0 and got["pia_noise"] == 0.0
    # Curves: silence pIAs [0, 1] -> 0.5 * (1 - 0.05) + 0.05 * (0.5 + 1) / 2 = 0.5125.
    assert got["aoc_silence"] == pytest.approx(51.25) and got["aoc_noise"] == pytest.approx(100)
    assert got["max_heatmap_silence"] == pytest.approx(0.55)
    assert got["median_max_heatmap_silence"] == pytest.approx(0.55)
    assert "pia_offscreen" not in got and "n_positive" not in got
    per = acc.per_sample()
    assert set(per) == {"a__silence", "b__silence", "a__noise"}
    assert per["b__silence"]["pia"] == 100.0 and per["a__noise"]["peak"] == 0.0
    # Positive map's median as threshold: a positive at S = 0.2 everywhere gives 0.6, and
    # the negative at S = 0.2 (0.6) ties with it: nothing marked. (224 x 224 maps: both
    # upsamplings are then the identity, so the tie is exact.)
    acc = na.NegativeAudioScores()
    acc.add_positive("b", np.full((224, 224), 0.2))
    acc.add("b", "silence", np.full((224, 224), 0.2))
    got = acc.result()
    assert got["pia_silence"] == 100.0 and got["pia_silence_thrciou"] == 0.0
    assert "pia_silence_thrciou_adap" not in got


def test_mean_over_passes_equals_pooling():
    passes = [random_samples(6), random_samples(7)]
    single = []
    pooled = na.NegativeAudioScores()
    for k, samples in enumerate(passes):
        acc = na.NegativeAudioScores()
        fill(acc, samples)
        single.append(acc.result())
        fill(pooled, samples, prefix=f"p{k}/")
    mean = na.mean_over_passes(single)
    want = pooled.result()
    for key, value in want.items():
        if not key.startswith("median_"):  # a mean of medians is not the pooled median
            assert mean[key] == pytest.approx(value, abs=1e-9), key
    with pytest.raises(ValueError, match="keys"):
        na.mean_over_passes([single[0], {"pia_silence": 1.0}])


def test_audio_blind_model_scores_clearly_worse():
    # Every image has an object; the audio-blind model paints it whatever it hears, the
    # audio-aware one only for the image's own sound (flat and low for the negatives).
    rng = np.random.default_rng(8)
    blind, aware = na.NegativeAudioScores(), na.NegativeAudioScores()
    for k in range(20):
        obj = blob_scores(rng.integers(1, 6, size=2), rng.uniform(1.0, 2.2), 0.7, -0.1)
        gt = (na.upsample_half_pixel(obj) > 0.3).astype(float)
        offscreen = f"clip{(k + 1) % 20}"
        for acc in (blind, aware):
            acc.add_positive(f"clip{k}", obj, gt=gt)
        for kind in na.KINDS:
            audio = offscreen if kind == "offscreen" else None
            blind.add(f"clip{k}", kind, obj, audio_id=audio)
            aware.add(
                f"clip{k}",
                kind,
                np.full((7, 7), -0.3) + 0.02 * rng.normal(size=(7, 7)),
                audio_id=audio,
            )
    b, a = blind.result(), aware.result()
    for kind in na.KINDS:
        for suffix in ("", "_thrciou", "_thrciou_adap"):
            assert b[f"pia_{kind}{suffix}"] > 10 and a[f"pia_{kind}{suffix}"] == 0.0
            assert b[f"aoc_{kind}{suffix}"] < a[f"aoc_{kind}{suffix}"] - 10
            assert a[f"aoc_{kind}{suffix}"] == pytest.approx(100.0)
        assert b[f"max_heatmap_{kind}"] > a[f"max_heatmap_{kind}"]


def test_accumulator_bad_inputs():
    acc = na.NegativeAudioScores()
    with pytest.raises(ValueError, match="not S / tau"):
        acc.add("a", "silence", np.full((7, 7), 0.5 / 0.03))
    with pytest.raises(ValueError, match="kind"):
        acc.add("a", "music", np.zeros((7, 7)))
    with pytest.raises(ValueError, match="audio_id"):
        acc.add("a", "offscreen", np.zeros((7, 7)))
    with pytest.raises(ValueError, match="another clip"):
        acc.add("a", "offscreen", np.zeros((7, 7)), audio_id="a")
    with pytest.raises(ValueError, match="non-finite"):
        acc.add("a", "noise", np.full((7, 7), np.nan))
    with pytest.raises(ValueError, match=r"\[h, w\]"):
        acc.add("a", "noise", np.zeros((1, 7, 7)))
    with pytest.raises(ValueError, match="no negative maps"):
        acc.result()
    acc.add("a", "silence", np.zeros((7, 7)))
    with pytest.raises(ValueError, match="a__silence.*twice"):
        acc.add("a", "silence", np.zeros((7, 7)))
    acc.add("b", "silence", np.zeros((7, 7)))
    acc.add_positive("a", np.zeros((7, 7)))
    with pytest.raises(ValueError, match="b: negative maps but no positive"):
        acc.result()
    acc.add_positive("b", np.zeros((7, 7)), gt=np.ones((224, 224)))
    with pytest.raises(ValueError, match="a: positive has no gt"):
        acc.result()
    with pytest.raises(ValueError, match="gt"):
        acc.add_positive("c", np.zeros((7, 7)), gt=np.ones((7, 7)))
    with pytest.raises(ValueError, match="unknown name 'q3'"):
        na.NegativeAudioScores(thresholds={"q3": 0.5})
    with pytest.raises(ValueError, match="finite"):
        na.NegativeAudioScores(thresholds={"max": float("nan")})


# ------------------------------------------------ keys and the off-screen clip


def test_pair_keys_round_trip():
    vgg = "__2MwJ2uHu0_000004"  # VGGSound ids may start with '__'
    other = "-4BlmzZsMIU_000030"
    assert na.pair_key(vgg, "silence") == "__2MwJ2uHu0_000004__silence"
    assert na.pair_key(vgg, "noise") == "__2MwJ2uHu0_000004__noise"
    assert na.pair_key(vgg, "offscreen", other) == "__2MwJ2uHu0_000004__-4BlmzZsMIU_000030"
    for kind, audio in [("silence", None), ("noise", None), ("offscreen", other)]:
        assert na.parse_pair_key(na.pair_key(vgg, kind, audio)) == (vgg, kind, audio)
    for kind in ("silence", "noise"):
        assert na.parse_pair_key(na.pair_key(other, kind)) == (other, kind, None)
    # An audio id starting with '__' makes '____': three splits, so the ids must decide.
    key = na.pair_key(other, "offscreen", vgg)
    assert key == "-4BlmzZsMIU_000030____2MwJ2uHu0_000004"
    with pytest.raises(ValueError, match="more than one"):
        na.parse_pair_key(key)
    assert na.parse_pair_key(key, known_ids=[vgg, other]) == (other, "offscreen", vgg)
    # Two '__' past the start: ambiguous alone, decided by the known ids.
    key = na.pair_key("a__b", "offscreen", "c")
    with pytest.raises(ValueError, match="more than one"):
        na.parse_pair_key(key)
    assert na.parse_pair_key(key, known_ids=["a__b", "c", "b__c"]) == ("a__b", "offscreen", "c")
    with pytest.raises(ValueError, match="no way"):
        na.parse_pair_key("plain")
    with pytest.raises(ValueError, match="silence"):
        na.pair_key("a", "offscreen", "silence")
    with pytest.raises(ValueError, match="only for kind"):
        na.pair_key("a", "noise", "b")
    with pytest.raises(ValueError, match="image_id"):
        na.pair_key("", "noise")


def test_pick_offscreen_rule():
    classes = {"a1": "dog", "a2": "dog", "b1": "cat", "c1": "car", "c2": "car", "c3": "car"}
    ids = list(classes)
    picks = na.pick_offscreen(ids, classes, seed=0)
    assert list(picks) == ids
    for image, audio in picks.items():
        assert classes[audio] != classes[image]
    # Deterministic, and a pick depends on the seed and the id only, not on the order.
    assert na.pick_offscreen(ids, classes, seed=0) == picks
    assert na.pick_offscreen(ids[::-1], classes, seed=0) == picks
    assert any(na.pick_offscreen(ids, classes, seed=s) != picks for s in range(1, 5))
    # Class first, then clip: from a dog the cat clip comes about half the time
    # (two other classes), not a quarter (one clip of four).
    many = {f"d{k}": "dog" for k in range(400)} | {
        "b1": "cat",
        "c1": "car",
        "c2": "car",
        "c3": "car",
    }
    cat = sum(v == "b1" for k, v in na.pick_offscreen(list(many), many).items() if k[0] == "d")
    assert 160 < cat < 240
    # IS3: every class of the scene is excluded.
    scenes = {"x": ("dog", "cat"), "y": "dog", "z": "car"}
    assert all(v == "z" for k, v in na.pick_offscreen(list(scenes), scenes, 3).items() if k == "x")
    with pytest.raises(ValueError, match="no class other"):
        na.pick_offscreen(["a1", "a2"], classes)
    with pytest.raises(ValueError, match="more than once"):
        na.pick_offscreen(["a1", "a1", "b1"], classes)
    with pytest.raises(ValueError, match="no class for clip 'zz'"):
        na.pick_offscreen(["a1", "zz"], classes)
    with pytest.raises(ValueError, match="seed"):
        na.pick_offscreen(ids, classes, seed=-1)


@pytest.mark.skipif(not (META / "vggss.json").is_file(), reason=f"{META} is not here")
def test_pick_offscreen_on_vggss():
    entries = json.loads((META / "vggss.json").read_text())
    classes = na.classes_from_vggss(entries)
    ids = sorted(classes)
    picks = na.pick_offscreen(ids, classes, seed=1234)
    assert len(picks) == len(ids) == len(entries)
    assert all(classes[a] != classes[i] for i, a in picks.items())
    assert na.pick_offscreen(ids[::-1], classes, seed=1234) == picks
    known = set(ids)
    for i, a in picks.items():
        assert na.parse_pair_key(na.pair_key(i, "offscreen", a), known_ids=known) == (
            i,
            "offscreen",
            a,
        )
