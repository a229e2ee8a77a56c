"""The flickr_soundnet and vggsound builders on small raw disks (tests/helpers/real_disks.py),
in every accepted layout and format, with every kind of bad input.

Each built record is checked against an independent computation: the analytic sine at
the centre of the clip, PIL's own resize of the source frame, the grey level that names
a video frame, and `protocol.gt_map` of the boxes written (for VGG-SS also the reference
code's clip-and-paint of the raw json boxes, corrupt ones included).
"""

import json
import os

import numpy as np
import pytest
import soundfile as sf
from helpers.media import centre_sine, grey
from helpers.real_disks import (
    FLICKR_BOXES,
    VGGSS_ENTRIES,
    flickr_config,
    records,
    write_lines,
)
from helpers.reference_protocol import vggss_gt
from PIL import Image

from avkd_jax import datasets, sharding
from avkd_jax.datasets import av_builder, overlap, raw_examples, sources
from avkd_jax.eval import diagnostics, evaluator, protocol, reports

SR = 22050
N3 = 3 * SR

# ------------------------------------------------------------------------------ helpers


def skipped_rows(builder, split):
    return {(r[0], r[2]): r for r in av_builder.read_skipped(builder.data_dir, split)}


def pil_reference(path):
    """The source frame resized with PIL directly: shorter side 256, bicubic."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    size = (256, round(h * 256 / w)) if w <= h else (round(w * 256 / h), 256)
    return np.asarray(img.resize(size, Image.Resampling.BICUBIC)).astype(np.float64)


# -------------------------------------------------------------------------------- flickr


def test_flickr_train_split_records(flickr_root, flickr_built):
    _, builder = flickr_built
    recs = records(builder, "train")
    # 2001 is a test id (left out); 1005–1008 are bad (skipped).
    assert sorted(recs) == ["1001", "1002", "1003", "1004"]
    for r in recs.values():
        assert r["audio"].dtype == np.int16 and r["audio"].shape == (N3,)
        assert len(r["boxes"]) == 0
    # Resampled (16 k mono wav, 44.1 k stereo flac, 48 k stereo PCM in a video): the
    # analytic 22,050 Hz sine at the centre, channels averaged (gain 0.75), within LSBs.
    assert np.abs(recs["1001"]["audio"] - centre_sine(56000, 16000)).max() < 6
    assert np.abs(recs["1002"]["audio"] - centre_sine(176400, 44100, gain=0.75)).max() < 6
    assert np.abs(recs["1003"]["audio"] - centre_sine(153600, 48000, gain=0.75)).max() < 6
    # 1.3 s at 22,050 Hz mono: bit-exact, tiled to 3 s.
    pcm, _ = sf.read(flickr_root / "audio" / "1004.wav", dtype="int16")
    np.testing.assert_array_equal(recs["1004"]["audio"], np.tile(pcm, 3)[:N3])
    # Frames: PIL's resize of the source (JPEG re-encoding costs ~1 level); video: frame 12.
    for id_, ext in (("1001", "jpg"), ("1002", "png"), ("1004", "jpg")):
        ref = pil_reference(flickr_root / "frames" / f"{id_}.{ext}")
        assert recs[id_]["image"].shape == ref.shape
        assert np.abs(recs[id_]["image"] - ref).mean() < 2.5
    assert recs["1002"]["image"].shape == (341, 256, 3)  # Portrait 48×64.
    assert recs["1003"]["image"].shape == (256, 341, 3)
    assert abs(recs["1003"]["image"].mean() - grey(12)) < 4
    with open(av_builder.ids_path(builder.data_dir, "train")) as f:
        assert sorted(f.read().split()) == sorted(recs)


def test_flickr_bad_train_clips_are_reported_and_skipped(flickr_root, flickr_built):
    _, builder = flickr_built
    rows = skipped_rows(builder, "train")
    reasons = {i: (f, r) for (i, action), (_, f, _, r) in rows.items() if action == "skipped"}
    assert sorted(reasons) == ["1005", "1006", "1007", "1008"]
    assert reasons["1005"][0].endswith("frames/1005.jpg")
    assert "cannot decode image" in reasons["1005"][1] or "truncated" in reasons["1005"][1]
    assert reasons["1006"] == (str(flickr_root / "audio" / "1006.wav"), "file is empty (0 bytes)")
    assert reasons["1007"][0] == str(flickr_root / "audio" / "1007.wav")
    assert reasons["1007"][1].startswith("missing: no audio/1007{.wav,.flac}")
    assert reasons["1008"][1] == "audio has 0 samples"
    assert builder.info.splits["train"].num_examples == 4


def test_flickr_test_split_boxes_keyframe_and_bad_annotations(flickr_root, flickr_built):
    _, builder = flickr_built
    recs = records(builder, "test")
    assert sorted(recs) == ["2001", "2002", "2005"]
    kept = {
        "2001": FLICKR_BOXES["2001"],
        "2002": FLICKR_BOXES["2002"],
        "2005": [FLICKR_BOXES["2005"][0], FLICKR_BOXES["2005"][2]],
    }
    for id_, r in recs.items():
        batch = {"boxes": r["boxes"][None], "num_boxes": np.array([len(r["boxes"])])}
        np.testing.assert_array_equal(
            protocol.gt_map_of(batch, 0, "flickr"), protocol.gt_map(kept[id_], "flickr")
        )
    np.testing.assert_array_equal(recs["2005"]["annotators"], [0, 2])
    np.testing.assert_array_equal(recs["2001"]["annotators"], [0, 1, 2])
    # The video clip: the csv's keyframe 5, not the middle frame; AAC sound, centred.
    assert abs(recs["2002"]["image"].mean() - grey(5)) < 4
    ref = centre_sine(176400, 44100, gain=0.75)
    assert np.corrcoef(recs["2002"]["audio"].astype(float), ref)[0, 1] > 0.998
    rows = skipped_rows(builder, "test")
    assert rows[("2003", "skipped")][3].startswith("malformed XML")
    assert rows[("2004", "skipped")][1] == str(flickr_root / "Annotations" / "2004.xml")
    assert rows[("2006", "skipped")][3].startswith("missing: no frames/2006")
    dropped = rows[("2005", "box dropped")]
    assert dropped[1] == str(flickr_root / "Annotations" / "2005.xml")
    assert "box #2 [10, 20, 100000, 200]" in dropped[3]


def test_config_name_follows_the_lists(flickr_root, tmp_path):
    base = datasets.get_builder(flickr_config(flickr_root, tmp_path)).builder_config.name
    assert base.startswith("train-test-")
    # Same ids with CRLF and a media suffix: the same content, the same prepared shards.
    same = write_lines(
        tmp_path / "m" / "train.txt",
        (flickr_root / "metadata" / "train.txt").read_text().replace("1002", "1002.jpg").split(),
        "\r\n",
    )
    c = flickr_config(flickr_root, tmp_path, metadata_dir=str(same.parent))
    c.dataset_kwargs.test_list = str(flickr_root / "metadata" / "test.csv")
    assert datasets.get_builder(c).builder_config.name == base
    # One id fewer, or the test ids kept: another name.
    write_lines(same, ["1001", "1002", "1003"])
    assert datasets.get_builder(c).builder_config.name != base
    kept = flickr_config(flickr_root, tmp_path, allow_test_overlap=True)
    assert datasets.get_builder(kept).builder_config.name != base
    src = sources.dataset_source(kept)
    assert "2001" in src.train.ids and not src.train.dropped


def test_allowed_overlap_is_built_and_refused_at_training_start(flickr_root, tmp_path):
    config = flickr_config(flickr_root, tmp_path, allow_test_overlap=True)
    builder = datasets.get_builder(config)
    builder.download_and_prepare()
    assert "2001" in records(builder, "train")
    sets = datasets.prepare_eval_sets(config, builder)
    assert list(sets) == ["flickr_test"] and sets["flickr_test"].builder is builder
    found = overlap.check_train_test_overlap(builder, "train", sets, allow=True)
    assert found == {"flickr_test": ["2001"]}
    with pytest.raises(ValueError, match=r"1 with flickr_test \(e\.g\. 2001\).*allow_test_overlap"):
        overlap.check_train_test_overlap(builder, "train", sets, allow=False)


def test_interrupted_build_restarts_and_finishes(flickr_root, flickr_built, tmp_path, monkeypatch):
    from avkd_jax.datasets import media

    config = flickr_config(flickr_root, tmp_path)
    calls, real = [], media.load_audio

    def dies_on_the_third_clip(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt  # As a Ctrl-C or a kill in the middle of the split.
        return real(*args, **kwargs)

    monkeypatch.setattr(media, "load_audio", dies_on_the_third_clip)
    builder = datasets.get_builder(config)
    with pytest.raises(KeyboardInterrupt):
        builder.download_and_prepare()
    assert not os.path.exists(os.path.join(builder.data_dir, "dataset_info.json"))
    # A process killed outright leaves its temporary folder behind; the restart ignores it.
    stale = os.path.join(os.path.dirname(builder.data_dir), "incomplete.1234.1.0.0")
    os.makedirs(stale)
    monkeypatch.setattr(media, "load_audio", real)
    builder = datasets.get_builder(config)
    builder.download_and_prepare()
    _, clean = flickr_built
    for split in ("train", "test"):
        a, b = records(builder, split), records(clean, split)
        assert sorted(a) == sorted(b)
        for id_ in a:
            np.testing.assert_array_equal(a[id_]["audio"], b[id_]["audio"])
            np.testing.assert_array_equal(a[id_]["image"], b[id_]["image"])
            np.testing.assert_array_equal(a[id_]["boxes"], b[id_]["boxes"])


def test_threaded_reading_gives_the_serial_results(flickr_built):
    config, _ = flickr_built
    source = sources.dataset_source(config)
    tasks = (
        sources.split_tasks(source.train, SR, 3.0)[0] + sources.split_tasks(source.test, SR, 3.0)[0]
    )
    serial = list(raw_examples.read_many(tasks, workers=0))
    threaded = list(raw_examples.read_many(tasks, workers=3))
    assert [t.example_id for t, _ in threaded] == [t.example_id for t in tasks]
    for (_, a), (_, b) in zip(serial, threaded):
        assert type(a) is type(b)
        if isinstance(a, dict):
            assert a["image"] == b["image"]
            np.testing.assert_array_equal(a["audio"], b["audio"])
        else:
            assert (a.path, a.reason) == (b.path, b.reason)


# ------------------------------------------------------------------------------ vggsound


def test_vggsound_build(vggsound_root, vggsound_built):
    _, builder = vggsound_built
    train = records(builder, "train")
    assert sorted(train) == ["aaa_000001", "bbb_000002"]  # ccc_000003 is a test id.
    assert abs(train["aaa_000001"]["image"].mean() - grey(10)) < 4  # 20 frames at 10 fps.
    ref = centre_sine(176400, 44100, gain=0.75)
    assert np.corrcoef(train["aaa_000001"]["audio"].astype(float), ref)[0, 1] > 0.998
    assert np.abs(train["bbb_000002"]["audio"] - centre_sine(168000, 48000, gain=0.75)).max() < 6

    test = records(builder, "test")
    assert sorted(test) == ["ccc_000003", "ddd_000004", "eee_000005"]
    raw = {e["file"]: e["bbox"] for e in VGGSS_ENTRIES[:4]}
    for id_, r in test.items():
        batch = {"boxes": r["boxes"][None], "num_boxes": np.array([len(r["boxes"])])}
        gt = protocol.gt_map_of(batch, 0, "vggss")
        # Dropping a box whose max coordinate is -2.9e16 gives the reference's own map:
        # it clips that coordinate to 0, so the box paints nothing.
        np.testing.assert_array_equal(gt, vggss_gt(raw[id_]))
    assert len(test["ddd_000004"]["boxes"]) == 1 and len(test["eee_000005"]["boxes"]) == 0
    np.testing.assert_allclose(test["ddd_000004"]["boxes"], [[0.1, 0.05, 1.0, 0.4]], rtol=1e-6)
    assert np.abs(test["ddd_000004"]["audio"] - centre_sine(56000, 16000, gain=0.75)).max() < 6

    rows = av_builder.read_skipped(builder.data_dir, "test")
    json_path = str(vggsound_root / "metadata" / "vggss.json")
    skipped = {r[0]: r for r in rows if r[2] == "skipped"}
    assert sorted(skipped) == ["fff_000006", "ggg_000007"]
    assert (
        skipped["fff_000006"][1] == json_path
        and "not a list of 4 numbers" in skipped["fff_000006"][3]
    )
    assert skipped["ggg_000007"][3] == "no entry for ggg_000007"
    dropped = sorted(r[0] for r in rows if r[2] == "box dropped")
    assert dropped == ["ddd_000004", "eee_000005"]
    notes = [r[3] for r in rows if r[2] == "noted"]
    assert any("no 'file' name" in n for n in notes)
    assert any("duplicate entry for ccc_000003" in n for n in notes)
    assert any(r[0] == "eee_000005" and "no usable box" in r[3] for r in rows)


def test_cross_dataset_eval_sets(
    flickr_root, vggsound_root, flickr_built, vggsound_built, tmp_path
):
    config, builder = flickr_built
    config = config.copy_and_resolve_references()
    config.eval_sets = ("flickr_test", "vggss_test")
    with pytest.raises(ValueError, match=r"config\.eval_manual_dirs\.vggss_test"):
        datasets.get_eval_sets(config, builder)
    config.eval_manual_dirs.vggss_test = str(vggsound_root)
    config.metadata_dir = str(flickr_root / "metadata")  # Lists of both: a folder each here.
    config.dataset_kwargs.train_list = str(flickr_root / "metadata" / "train.txt")
    # The vggss_test list is looked up in its own root's metadata/.
    sets = datasets.prepare_eval_sets(config, datasets.get_builder(config))
    assert [(n, s.split, s.fmt) for n, s in sets.items()] == [
        ("flickr_test", "test", "flickr"),
        ("vggss_test", "test", "vggss"),
    ]

    mesh = sharding.create_mesh()
    results = {
        n: evaluator.evaluate_split(None, {}, s.builder, config, mesh, s.split, True, s.fmt)
        for n, s in sets.items()
    }
    centre = protocol.normalize_map(diagnostics.centre_prior_map())
    kept_flickr = [
        FLICKR_BOXES["2001"],
        FLICKR_BOXES["2002"],
        [FLICKR_BOXES["2005"][0], FLICKR_BOXES["2005"][2]],
    ]
    raw = {e["file"]: e["bbox"] for e in VGGSS_ENTRIES[:3]}
    expected = {
        "flickr_test": [
            protocol.sample_ciou(centre, protocol.gt_map(b, "flickr")) for b in kept_flickr
        ],
        "vggss_test": [protocol.sample_ciou(centre, vggss_gt(b)) for b in raw.values()],
    }
    for name, cious in expected.items():
        assert results[name]["centre_prior"] == pytest.approx(protocol.summarize(cious), rel=1e-12)
    text = reports.write_results(str(tmp_path), results, 7)
    with open(tmp_path / "results.json") as f:
        data = json.load(f)
    assert data["step"] == 7 and list(data["sets"]) == ["flickr_test", "vggss_test"]
    assert data["sets"]["vggss_test"]["centre_prior"]["n"] == 3
    assert "## flickr_test" in text and "## vggss_test" in text


def test_first_box_only_scores_each_clip_against_its_first_annotated_box(vggsound_built):
    """`config.eval_first_box_only` (the paper authors' VGG-SS): ddd_000004's first box has
    a corrupt xmax, which the reference clips to 0, so that clip's map is empty; with every
    box it is the second box's."""
    config, builder = vggsound_built
    config = config.copy_and_resolve_references()
    mesh = sharding.create_mesh()
    centre = protocol.normalize_map(diagnostics.centre_prior_map())
    raw = {e["file"]: e["bbox"] for e in VGGSS_ENTRIES[:3]}
    for first in (False, True):
        config.eval_first_box_only = first
        e = evaluator.evaluate_split_details(None, {}, builder, config, mesh, "test", True, "vggss")
        got = dict(zip(e.ids, e.cious["centre_prior"]))
        want = {
            i: protocol.sample_ciou(centre, vggss_gt(b[:1] if first else b)) for i, b in raw.items()
        }
        assert got == pytest.approx(want, rel=1e-12), first
    assert want["ddd_000004"] == 0.0  # Its first box is empty.


def test_config_errors_name_the_field(flickr_root, tmp_path):
    c = flickr_config(flickr_root, tmp_path)
    c.dataset_kwargs.train_list = "nope.txt"
    with pytest.raises(
        FileNotFoundError,
        match=r"config\.dataset_kwargs\.train_list='nope\.txt' not found in .*metadata",
    ):
        datasets.get_builder(c)
    c = flickr_config(flickr_root, tmp_path, eval_sets=("imagenet",))
    with pytest.raises(ValueError, match="Unknown eval set 'imagenet'"):
        datasets.get_eval_sets(c)
    c = flickr_config(flickr_root, tmp_path, eval_sets=("synthetic_test",))
    with pytest.raises(ValueError, match="synthetic"):
        datasets.get_eval_sets(c)
    empty = tmp_path / "empty_root"
    (empty / "metadata").mkdir(parents=True)
    for name in ("train.txt", "test.csv"):
        (empty / "metadata" / name).write_bytes((flickr_root / "metadata" / name).read_bytes())
    with pytest.raises(ValueError, match="none of the 8 listed clips could be read"):
        datasets.get_builder(flickr_config(empty, tmp_path / "tfds")).download_and_prepare()


def test_vggss_json_errors(tmp_path):
    from avkd_jax.datasets import vggss_annotations
    from avkd_jax.errors import MediaError

    bad = tmp_path / "vggss.json"
    bad.write_text('[{"file": "a", "bbox": [[0, 0, 1, 1]]}')
    with pytest.raises(MediaError, match="not valid JSON") as info:
        vggss_annotations.read_vggss_json(bad)
    assert info.value.path == str(bad)
    bad.write_text('{"file": "a"}')
    with pytest.raises(MediaError, match="expected a list"):
        vggss_annotations.read_vggss_json(bad)
    bad.write_text(
        '[{"file": "a.mp4", "bbox": [[0, 0, 1, NaN], [0, "x", 1, 1]]}, {"file": "b", "bbox": [[0, 0, 1, NaN]]}]'
    )
    ann = vggss_annotations.read_vggss_json(bad)
    assert "a" in ann.malformed and "'x'" in ann.malformed["a"]
    # NaN is a number: judged (and dropped) by clean_boxes, not here.
    boxes, index, notes = raw_examples.clean_boxes(ann.boxes["b"], "vggss", str(bad))
    assert boxes.shape == (0, 4) and len(index) == 0 and "corrupt" in notes[0][1]


@pytest.mark.slow
def test_training_on_a_real_layout_evaluates_both_sets(flickr_root, vggsound_root, tmp_path):
    from avkd_jax import train

    c = flickr_config(flickr_root, tmp_path / "tfds")
    c.eval_sets = ("flickr_test", "vggss_test")
    c.eval_manual_dirs.vggss_test = str(vggsound_root)
    # The tiny sizes of helpers.configs.tiny_config: seconds on 2 cores.
    c.image_size, c.resize_size, c.audio_seconds = 64, 70, 0.5
    c.model.width, c.model.embed_dim = 0.125, 16
    c.teachers, c.alpha_audio, c.alpha_visual = (), 0.0, 0.0
    c.batch_size, c.num_epochs, c.eval_batch_size = 2, 1, 2
    c.log_every_steps = c.checkpoint_every_steps = 1
    results = train.train_and_evaluate(c, str(tmp_path / "run"))
    with open(tmp_path / "run" / "results.json") as f:
        data = json.load(f)
    assert data["step"] == 2 and list(data["sets"]) == ["flickr_test", "vggss_test"]
    for name in ("flickr_test", "vggss_test"):
        assert {"AVC", "untrained", "centre_prior"} <= set(data["sets"][name])
        assert data["sets"][name]["AVC"]["n"] == 3
        assert results[name]["AVC"]["ciou"] == data["sets"][name]["AVC"]["ciou"]
