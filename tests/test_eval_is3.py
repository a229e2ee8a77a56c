"""The IS3 protocol (`avkd_jax/eval/is3.py`) against a transcription of kaistmm/SSLalignment's
scoring (test.py::validate, utils.py::Evaluator_iiou, datasets.py::bbox2gtmap) and on
hand-worked cases; `load_is3` on the real annotation file where `<repo>/../shared/metadata`
has it."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.paths import REPO
from sklearn import metrics

from avkd_jax.eval import is3, protocol

META = REPO.parent / "shared" / "metadata"
IS3_JSON = META / "is3_synthetic3240_bbox.json"
N = 224 * 224


# ---- The reference, transcribed (torch / numpy / sklearn as it uses them) ----


def ref_normalize_img(value):
    # utils.normalize_img: a constant map is returned unchanged.
    vmin, vmax = value.min(), value.max()
    if not (vmax - vmin) == 0:
        value = (value - vmin) / (vmax - vmin)
    return value


def ref_gt_map(gt_box):
    # datasets.load_all_bboxes ('is3'): int() of each coordinate; bbox2gtmap: union of 1s.
    bboxes = [[int(c) for c in gt_box]]
    gt = np.zeros([224, 224])
    for xmin, ymin, xmax, ymax in bboxes:
        temp = np.zeros([224, 224])
        temp[ymin:ymax, xmin:xmax] = 1
        gt += temp
    gt[gt > 0] = 1
    return gt


class RefEvaluatorIIoU:
    """utils.Evaluator_iiou, the parts test.py::validate uses."""

    def __init__(self):
        self.ciou, self.ciou_adap, self.iou, self.iou_adap = [], [], {}, {}

    @staticmethod
    def _ciou(infer, gtmap, thres):
        infer_map = np.zeros((224, 224))
        infer_map[infer > thres] = 1
        return np.sum(infer_map * gtmap) / (np.sum(gtmap) + np.sum(infer_map * (gtmap == 0)))

    def cal_CIOU(self, infer, gtmap, thres):
        self.ciou.append(self._ciou(infer, gtmap, thres))

    def cal_CIOU_adap(self, infer, gtmap, thres):
        self.ciou_adap.append(self._ciou(infer, gtmap, thres))

    @staticmethod
    def _auc(values):
        cious = [np.sum(np.array(values) >= 0.05 * i) / len(values) for i in range(21)]
        return metrics.auc([0.05 * i for i in range(21)], cious)

    @staticmethod
    def _iauc(table):
        iious = []
        for i in range(21):
            iiou = []
            for name in table:
                pair = np.array(table[name])
                pair[pair >= 0.05 * i] = 1
                pair[pair < 0.05 * i] = 0
                iiou.append(np.min(pair))
            iious.append(np.mean(iiou))
        return metrics.auc([0.05 * i for i in range(21)], iious)

    @staticmethod
    def _iiou(table):
        out = []
        for name in table:
            pair = np.array(table[name])
            pair[pair >= 0.5] = 1
            pair[pair < 0.5] = 0
            out.append(np.min(pair))
        return np.mean(out)

    def finalize(self):
        return {
            "ciou": 100 * np.sum(np.array(self.ciou) >= 0.5) / len(self.ciou),
            "ciou_adaptive": 100 * np.sum(np.array(self.ciou_adap) >= 0.5) / len(self.ciou_adap),
            "iiou": 100 * self._iiou(self.iou),
            "iiou_adaptive": 100 * self._iiou(self.iou_adap),
            "auc": 100 * self._auc(self.ciou),
            "auc_adaptive": 100 * self._auc(self.ciou_adap),
            "iauc": 100 * self._iauc(self.iou),
            "iauc_adaptive": 100 * self._iauc(self.iou_adap),
            "mean_ciou": 100 * np.mean(self.ciou),
        }


def ref_validate(samples):
    """test.py::validate's loop over (name, S, gt_box): upsample, normalise, both thresholds,
    scenes by short_name."""
    ev = RefEvaluatorIIoU()
    for name, scores, gt_box in samples:
        heatmap = F.interpolate(
            torch.tensor(scores, dtype=torch.float32)[None, None],
            size=(224, 224),
            mode="bilinear",
            align_corners=True,
        )
        pred_av = ref_normalize_img(heatmap.numpy()[0, 0])
        gt_map = ref_gt_map(gt_box)
        thr_av = np.sort(pred_av.flatten())[int(pred_av.shape[0] * pred_av.shape[1] * 0.5)]
        ev.cal_CIOU(pred_av, gt_map, thr_av)
        gt_nums = (gt_map != 0).sum()
        if int(gt_nums) == 0:
            gt_nums = int(pred_av.shape[0] * pred_av.shape[1]) // 2
        thr_adap = np.sort(pred_av.flatten())[
            int(pred_av.shape[0] * pred_av.shape[1]) - int(gt_nums)
        ]
        ev.cal_CIOU_adap(pred_av, gt_map, thr_adap)
        short_name = "_".join(name.split("/")[-1].replace(".jpg", "").split("_")[:-1])
        ev.iou.setdefault(short_name, []).append(ev.ciou[-1])
        ev.iou_adap.setdefault(short_name, []).append(ev.ciou_adap[-1])
    return ev


def synthetic_samples(size, seed=0, n_scenes=12):
    """Two instances per scene; maps peaked near the box (so IoUs spread around 0.5), some
    quantised (ties), one constant; boxes with fractions, at the borders, a 3-part stem."""
    rng = np.random.default_rng(seed)
    names = [("cat", "dog")] * (n_scenes - 1)
    samples = []
    for s in range(n_scenes):
        a, b = names[s] if s < n_scenes - 1 else ("train", "subway")
        scene = f"{a}_{b}_{100 + s}" if s < n_scenes - 1 else "fox_train"
        for k, inst in enumerate((a, b)):
            x0, y0 = rng.uniform(0, 100, 2)
            w, h = rng.uniform(60, 224, 2)
            box = [x0, y0, min(x0 + w, 224.0), min(y0 + h, 224.0)]
            if s == 1:
                box = [0.0, 0.0, 224.0, 61.5] if k == 0 else [150.9, 100.2, 224.0, 224.0]
            if s % 3 == 0:
                box = [float(int(c)) for c in box]
            yy, xx = np.meshgrid(
                np.linspace(0, 224, size), np.linspace(0, 224, size), indexing="ij"
            )
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            spread = rng.uniform(20, 80)
            bump = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * spread**2))
            scores = (bump + rng.uniform(0, 0.6) * rng.standard_normal((size, size))) / 0.03
            if s % 4 == 2:
                scores = np.round(scores / 10) * 10  # few distinct values: ties at the thresholds
            if s == 5 and k == 1:
                scores = np.full((size, size), -2.0)  # stays exactly constant in torch too
            samples.append((f"{scene}_{inst}", scores.astype(np.float32), box))
    return samples


def ours(samples):
    acc = is3.IS3Scores()
    for stem, scores, box in samples:
        acc.add(stem, scores, box)
    return acc


@pytest.mark.parametrize("size", [224, 7])
def test_matches_the_reference_transcription(size):
    samples = synthetic_samples(size)
    ev = ref_validate(samples)
    acc = ours(samples)
    per = acc.per_sample()
    got_ciou = np.array([per[s]["ciou"] for s, _, _ in samples])
    got_adap = np.array([per[s]["ciou_adaptive"] for s, _, _ in samples])
    res = acc.result()
    ref = ev.finalize()
    assert res["n_instances"] == 2 * 12 and res["n_scenes"] == 12
    assert sorted(ev.iou) == sorted({v["scene"] for v in per.values()})
    if size == 224:
        # No resampling: every number is the reference's exactly.
        np.testing.assert_array_equal(got_ciou, ev.ciou)
        np.testing.assert_array_equal(got_adap, ev.ciou_adap)
        for key, value in ref.items():
            assert res[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    else:
        # Our upsampling is torch's to ~1e-5, which can move a pixel across a threshold.
        np.testing.assert_allclose(got_ciou, ev.ciou, rtol=0, atol=1e-3)
        np.testing.assert_allclose(got_adap, ev.ciou_adap, rtol=0, atol=1e-3)
        for key, value in ref.items():
            assert res[key] == pytest.approx(value, abs=1e-2), key
    # The data spread enough that the metrics are not trivial.
    assert 0 < res["ciou"] < 100 and 0 < res["iiou"] < res["ciou"]
    assert 0 < res["iauc"] <= res["auc"] < 100


def test_value_space_scale_invariant():
    samples = synthetic_samples(7, seed=3, n_scenes=4)
    base = ours(samples).result()
    # A power-of-two scale is exact in float32, so nothing may move.
    assert ours([(s, m * 0.25, b) for s, m, b in samples]).result() == base


# ---- Hand-worked cases ----


def test_gt_map_truncation_and_border():
    gt = is3.gt_map([200.7, 0.0, 224.0, 30.9])  # -> cols 200..223, rows 0..29
    assert gt.shape == (224, 224) and gt.dtype == np.float64
    assert gt.sum() == 24 * 30 and is3.adaptive_k(gt) == 720
    assert gt[0, 223] == 1 and gt[29, 200] == 1
    assert gt[30, 200] == 0 and gt[0, 199] == 0
    np.testing.assert_array_equal(gt, ref_gt_map([200.7, 0.0, 224.0, 30.9]))
    assert is3.adaptive_k(np.zeros((224, 224))) == N // 2  # the reference's fallback


def test_median_rule_is_strict():
    grad = np.arange(N, dtype=np.float32).reshape(224, 224)
    box = [0, 112, 224, 224]  # rows 112..223: the upper half of the values, 25,088 pixels
    pred = is3.protocol_map(grad)
    inferred = is3.median_binary_map(pred)
    # Threshold np.sort(pred)[25088] is pixel 25088 itself (row 112, col 0); '>' drops it.
    assert inferred.sum() == 25087 and inferred[112, 0] == 0 and inferred[112, 1] == 1
    assert is3.instance_iou(inferred, is3.gt_map(box)) == 25087 / 25088
    assert is3.score_instance(grad, box) == (25087 / 25088, 25087 / 25088)
    # The LVS rule ('>=') would keep it.
    assert protocol.sample_ciou(pred, is3.gt_map(box)) == 1.0
    # Full-frame box: k = 224 * 224, threshold the minimum, every other pixel inferred.
    assert is3.score_instance(grad, [0, 0, 224, 224])[1] == (N - 1) / N


def test_adaptive_rule_ties():
    box = [0, 0, 10, 10]  # k = 100
    gt = is3.gt_map(box)
    a = np.zeros((224, 224))
    a[:10, :10] = 1
    a[9, 9] = 0  # 99 ones in the box: threshold np.sort(a)[N - 100] = 0
    assert is3.score_instance(a, box) == (0.99, 0.99)
    b = np.zeros((224, 224))
    b[:10, :10] = 1
    b[50, 50:55] = 1  # 105 ones: the 100th largest is 1 and nothing is > 1
    assert is3.adaptive_binary_map(is3.protocol_map(b), 100).sum() == 0
    assert is3.score_instance(b, box) == (100 / 105, 0.0)
    c = np.zeros((224, 224))
    c[:6, :10] = 2  # 60 twos, then 40 + 20 ones tied across the 100th largest
    c[6:10, :10] = 1
    c[100, :20] = 1
    assert is3.adaptive_binary_map(is3.protocol_map(c), 100).sum() == 60
    assert is3.score_instance(c, box) == (100 / 120, 0.6)
    assert is3.instance_iou(is3.adaptive_binary_map(is3.protocol_map(c), 100), gt) == 0.6


def test_scene_one_passes_one_fails():
    box = [0, 0, 10, 10]
    good = np.zeros((224, 224))
    good[:10, :10] = 1
    good[9, 9] = 0  # IoU 0.99 under both rules
    bad = np.zeros((224, 224))
    bad[100:110, 100:110] = 1  # all its mass outside the box: IoU 0
    acc = is3.IS3Scores()
    acc.add("cat_dog_1_cat", good, box)
    acc.add("cat_dog_1_dog", bad, box)
    acc.add("cat_dog_2_cat", good, box)
    acc.add("cat_dog_2_dog", good, box)
    res = acc.result()
    assert res["n_instances"] == 4 and res["n_scenes"] == 2
    assert res["ciou"] == 75.0 and res["ciou_adaptive"] == 75.0
    assert res["iiou"] == 50.0 and res["iiou_adaptive"] == 50.0  # scene 1 counts 0
    # Instances: 1 at t = 0, 0.75 for t = 0.05..0.95, 0 at t = 1:
    # 0.05 * ((1 + 0.75) / 2 + 18 * 0.75 + 0.75 / 2) = 0.7375.
    assert res["auc"] == pytest.approx(73.75) and res["auc_adaptive"] == pytest.approx(73.75)
    # Scenes: 1 at t = 0 (IoU 0 >= 0), 0.5 for t = 0.05..0.95, 0 at t = 1: 0.5.
    assert res["iauc"] == pytest.approx(50.0) and res["iauc_adaptive"] == pytest.approx(50.0)
    assert res["mean_ciou"] == pytest.approx(100 * 0.99 * 3 / 4)
    assert acc.per_sample()["cat_dog_1_dog"] == {
        "scene": "cat_dog_1",
        "ciou": 0.0,
        "ciou_adaptive": 0.0,
    }


def test_scene_curve_float_thresholds():
    # Scene mins 0.3 and 0.55; 0.05 * 6 = 0.30000000000000004 > 0.3, 0.05 * 11 == 0.55.
    table = {"s1": [0.3, 0.9], "s2": [0.6, 0.55]}
    curve = is3.scene_success_curve(table)
    assert curve == [1.0] * 6 + [0.5] * 6 + [0.0] * 9
    s = is3.scene_summary(table)
    assert s["iiou"] == 50.0
    # 0.05 * (5 * 1 + 0.75 + 5 * 0.5 + 0.25) = 0.425
    assert s["iauc"] == pytest.approx(42.5)
    assert RefEvaluatorIIoU._iauc(table) == pytest.approx(0.425)


def test_constant_map_marks_nothing():
    box = [10, 10, 50, 50]
    for c in (-2.0, 3.25, 0.1):
        assert not is3.protocol_map(np.full((7, 7), c)).any()
        assert is3.score_instance(np.full((7, 7), c), box) == (0.0, 0.0)
    # The reference's result for 3.25 is float32 rounding noise (torch's upsampling of a
    # constant is uneven by an ulp, then stretched to [0, 1]); -2.0 stays constant there too.
    ev = ref_validate([("a_b_1_a", np.full((7, 7), -2.0, np.float32), box)])
    assert ev.ciou == [0.0] and ev.ciou_adap == [0.0]


# ---- Bad input ----


def write(tmp_path, entries, name="is3.json"):
    path = tmp_path / name
    path.write_text(json.dumps(entries))
    return path


def entry(stem, box=(1.0, 2.0, 30.0, 40.0)):
    return {
        "image": f"/x/visual_frames/{stem}.jpg",
        "audio": f"/x/audio_wav/{stem}.wav",
        "gt_box": list(box),
    }


def test_load_is3_small(tmp_path):
    path = write(tmp_path, [entry("cat_dog_1_cat"), entry("cat_dog_1_dog", (0, 0, 224, 224))])
    a = is3.load_is3(path)
    assert list(a) == ["cat_dog_1_cat", "cat_dog_1_dog"]
    assert a["cat_dog_1_dog"] == {
        "scene": "cat_dog_1",
        "instance": "dog",
        "image": "cat_dog_1_dog.jpg",
        "audio": "cat_dog_1_dog.wav",
        "box": [0.0, 0.0, 224.0, 224.0],
    }


@pytest.mark.parametrize(
    "entries, match",
    [
        ({"a": 1}, "JSON list"),
        ([entry("cat_dog_1_cat"), "x"], r"entry 1 is not an object"),
        ([{"image": "/x/cat_dog_1_cat.jpg", "gt_box": [0, 0, 5, 5]}], r"entry 0 lacks 'audio'"),
        (
            [entry("cat_dog_1_cat", (0, 0, 5)), entry("cat_dog_1_dog")],
            r"entry 0 \(cat_dog_1_cat\).*4 numbers",
        ),
        (
            [entry("cat_dog_1_cat"), entry("cat_dog_1_dog", (0, -1, 5, 5))],
            r"entry 1 \(cat_dog_1_dog\).*outside",
        ),
        ([entry("cat_dog_1_cat"), entry("cat_dog_1_dog", (0, 0, 5, 230))], "outside"),
        ([entry("cat_dog_1_cat"), entry("cat_dog_1_dog", (3.2, 0, 3.9, 5))], "empty"),
        ([entry("cat_dog_1_cat"), entry("cat_dog_1_dog", (0, 0, "5", 5))], "non-number"),
        ([entry("cat_dog_1_cat")], r"scene 'cat_dog_1' has 1 instances \(cat_dog_1_cat\)"),
        ([entry(f"cat_dog_1_{x}") for x in ("cat", "dog", "cow")], "scene 'cat_dog_1' has 3"),
        ([entry("cat_dog_1_cat")] * 2, "appears twice"),
        ([entry("catdog")], "not '<scene>_<object>'"),
    ],
)
def test_load_is3_bad_entries(tmp_path, entries, match):
    path = write(tmp_path, entries)
    with pytest.raises(ValueError, match=match) as e:
        is3.load_is3(path)
    assert str(path) in str(e.value)


def test_load_is3_bad_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("[{")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        is3.load_is3(path)


def test_scores_bad_input(tmp_path):
    m = np.zeros((7, 7))
    acc = is3.IS3Scores()
    with pytest.raises(ValueError, match="no instance"):
        acc.result()
    acc.add("cat_dog_1_cat", m, [0, 0, 5, 5])
    with pytest.raises(ValueError, match="'cat_dog_1_cat' added twice"):
        acc.add("cat_dog_1_cat", m, [0, 0, 5, 5])
    with pytest.raises(ValueError, match="scene 'cat_dog_1' has 1 of its 2.*cat_dog_1_cat"):
        acc.result()
    with pytest.raises(ValueError, match="non-finite"):
        acc.add("cat_dog_1_dog", np.full((7, 7), np.nan), [0, 0, 5, 5])
    with pytest.raises(ValueError, match=r"one \[h, w\] map"):
        acc.add("cat_dog_1_dog", np.zeros((1, 7, 7)), [0, 0, 5, 5])
    with pytest.raises(ValueError, match="'cat_dog_1_dog'.*4 numbers"):
        acc.add("cat_dog_1_dog", m, [0, 0, 5])

    annotations = is3.load_is3(write(tmp_path, [entry("cat_dog_1_cat"), entry("cat_dog_1_dog")]))
    acc = is3.IS3Scores(annotations)
    with pytest.raises(ValueError, match="'cow_dog_1_cow' is not in the annotations"):
        acc.add("cow_dog_1_cow", m, [1, 2, 30, 40])
    with pytest.raises(ValueError, match="not the annotated"):
        acc.add("cat_dog_1_cat", m, [1, 2, 30, 41])
    acc.add("cat_dog_1_cat", m, [1, 2, 30, 40])
    acc.add("cat_dog_1_dog", m, np.array([1.0, 2.0, 30.0, 40.0]))
    assert acc.result()["n_scenes"] == 1
    with pytest.raises(ValueError, match="k must be"):
        is3.adaptive_binary_map(np.zeros((4, 4)), 17)


@pytest.mark.skipif(not IS3_JSON.exists(), reason="no ../shared/metadata")
def test_load_is3_real_file():
    a = is3.load_is3(IS3_JSON)
    assert len(a) == 6480
    scenes = {}
    for stem, v in a.items():
        scenes.setdefault(v["scene"], []).append(v["instance"])
        assert v["image"] == stem + ".jpg" and v["audio"] == stem + ".wav"
        assert stem == f"{v['scene']}_{v['instance']}"
        xmin, ymin, xmax, ymax = v["box"]
        assert 0 <= xmin < xmax <= 224 and 0 <= ymin < ymax <= 224
    assert len(scenes) == 3240 and all(len(x) == 2 for x in scenes.values())
    assert a["accordion_female_10438_accordion"]["box"] == [47.0, 99.0, 154.0, 185.0]
    # A stem whose scene has two parts: the last part is still the instance.
    assert a["fox_train_subway"]["scene"] == "fox_train"
