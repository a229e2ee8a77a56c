"""Pictures of an evaluation: the Fig. 3 grid, the cIoU histogram, the success-rate curve."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from avkd_jax import pictures
from avkd_jax.eval import evaluator, protocol


def test_overlay_is_the_hand_worked_blend():
    image = np.full([3, 5, 3], 100, np.uint8)
    # jet(0) = (0, 0, 0.5) → (0, 0, 128); jet(1) = (0.5, 0, 0) → (128, 0, 0); half of each
    # over grey 100: (50, 50, 114) and (114, 50, 50).
    cold = pictures.overlay(image, np.zeros([224, 224]))
    hot = pictures.overlay(image, np.ones([224, 224]))
    assert cold.shape == hot.shape == (3, 5, 3) and cold.dtype == np.uint8
    np.testing.assert_array_equal(cold, np.broadcast_to([50, 50, 114], (3, 5, 3)))
    np.testing.assert_array_equal(hot, np.broadcast_to([114, 50, 50], (3, 5, 3)))
    # The map is stretched over the picture: its left half hot, its right half cold.
    half = np.zeros([224, 224])
    half[:, :112] = 1
    wide = pictures.overlay(np.full([20, 40, 3], 100, np.uint8), half)
    np.testing.assert_array_equal(wide[:, :15], np.broadcast_to([114, 50, 50], (20, 15, 3)))
    np.testing.assert_array_equal(wide[:, 25:], np.broadcast_to([50, 50, 114], (20, 15, 3)))


def test_success_curve_is_the_auc():
    cious = [0.0, 0.12, 0.15, 0.5, 0.5, 0.93]
    thresholds, fractions = protocol.success_curve(cious)
    brute = [sum(c >= 0.05 * i for c in cious) / len(cious) for i in range(21)]
    np.testing.assert_allclose(fractions, brute)
    assert thresholds[3] == 0.05 * 3 > 0.15  # 0.15000000000000002, as in the reference
    assert fractions[3] == 3 / 6
    area = sum((fractions[i] + fractions[i + 1]) / 2 * 0.05 for i in range(20))
    assert protocol.summarize(cious)["auc"] == pytest.approx(100 * area)


def photo_like(rng, size):
    """Smooth colour regions with sensor-like noise: a picture PNG compresses as a photo."""
    coarse = rng.integers(0, 256, [6, 6, 3], dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))
    noisy = smooth.astype(np.float64) + rng.normal(0, 6, smooth.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def fake_split(n=30, size=112, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"{9000000 + i}" for i in range(n)]
    yy, xx = np.mgrid[0:224, 0:224] / 224
    pics = []
    for i in ids[:4]:
        cx, cy = rng.uniform(0.3, 0.7, 2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.02)
        pics.append(
            {
                "id": i,
                "image": photo_like(rng, size),
                "boxes": np.array([[cx - 0.2, cy - 0.2, cx + 0.2, cy + 0.2]] * 3),
                "gt": np.zeros([224, 224]),
                "maps": {"AVC": blob, "OG-AVC": blob**2, "OG-AVC-DETR": np.sqrt(blob)},
            }
        )
    cious = {v: rng.random(n).tolist() for v in ("AVC", "OG-AVC", "OG-AVC-DETR", "centre_prior")}
    return evaluator.SplitEval({}, ids, cious, pics)


def test_write_pictures_makes_small_pngs_of_the_expected_size(tmp_path):
    paths = pictures.write_pictures(str(tmp_path / "pictures"), "flickr_test", fake_split())
    names = sorted(p.rsplit("/", 1)[1] for p in paths)
    assert names == ["flickr_test_ciou_hist.png", "flickr_test_maps.png", "flickr_test_success.png"]
    for path in paths:
        with Image.open(path) as im:
            im.load()
            size = im.size
        assert (tmp_path / "pictures" / path.rsplit("/", 1)[1]).stat().st_size < 200_000, path
        if path.endswith("_maps.png"):
            # 2 + 3 columns and 4 rows of 1.45 in, plus the title band, at 80 dpi.
            assert size == (round(5 * 1.45 * 80), round((4 * 1.45 + 0.35) * 80))
    assert not list((tmp_path / "pictures").glob("*.tmp*"))


def test_no_pictures_without_maps(tmp_path):
    split = fake_split()
    split.pictures = []
    paths = pictures.write_pictures(str(tmp_path), "s", split)
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == ["s_ciou_hist.png", "s_success.png"]


@pytest.mark.slow
def test_evaluation_writes_results_cious_and_pictures(trained_run):
    """The trained run's final evaluation: every variant has its inputs (the synthetic
    teacher's test-split hints are made by the evaluation itself), the per-sample cIoUs
    give the reported numbers, and the three pictures are there."""
    with open(os.path.join(trained_run, "results.json")) as f:
        results = json.load(f)["sets"]["synthetic_test"]
    with open(os.path.join(trained_run, "cious.json")) as f:
        cious = json.load(f)["sets"]["synthetic_test"]
    variants = ["AVC", "OG-AVC", "OG-AVC-DETR", "untrained", "centre_prior", "every_object"]
    assert list(results) == variants  # nothing skipped; the student's rows first
    assert len(cious["ids"]) == len(set(cious["ids"])) == 40
    for variant in variants:
        summary = protocol.summarize(cious["cious"][variant])
        for key in ("ciou", "auc", "mean_ciou", "n"):
            assert results[variant][key] == pytest.approx(summary[key]), (variant, key)
    with open(os.path.join(trained_run, "results.md")) as f:
        assert "| OG-AVC-DETR |" in f.read()

    folder = os.path.join(trained_run, "pictures")
    for kind in ("maps", "ciou_hist", "success"):
        path = os.path.join(folder, f"synthetic_test_{kind}.png")
        assert os.path.getsize(path) < 200_000, path
    with Image.open(os.path.join(folder, "synthetic_test_maps.png")) as im:
        # The first 4 test ids, 2 + 3 columns (AVC, OG-AVC, OG-AVC-DETR).
        assert im.size == (round(5 * 1.45 * 80), round((4 * 1.45 + 0.35) * 80))
