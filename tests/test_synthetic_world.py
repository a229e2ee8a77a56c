"""Tests for avkd_jax.datasets.synthetic_world (docs/design.md, The synthetic world)."""

import io
import itertools
import json
import os

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
from PIL import Image

from avkd_jax.datasets import flickr_layout as fl
from avkd_jax.datasets import media
from avkd_jax.datasets import synthetic_world as sw

SR = 22050
S = 256


def _iou(a, b):
    """Independent box IoU (exclusive max, pixel areas) via explicit masks."""
    ma = np.zeros((S, S), bool)
    mb = np.zeros((S, S), bool)
    ma[a[1] : a[3], a[0] : a[2]] = True
    mb[b[1] : b[3], b[0] : b[2]] = True
    return (ma & mb).sum() / (ma | mb).sum()


# ------------------------------------------------------------------- determinism, layout


def test_make_scene_is_deterministic_and_index_dependent():
    a = sw.make_scene(7, "test", 3)
    b = sw.make_scene(7, "test", 3)
    for key in ("image", "audio"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["objects"] == b["objects"]
    assert a["annotator_boxes"] == b["annotator_boxes"]
    assert a["swap_index"] == b["swap_index"]
    if a["swap_audio"] is not None:
        np.testing.assert_array_equal(a["swap_audio"], b["swap_audio"])
    for other in (
        sw.make_scene(7, "test", 4),
        sw.make_scene(8, "test", 3),
        sw.make_scene(7, "train", 3),
    ):
        assert not np.array_equal(other["image"], a["image"])
        assert other["audio"].shape != a["audio"].shape or not np.array_equal(
            other["audio"], a["audio"]
        )

    assert a["image"].dtype == np.uint8 and a["image"].shape == (S, S, 3)
    assert a["audio"].dtype == np.int16
    assert 3 * SR <= a["audio"].shape[0] <= 5 * SR
    # The background is textured, not flat.
    assert sw.make_scene(7, "test", 3, draw_objects=False)["image"].std(axis=(0, 1)).min() > 5


def test_layout_statistics_over_200_scenes():
    n_objects = []
    sounding_areas, distractor_areas = [], []
    for i in range(200):
        lay = sw.scene_layout(0, "train", i)
        objs = lay["objects"]
        n_objects.append(len(objs))
        assert sum(o["sounding"] for o in objs) == 1
        classes = [o["cls"] for o in objs]
        assert len(set(classes)) == len(classes)  # the sounding class is never a distractor's
        assert all(0 <= c < sw.NUM_CLASSES for c in classes)
        for o in objs:
            x0, y0, x1, y1 = o["box"]
            assert 0 <= x0 < x1 <= S and 0 <= y0 < y1 <= S
            frac = (x1 - x0) * (y1 - y0) / (S * S)
            assert 0.2 * 0.98 <= frac <= 0.45 * 1.02, o
            assert 0.75 * 0.97 <= (x1 - x0) / (y1 - y0) <= 4 / 3 * 1.03, o
            (sounding_areas if o["sounding"] else distractor_areas).append(frac)
        for a, b in itertools.combinations(objs, 2):
            assert _iou(a["box"], b["box"]) <= 0.1 + 1e-12
        s_box = np.array(next(o["box"] for o in objs if o["sounding"]))
        assert len(lay["annotator_boxes"]) == 3
        for box in lay["annotator_boxes"]:
            box = np.array(box)
            assert np.all(box >= 0) and np.all(box <= S)
            assert np.all(np.abs(box - s_box) <= 4)
        expected_swap = next((k for k, o in enumerate(objs) if not o["sounding"]), None)
        assert lay["swap_index"] == expected_swap
    counts = np.bincount(n_objects, minlength=4)
    # Every distractor count occurs; crowded draws that cannot fit lose a distractor.
    assert counts[1] > 0 and counts[2] > 0 and counts[3] > 0 and counts[0] == 0
    # Size is no cue: both roles cover the whole range.
    for areas in (sounding_areas, distractor_areas):
        assert min(areas) < 0.25 and max(areas) > 0.38
    # scene_layout is what make_scene uses.
    for i in range(3):
        scene = sw.make_scene(0, "train", i, include_swap=False)
        lay = sw.scene_layout(0, "train", i)
        assert scene["objects"] == lay["objects"]
        assert scene["annotator_boxes"] == lay["annotator_boxes"]


def test_objects_occupy_their_boxes_and_nothing_else():
    fractions = []
    for i in range(20):
        full = sw.make_scene(3, "test", i)
        bg = sw.make_scene(3, "test", i, draw_objects=False)
        np.testing.assert_array_equal(full["audio"], bg["audio"])
        changed = np.any(full["image"] != bg["image"], axis=-1)
        inside_any = np.zeros((S, S), bool)
        for o in full["objects"]:
            x0, y0, x1, y1 = o["box"]
            inside_any[y0:y1, x0:x1] = True
        assert not changed[~inside_any].any()
        for k, o in enumerate(full["objects"]):
            x0, y0, x1, y1 = o["box"]
            own = np.zeros((S, S), bool)
            own[y0:y1, x0:x1] = True
            for m, other in enumerate(full["objects"]):
                if m != k:
                    ox0, oy0, ox1, oy1 = other["box"]
                    own[oy0:oy1, ox0:ox1] = False
            # The sparsest shape (star) covers ~39 % of its box; see the fill test below.
            assert changed[own].mean() > 0.3, (i, o)
            fractions.append(changed[own].mean())
    assert np.mean(fractions) > 0.6


# Area of each shape as a fraction of its box, computed analytically.
_EXPECTED_FILL = {
    "disc": np.pi / 4,
    "square": 1.0,
    "triangle": 0.5,
    "cross": 1 - 4 * 0.35**2,
    "ring": np.pi / 4 * (1 - sw.RING_INNER**2),
    "diamond": 0.5,
    "hexagon": 0.75,
}


def _star_fill(points=5, inner=0.45):
    ang = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    x, y = r * np.cos(ang), r * np.sin(ang)
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    return area / (np.ptp(x) * np.ptp(y))


@pytest.mark.parametrize("cls", range(sw.NUM_CLASSES))
def test_render_object_is_tight_and_has_the_class_shape(cls):
    shape = sw.CLASSES[cls].shape
    box = [37, 20, 37 + 161, 20 + 143]
    canvas = np.full((S, S, 3), 128, np.uint8)
    canvas[::2] = 120  # not flat: the colour must contrast with the mean under the box
    before = canvas.copy()
    mask = sw.render_object(np.random.default_rng(cls), cls, canvas, box)
    changed = np.any(canvas != before, axis=-1)
    ys, xs = np.nonzero(changed)
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == box  # tight box
    np.testing.assert_array_equal(changed[box[1] : box[3], box[0] : box[2]], mask)
    expected = _star_fill() if shape == "star" else _EXPECTED_FILL[shape]
    assert abs(mask.mean() - expected) < 0.03, (shape, mask.mean(), expected)
    # Colour is random per instance, not per class.
    means = []
    for seed in range(6):
        c = before.copy()
        m = sw.render_object(np.random.default_rng(100 + seed), cls, c, box)
        means.append(c[box[1] : box[3], box[0] : box[2]][m].mean(axis=0))
    assert np.std(means, axis=0).max() > 30


def test_render_object_rejects_bad_boxes():
    canvas = np.zeros((S, S, 3), np.uint8)
    with pytest.raises(ValueError, match="not inside"):
        sw.render_object(np.random.default_rng(0), 0, canvas, [200, 0, 300, 50])
    with pytest.raises(ValueError, match="class index"):
        sw.render_object(np.random.default_rng(0), sw.NUM_CLASSES, canvas, [0, 0, 50, 50])


# ------------------------------------------------------------------------------- sounds


def _features(x):
    _, _, spec = scipy.signal.spectrogram(
        np.asarray(x, np.float64), fs=SR, nperseg=512, noverlap=256
    )
    v = np.log(spec.mean(axis=1) + 1e-10)
    return v - v.mean()  # loudness-invariant


@pytest.fixture(scope="module")
def sound_bank():
    """30 clean and 30 noisy 3 s sounds per class; the first 20 of each train centroids."""
    rng = np.random.default_rng(1234)
    clean, noisy, labels = [], [], []
    for cls in range(sw.NUM_CLASSES):
        for _ in range(30):
            x = sw.synthesize_sound(rng, cls, 3 * SR, SR)
            clean.append(_features(x))
            noisy.append(_features(sw.add_background_noise(rng, x, SR)))
            labels.append(cls)
    train = np.tile(np.arange(30) < 20, sw.NUM_CLASSES)
    labels = np.array(labels)
    out = {}
    for name, feats in (("clean", np.array(clean)), ("noisy", np.array(noisy))):
        centroids = np.stack([feats[train & (labels == c)].mean(0) for c in range(sw.NUM_CLASSES)])
        out[name] = (feats[~train], labels[~train], centroids)
    return out


def _classify(feats, centroids):
    return ((feats[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(axis=1)


def test_sounds_are_separable_by_class(sound_bank):
    feats, labels, centroids = sound_bank["clean"]
    assert (_classify(feats, centroids) == labels).mean() > 0.95
    # Still separable under the scenes' noise (SNR 5-20 dB, random colour).
    feats, labels, centroids = sound_bank["noisy"]
    assert (_classify(feats, centroids) == labels).mean() > 0.85


def test_scene_audio_is_the_sounding_and_swap_class(sound_bank):
    centroids = sound_bank["noisy"][2]
    hits, swap_hits, swaps = 0, 0, 0
    for i in range(24):
        scene = sw.make_scene(11, "test", i)
        a = scene["audio"]
        centre = a[a.size // 2 - 3 * SR // 2 :][: 3 * SR]
        pred = _classify(_features(centre)[None], centroids)[0]
        hits += pred == next(o["cls"] for o in scene["objects"] if o["sounding"])
        if scene["swap_index"] is not None:
            swaps += 1
            assert scene["swap_audio"].shape == a.shape and scene["swap_audio"].dtype == np.int16
            s = scene["swap_audio"]
            pred = _classify(_features(s[s.size // 2 - 3 * SR // 2 :][: 3 * SR])[None], centroids)[
                0
            ]
            swap_hits += pred == scene["objects"][scene["swap_index"]]["cls"]
        else:
            assert scene["swap_audio"] is None
    assert hits / 24 > 0.85
    assert swaps >= 8 and swap_hits / swaps > 0.85


def test_synthesize_sound_range_jitter_and_determinism():
    for cls in range(sw.NUM_CLASSES):
        x = sw.synthesize_sound(np.random.default_rng(5), cls, 12345, SR)
        assert x.dtype == np.float32 and x.shape == (12345,)
        assert np.abs(x).max() <= 1.0 and np.abs(x).max() > 0.5
        np.testing.assert_array_equal(
            x, sw.synthesize_sound(np.random.default_rng(5), cls, 12345, SR)
        )
        assert not np.allclose(x, sw.synthesize_sound(np.random.default_rng(6), cls, 12345, SR))
    # Pitch jitter: the whistle's dominant frequency moves within +-6 % (+ one bin).
    peaks = []
    for seed in range(12):
        x = sw.synthesize_sound(np.random.default_rng(seed), 2, 4 * SR, SR)
        spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
        peaks.append(np.fft.rfftfreq(x.size, 1 / SR)[spec.argmax()])
    f0 = sw.CLASSES[2].f0
    assert np.ptp(peaks) > 0.02 * f0
    assert all(f0 * 0.93 <= p <= f0 * 1.07 for p in peaks)


# --------------------------------------------------------------------------- write_world


def _snapshot(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = (fh.read(), os.stat(p).st_mtime_ns)
    return out


def test_write_world_layout_restart_and_guards(tmp_path):
    root = tmp_path / "world"
    stats = sw.write_world(root, num_train=6, num_test=4, seed=5, workers=2, progress=False)
    assert stats["scenes"] == 10
    train_ids = [f"{i:07d}" for i in range(6)]
    test_ids = [f"{9000000 + i:07d}" for i in range(4)]

    assert (root / "train.txt").read_text() == "".join(f"{i}\n" for i in train_ids)
    assert (root / "test.csv").read_bytes() == "".join(f"{i},0\r\n" for i in test_ids).encode()
    assert fl.read_id_list(root / "train.txt") == train_ids
    assert fl.read_id_list(root / "test.csv") == test_ids
    assert fl.read_keyframes(root / "test.csv") == {i: 0 for i in test_ids}
    assert sorted(os.listdir(root / "frames")) == sorted(f"{i}.jpg" for i in train_ids + test_ids)
    assert sorted(os.listdir(root / "audio")) == sorted(f"{i}.wav" for i in train_ids + test_ids)
    assert sorted(os.listdir(root / "Annotations")) == sorted(f"{i}.xml" for i in test_ids)
    world = json.loads((root / "WORLD.json").read_text())
    assert (
        world["seed"],
        world["num_train"],
        world["num_test"],
        world["num_classes"],
        world["sample_rate"],
    ) == (5, 6, 4, sw.NUM_CLASSES, SR)
    assert not (root / ".WORLD.pending.json").exists()
    scenes_json = json.loads((root / "scenes.json").read_text())
    assert sorted(scenes_json) == test_ids

    for split, ids in (("train", train_ids), ("test", test_ids)):
        for index, id_ in enumerate(ids):
            scene = sw.make_scene(5, split, index)
            a = scene["audio"]
            wav, rate = sf.read(root / "audio" / f"{id_}.wav", dtype="int16")
            assert rate == SR
            np.testing.assert_array_equal(wav, a)
            start = a.size // 2 - 3 * SR // 2
            np.testing.assert_array_equal(
                media.load_audio(root / "audio" / f"{id_}.wav"), a[start : start + 3 * SR]
            )
            jpg = (root / "frames" / f"{id_}.jpg").read_bytes()
            assert jpg == media.encode_jpeg(scene["image"], quality=95)
            img = media.load_image(root / "frames" / f"{id_}.jpg")
            assert img.shape == (S, S, 3)
            assert np.abs(img.astype(int) - scene["image"]).mean() < 6  # JPEG q95 vs grain
            swap_path = root / "audio_swap" / f"{id_}.wav"
            if split == "test":
                assert (
                    fl.parse_flickr_annotation(root / "Annotations" / f"{id_}.xml")
                    == scene["annotator_boxes"]
                )
                assert scenes_json[id_] == {
                    "objects": scene["objects"],
                    "swap_index": scene["swap_index"],
                }
                assert swap_path.exists() == (scene["swap_index"] is not None)
                if scene["swap_audio"] is not None:
                    np.testing.assert_array_equal(
                        sf.read(swap_path, dtype="int16")[0], scene["swap_audio"]
                    )
            else:
                assert not swap_path.exists()

    # Restart after losing one file: only that file is rewritten, with identical bytes.
    before = _snapshot(root)
    victim = os.path.join("audio", f"{test_ids[2]}.wav")
    os.remove(root / victim)
    # A killed writer's leftover (pid above Linux's pid_max, so surely dead) goes away.
    (root / "frames" / "0000001.jpg.tmp.99999999").write_bytes(b"half")
    stats = sw.write_world(root, num_train=6, num_test=4, seed=5, workers=1, progress=False)
    assert stats["files_written"] == 1
    after = _snapshot(root)
    assert sorted(after) == sorted(before)
    for rel, (data, mtime) in after.items():
        assert data == before[rel][0], rel
        if rel != victim:
            assert mtime == before[rel][1], rel

    # The same seed elsewhere (one process instead of two) gives the same bytes.
    twin = tmp_path / "twin"
    sw.write_world(twin, num_train=6, num_test=4, seed=5, workers=1, progress=False)
    assert {k: v[0] for k, v in _snapshot(twin).items()} == {k: v[0] for k, v in after.items()}

    # Different parameters never mix into an existing world, finished or not.
    with pytest.raises(ValueError, match="WORLD.json.*different synthetic world"):
        sw.write_world(root, num_train=6, num_test=4, seed=6, workers=1, progress=False)
    os.remove(root / "WORLD.json")
    (root / ".WORLD.pending.json").write_text(json.dumps({"seed": 99}))
    with pytest.raises(ValueError, match="pending.*different synthetic world"):
        sw.write_world(root, num_train=6, num_test=4, seed=5, workers=1, progress=False)


def test_command_line(tmp_path, capsys):
    root = tmp_path / "cli"
    assert (
        sw.main(
            [
                f"--root={root}",
                "--num_train=2",
                "--num_test=1",
                "--seed=3",
                "--workers=1",
                "--no_progress",
            ]
        )
        == 0
    )
    assert "3 scenes" in capsys.readouterr().out
    assert fl.read_id_list(root / "train.txt") == ["0000000", "0000001"]
    assert (
        fl.parse_flickr_annotation(root / "Annotations" / "9000000.xml")
        == sw.make_scene(3, "test", 0)["annotator_boxes"]
    )
    img = np.asarray(Image.open(io.BytesIO((root / "frames" / "0000001.jpg").read_bytes())))
    assert img.shape == (S, S, 3)
