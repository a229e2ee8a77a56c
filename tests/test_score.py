"""`python -m avkd_jax.score`: anyone's maps scored as `--mode=eval` scores ours, against the
LVS / EZ-VSL test code written out here (torch's corner-aligned bilinear upsampling, the
min-max normalisation, the median index of np.sort, the consensus ground truth)."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.paths import REPO
from helpers.real_disks import write_lines, write_xml
from helpers.reference_protocol import vggss_gt

from avkd_jax.errors import MediaError
from avkd_jax.eval import annotations, extended, is3, maps_file, scoring

META = REPO.parent / "shared" / "metadata"
needs_meta = pytest.mark.skipif(not META.is_dir(), reason=f"{META} is not here")


def reference_ciou(heatmap, gt):
    """EZ-VSL's test loop for one sample: upsample, normalise, median threshold, cIoU."""
    t = torch.from_numpy(np.asarray(heatmap, np.float32))[None, None]
    pred = F.interpolate(t, size=(224, 224), mode="bilinear", align_corners=True)[0, 0].numpy()
    lo, hi = pred.min(), pred.max()
    if hi - lo != 0:
        pred = (pred - lo) / (hi - lo)
    threshold = np.sort(pred.flatten())[int(pred.shape[0] * pred.shape[1] / 2)]
    infer = np.zeros((224, 224))
    infer[pred >= threshold] = 1
    return np.sum(infer * gt) / (np.sum(gt) + np.sum(infer * (gt == 0)))


def reference_flickr_gt(boxes):
    gt = np.zeros((224, 224))
    for box in boxes:
        xmin, ymin, xmax, ymax = [int(224 * int(c) / 256) for c in box]
        temp = np.zeros((224, 224))
        temp[ymin:ymax, xmin:xmax] = 1
        gt += temp
    gt /= 2
    gt[gt > 1] = 1
    return gt


def reference_summary(cious):
    """cIoU@0.5 and sklearn.metrics.auc over the thresholds 0.05 * i, in percent."""
    cious = np.asarray(cious)
    thr = [0.05 * i for i in range(21)]
    rates = [np.sum(cious >= t) / len(cious) for t in thr]
    auc = sum((thr[i + 1] - thr[i]) * (rates[i] + rates[i + 1]) / 2 for i in range(20))
    return 100 * np.mean(cious >= 0.5), 100 * auc


FLICKR = {
    "101": [[0, 0, 128, 128], [10, 10, 140, 120], [0, 0, 100, 255]],
    "102": [[64, 64, 192, 192], [70, 60, 200, 180]],
    "103": [[100, 100, 255, 255], [0, 0, 30, 30], [120, 90, 250, 250]],
    "104": [[0, 128, 256, 256], [0, 140, 250, 256]],
}


@pytest.fixture
def flickr_disk(tmp_path):
    for id_, boxes in FLICKR.items():
        write_xml(tmp_path, id_, boxes)
    write_lines(tmp_path / "test.csv", [f"{i},0" for i in FLICKR], newline="\r\n")
    return tmp_path


def random_maps(ids, shape=(7, 7), seed=0):
    rng = np.random.default_rng(seed)
    return {i: rng.normal(size=shape) for i in ids}


def run_score(*args, check=True):
    return subprocess.run(
        [sys.executable, "-m", "avkd_jax.score", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=check,
    )


@pytest.mark.parametrize("shape", [(7, 7), (14, 14), (224, 224), (5, 9)])
def test_flickr_scores_match_the_reference(flickr_disk, shape):
    maps = random_maps(FLICKR, shape, seed=shape[0])
    maps["104"] = np.zeros(shape)  # A constant map: every cell inferred.
    pairs = scoring.read_pairs("flickr", flickr_disk / "Annotations", flickr_disk / "test.csv")
    out = scoring.score("flickr", maps, pairs)
    want = {i: reference_ciou(maps[i], reference_flickr_gt(b)) for i, b in FLICKR.items()}
    assert out["per_pair"] == pytest.approx(want, abs=1e-6)
    ciou, auc = reference_summary([want[i] for i in FLICKR])
    assert out["metrics"]["ciou"] == pytest.approx(ciou)
    assert out["metrics"]["auc"] == pytest.approx(auc)
    assert out["n_pairs"] == 4 and out["metrics"]["n"] == 4


def test_vggss_scores_match_the_reference_and_first_box_only(tmp_path):
    entries = [
        {"file": "a_000001", "class": "dog", "bbox": [[0.1, 0.2, 0.5, 0.9], [0.6, 0.0, 1.2, 0.4]]},
        {"file": "b_000002", "class": "cat", "bbox": [[-0.1, 0.3, 0.7, 0.8]]},
        {"file": "c_000003", "class": "car", "bbox": [[0.0, 0.0, 1.0, 1.0]]},
    ]
    (tmp_path / "vggss.json").write_text(json.dumps(entries))
    write_lines(tmp_path / "test.csv", ["a_000001", "b_000002", "c_000003"])
    maps = random_maps(["a_000001", "b_000002", "c_000003"], seed=3)
    for first in (False, True):
        pairs = scoring.read_pairs(
            "vggss", tmp_path / "vggss.json", tmp_path / "test.csv", first_box_only=first
        )
        out = scoring.score("vggss", maps, pairs)
        for e in entries:
            boxes = e["bbox"][:1] if first else e["bbox"]
            want = reference_ciou(maps[e["file"]], vggss_gt(boxes))
            assert out["per_pair"][e["file"]] == pytest.approx(want, abs=1e-6)
    # The second box of a_000001 adds cells: the two readings differ there only.
    both = scoring.score(
        "vggss", maps, scoring.read_pairs("vggss", tmp_path / "vggss.json", tmp_path / "test.csv")
    )
    assert both["per_pair"]["a_000001"] != out["per_pair"]["a_000001"]
    assert both["per_pair"]["c_000003"] == out["per_pair"]["c_000003"]


def test_cli_writes_scores_json(flickr_disk, tmp_path):
    maps = random_maps(FLICKR, seed=1)
    maps_file.write_maps(tmp_path / "maps.npz", maps)
    out = tmp_path / "scores.json"
    r = run_score(
        "--protocol=flickr",
        f"--maps={tmp_path / 'maps.npz'}",
        f"--annotations={flickr_disk / 'Annotations'}",
        f"--test_list={flickr_disk / 'test.csv'}",
        f"--out={out}",
    )
    doc = json.loads(out.read_text())
    assert doc["protocol"] == "flickr" and doc["n_pairs"] == 4
    want = [reference_ciou(np.float32(maps[i]), reference_flickr_gt(b)) for i, b in FLICKR.items()]
    assert doc["metrics"]["ciou"] == pytest.approx(reference_summary(want)[0])
    assert doc["metrics"]["auc"] == pytest.approx(reference_summary(want)[1])
    assert "4 pairs scored" in r.stdout


def test_bad_maps_are_named(flickr_disk, tmp_path):
    pairs = scoring.read_pairs("flickr", flickr_disk / "Annotations", flickr_disk / "test.csv")
    maps = random_maps(FLICKR)
    with pytest.raises(MediaError, match=r"no map for 1 of 4 pairs: 103"):
        scoring.score("flickr", {k: v for k, v in maps.items() if k != "103"}, pairs)
    with pytest.raises(MediaError, match=r"does not score: 999"):
        scoring.score("flickr", {**maps, "999": maps["101"]}, pairs)
    bad = dict(maps, **{"102": np.full((7, 7), np.nan)})
    maps_file.write_maps(tmp_path / "nan.npz", bad)
    with pytest.raises(MediaError, match=r"map '102' has 49 NaN"):
        maps_file.read_maps(tmp_path / "nan.npz")
    np.savez(tmp_path / "three_d.npz", **{"101": np.zeros((1, 7, 7))})
    with pytest.raises(MediaError, match=r"map '101' has shape \(1, 7, 7\)"):
        maps_file.read_maps(tmp_path / "three_d.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(MediaError, match="junk.npz: not a .npz"):
        maps_file.read_maps(tmp_path / "junk.npz")


def test_unannotated_ids_and_allow_missing(flickr_disk, tmp_path):
    write_lines(tmp_path / "list.csv", [f"{i},0" for i in [*FLICKR, "105"]], newline="\r\n")
    pairs = scoring.read_pairs("flickr", flickr_disk / "Annotations", tmp_path / "list.csv")
    maps = random_maps(FLICKR)
    with pytest.raises(MediaError, match=r"1 test id\(s\) have no annotation: 105"):
        scoring.score("flickr", maps, pairs)
    partial = {k: v for k, v in maps.items() if k != "101"}
    out = scoring.score("flickr", partial, pairs, allow_missing=True)
    assert out["missing"] == {"maps": ["101"], "annotations": ["105"]}
    want = [reference_ciou(maps[i], reference_flickr_gt(FLICKR[i])) for i in ("102", "103", "104")]
    assert out["n_pairs"] == 3
    assert out["metrics"]["ciou"] == pytest.approx(reference_summary(want)[0])
    r = run_score(
        "--protocol=flickr",
        "--maps=/nonexistent/maps.npz",
        f"--annotations={flickr_disk / 'Annotations'}",
        f"--test_list={flickr_disk / 'test.csv'}",
        check=False,
    )
    assert r.returncode == 1 and "error: /nonexistent/maps.npz: file does not exist" in r.stderr


def test_negatives_csv_is_read_and_checked(tmp_path):
    write_lines(tmp_path / "neg.csv", ["video,audio,label", "a,b,non-sounding", "c,c,non-sounding"])
    assert annotations.read_negatives(tmp_path / "neg.csv") == [("a", "b"), ("c", "c")]
    assert [annotations.pair_key(*p) for p in [("a", "b"), ("c", "c")]] == ["a__b", "c"]
    write_lines(tmp_path / "dup.csv", ["video,audio,label", "a,b,x", "a,b,x"])
    with pytest.raises(MediaError, match="line 3: the pair"):
        annotations.read_negatives(tmp_path / "dup.csv")
    write_lines(tmp_path / "nohead.csv", ["a,b,x"])
    with pytest.raises(MediaError, match="expected a header with 'video' and 'audio'"):
        annotations.read_negatives(tmp_path / "nohead.csv")


@needs_meta
def test_public_vggss_lists_all_pairs_scored(tmp_path):
    ids = annotations.read_test_ids(META / "vggss_test.csv")
    maps_file.write_maps(tmp_path / "maps.npz", random_maps(ids, seed=7))
    start = time.perf_counter()
    run_score(
        "--protocol=vggss",
        f"--maps={tmp_path / 'maps.npz'}",
        f"--annotations={META / 'vggss.json'}",
        f"--test_list={META / 'vggss_test.csv'}",
        f"--out={tmp_path / 'scores.json'}",
    )
    seconds = time.perf_counter() - start
    doc = json.loads((tmp_path / "scores.json").read_text())
    assert doc["n_pairs"] == len(ids) == 5158
    assert doc["missing"] == {"maps": [], "annotations": []}
    print(f"vggss: {doc['n_pairs']} pairs scored in {seconds:.1f} s")


@pytest.mark.slow
def test_saved_maps_rescore_to_the_evaluation(trained_run):
    """--mode=eval's maps.npz, scored by the scorer, gives results.json's numbers."""
    import pathlib

    run = pathlib.Path(trained_run)
    results = json.loads((run / "results.json").read_text())["sets"]
    (set_name,) = results
    world = next((run.parent / "data").rglob("WORLD.json")).parent
    pairs = scoring.read_pairs("flickr", world / "Annotations", world / "test.csv")
    maps = maps_file.read_maps(run / "maps" / f"{set_name}.npz")
    out = scoring.score("flickr", maps, pairs)
    cious = json.loads((run / "cious.json").read_text())["sets"][set_name]
    want = dict(zip(cious["ids"], cious["cious"]["AVC"]))
    assert out["per_pair"] == pytest.approx(want, abs=1e-6)
    assert out["metrics"]["ciou"] == pytest.approx(results[set_name]["AVC"]["ciou"])
    assert out["metrics"]["auc"] == pytest.approx(results[set_name]["AVC"]["auc"])


def write_negatives(path, rows):
    write_lines(path, ["video,audio,label", *[f"{v},{a},non-sounding" for v, a in rows]])
    return path


def test_extended_flickr_feeds_every_pair_to_the_protocol(flickr_disk, tmp_path):
    rows = [("101", "102"), ("102", "103"), ("103", "101"), ("999", "999")]
    neg = write_negatives(tmp_path / "neg.csv", rows)
    pairs = scoring.read_pairs(
        "extended_flickr", flickr_disk / "Annotations", flickr_disk / "test.csv", neg
    )
    keys = [*FLICKR, "101__102", "102__103", "103__101", "999"]
    assert sorted(pairs.truth) == sorted(keys)
    maps = {k: v / 0.03 for k, v in random_maps(keys, seed=4).items()}
    out = scoring.score("extended_flickr", maps, pairs)
    assert out["n_pairs"] == 8
    assert out["metrics"]["n_pos"] == 4 and out["metrics"]["n_neg"] == 4
    # The same pairs scored one by one: positives with their consensus map and box count.
    bb, area, ciou, conf = [], [], [], []
    for k in keys:
        boxes = FLICKR.get(k)
        gt = reference_flickr_gt(boxes) if boxes else None
        c, f = extended.score_pair(extended.av_scores(extended.upsample_bicubic(maps[k])), gt)
        bb.append(len(boxes) if boxes else 0)
        area.append(gt.sum() if boxes else 0.0)
        ciou.append(c)
        conf.append(f)
        assert out["per_pair"][k]["ciou"] == pytest.approx(c)
    want = extended.headline(extended.full_stats(bb, area, ciou, conf))
    for name in ("ap", "max_f1", "loc_acc", "auc"):
        assert out["metrics"][name] == pytest.approx(want[name], nan_ok=True)
    with pytest.raises(MediaError, match="has the key 101 of a positive"):
        scoring.read_pairs(
            "extended_flickr",
            flickr_disk / "Annotations",
            flickr_disk / "test.csv",
            write_negatives(tmp_path / "bad.csv", [("101", "101")]),
        )
    with pytest.raises(ValueError, match="--negatives .* is required"):
        scoring.read_pairs("extended_flickr", flickr_disk / "Annotations", flickr_disk / "test.csv")


def test_is3_scores_every_instance(tmp_path):
    entries = [
        {"image": f"/x/{s}.jpg", "audio": f"/y/{s}.wav", "gt_box": b}
        for s, b in [
            ("cat_dog_1_cat", [10, 10, 100, 120]),
            ("cat_dog_1_dog", [120, 40, 220, 200]),
            ("car_man_2_car", [0, 100, 224, 224]),
            ("car_man_2_man", [50, 0, 90, 90]),
        ]
    ]
    (tmp_path / "is3.json").write_text(json.dumps(entries))
    pairs = scoring.read_pairs("is3", tmp_path / "is3.json")
    stems = [e["image"][3:-4] for e in entries]
    maps = random_maps(stems, seed=5)
    out = scoring.score("is3", maps, pairs)
    acc = is3.IS3Scores()
    for e, s in zip(entries, stems):
        acc.add(s, maps[s], e["gt_box"])
    assert out["metrics"] == pytest.approx(acc.result())
    assert out["metrics"]["n_scenes"] == 2 and out["n_pairs"] == 4
    with pytest.raises(MediaError, match="no map for 1 of 4 pairs: car_man_2_man"):
        scoring.score("is3", {k: v for k, v in maps.items() if k != "car_man_2_man"}, pairs)


def test_negative_audio_separates_a_model_that_hears_from_one_that_does_not(flickr_disk):
    pairs = scoring.read_pairs(
        "negative_audio_flickr", flickr_disk / "Annotations", flickr_disk / "test.csv"
    )
    tau = 0.03
    ids = list(FLICKR)
    others = dict(zip(ids, ids[1:] + ids[:1]))
    blob = np.full((7, 7), -0.5)
    blob[1:4, 1:4] = 0.8  # An object-shaped map of cosine similarities.
    blind, hearing = {}, {}
    for i in ids:
        for m, negative in ((blind, blob), (hearing, np.full((7, 7), -0.9))):
            m[i] = blob / tau
            for key in (f"{i}__silence", f"{i}__noise", f"{i}__{others[i]}"):
                m[key] = negative / tau
    b = scoring.score("negative_audio_flickr", blind, pairs, tau=tau)["metrics"]
    h = scoring.score("negative_audio_flickr", hearing, pairs, tau=tau)["metrics"]
    # 3 x 3 of 7 x 7 cells above S = 0, upsampled: pIA about 9/49 of the image.
    for kind in ("silence", "noise", "offscreen"):
        assert h[f"pia_{kind}"] == 0 and h[f"aoc_{kind}"] == 100
        assert 12 < b[f"pia_{kind}"] < 25 and b[f"aoc_{kind}"] < 90
        assert b[f"n_{kind}"] == 4
    del hearing["103__104"]
    with pytest.raises(MediaError, match=r"no off-screen map .* for 1 image\(s\): 103"):
        scoring.score("negative_audio_flickr", hearing, pairs)
    hearing["103__104"] = hearing["103__101"] = hearing["101"]
    with pytest.raises(MediaError, match="two off-screen maps for 103"):
        scoring.score("negative_audio_flickr", hearing, pairs)


@needs_meta
def test_public_extended_vggss_and_is3_all_pairs_scored(tmp_path):
    ids = annotations.read_test_ids(META / "vggss_test.csv")
    negatives = annotations.read_negatives(META / "vggss_test_plus_silent.csv")
    keys = ids + [annotations.pair_key(*p) for p in negatives]
    maps_file.write_maps(tmp_path / "maps.npz", random_maps(keys, seed=8))
    start = time.perf_counter()
    run_score(
        "--protocol=extended_vggss",
        f"--maps={tmp_path / 'maps.npz'}",
        f"--annotations={META / 'vggss.json'}",
        f"--test_list={META / 'vggss_test.csv'}",
        f"--negatives={META / 'vggss_test_plus_silent.csv'}",
        f"--out={tmp_path / 'scores.json'}",
    )
    seconds = time.perf_counter() - start
    doc = json.loads((tmp_path / "scores.json").read_text())
    assert doc["n_pairs"] == len(keys) == 10316
    assert doc["metrics"]["n_pos"] == 5158 and doc["metrics"]["n_neg"] == 5158
    print(f"extended_vggss: {doc['n_pairs']} pairs scored in {seconds:.1f} s")
    stems = list(is3.load_is3(META / "is3_synthetic3240_bbox.json"))
    maps_file.write_maps(tmp_path / "is3.npz", random_maps(stems, seed=9))
    run_score(
        "--protocol=is3",
        f"--maps={tmp_path / 'is3.npz'}",
        f"--annotations={META / 'is3_synthetic3240_bbox.json'}",
        f"--out={tmp_path / 'is3.json'}",
    )
    doc = json.loads((tmp_path / "is3.json").read_text())
    assert doc["n_pairs"] == 6480 and doc["metrics"]["n_scenes"] == 3240
