"""`python -m avkd_jax.pair_maps`: our student's maps of every pair of a protocol, from raw
files, checked against the model run directly and scored by `scoring.score`.

A random-weight student of a small config (imported as the authors' checkpoint is) and a
small raw Flickr disk (frames, wav, one mp4 read at its keyframe) and IS3 layout.
"""

import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
import soundfile as sf
from helpers.media import SR, sine
from helpers.paths import REPO
from helpers.real_disks import smooth_image, write_frame, write_lines, write_video, write_xml
from helpers.torch_reference import random_avc, write_avc_npz
from PIL import Image

from avkd_jax import audio, datasets, localize, pair_maps, sharding
from avkd_jax import state as train_state
from avkd_jax.datasets import media, video
from avkd_jax.errors import MediaError
from avkd_jax.eval import evaluator, fusion, maps_file, negative_audio, protocol, scoring

IDS = ["2001", "2002", "2005", "2007"]
BOXES = [[10, 20, 120, 200], [64, 64, 192, 192], [30, 40, 90, 100], [0, 0, 128, 256]]
NEGATIVES = [("2001", "2005"), ("2002", "2001"), ("2007", "2002")]


def write_sound(path, f, seconds=1.2, rate=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, sine(rate, seconds, f=f), rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    """Flickr test clips 2001, 2005, 2007 as frames + wav, 2002 as an mp4 (keyframe 5)."""
    root = tmp_path_factory.mktemp("flickr_disk")
    for k, i in enumerate(IDS):
        if i == "2002":
            write_video(root, i, "mp4", rate=44100, seconds=4.0)
        else:
            write_frame(root, i, 60, 80, seed=k)
            write_sound(root / "audio" / f"{i}.wav", 200.0 + 300 * k)
        write_xml(root, i, [BOXES[k]])
    write_lines(root / "flickr_test.csv", [f"{i},{5 if i == '2002' else 0}" for i in IDS], "\r\n")
    write_lines(
        root / "plus_silent.csv", ["video,audio,label"] + [f"{a},{b},0" for a, b in NEGATIVES]
    )
    return root


def flickr_args(disk, protocol_name):
    kw = {
        "annotation_path": str(disk / "Annotations"),
        "test_list": str(disk / "flickr_test.csv"),
    }
    if protocol_name.startswith("extended"):
        kw["negatives"] = str(disk / "plus_silent.csv")
    return kw


def direct_map(run, disk, image_id, pcm):
    """S/τ of `image_id`'s picture with `pcm`, straight from `fusion.model_maps`."""
    if image_id == "2002":
        stored = video.load_video_frame(str(disk / "video" / "2002.mp4"), 5)
    else:
        stored = media.load_image(str(disk / "frames" / f"{image_id}.jpg"))
    image = localize.model_image(stored, run.config.image_size)
    s = fusion.model_maps(run.model, run.variables, image[None], np.asarray(pcm)[None])
    return np.asarray(s, np.float32)[0] * np.float32(1 / run.config.tau)


def clip_sound(run, disk, clip):
    if clip == "2002":
        path = str(disk / "video" / "2002.mp4")
        return video.load_video_audio(path, run.config.sample_rate, run.config.audio_seconds)
    path = str(disk / "audio" / f"{clip}.wav")
    return media.load_audio(path, run.config.sample_rate, run.config.audio_seconds)


def test_extended_maps_are_the_models_and_score(random_run, disk, tmp_path):
    out = str(tmp_path / "maps.npz")
    result = pair_maps.make_pair_maps(
        random_run,
        "extended_flickr",
        str(disk),
        out=out,
        batch_size=3,
        progress=False,
        **flickr_args(disk, "extended_flickr"),
    )
    maps = maps_file.read_maps(out)
    expected_keys = set(IDS) | {f"{a}__{b}" for a, b in NEGATIVES}
    assert set(maps) == expected_keys and result["n_maps"] == len(expected_keys)
    run = localize.load_run(random_run)
    for key in expected_keys:
        image_id, _, sound_id = key.partition("__")
        want = direct_map(run, disk, image_id, clip_sound(run, disk, sound_id or image_id))
        assert maps[key].shape == want.shape == (3, 3)
        np.testing.assert_allclose(maps[key], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    # A mismatched sound gives another map than the own one.
    assert not np.allclose(maps["2001__2005"], maps["2001"])
    # `<id>`: the localize map before its normalisation.
    heat = localize.localization_map(
        run,
        localize.model_image(media.load_image(str(disk / "frames" / "2005.jpg")), 96),
        clip_sound(run, disk, "2005"),
    )
    np.testing.assert_allclose(protocol.protocol_maps(maps["2005"][None])[0], heat, atol=1e-4)

    pairs = scoring.read_pairs("extended_flickr", **flickr_args(disk, "extended_flickr"))
    scores = scoring.score("extended_flickr", maps, pairs, out, run.config.tau)
    assert scores["n_pairs"] == len(expected_keys) == len(pairs.truth)
    assert scores["missing"] == {"maps": [], "annotations": []}
    assert scores["metrics"]["n_pos"] == 4 and scores["metrics"]["n_neg"] == 3


def test_negative_audio_silence_noise_offscreen(random_run, disk, tmp_path):
    out = str(tmp_path / "maps.npz")
    pair_maps.make_pair_maps(
        random_run,
        "negative_audio_flickr",
        str(disk),
        out=out,
        batch_size=8,
        progress=False,
        workers=2,
        **flickr_args(disk, "negative_audio_flickr"),
    )
    maps = maps_file.read_maps(out)
    picks = negative_audio.pick_offscreen(IDS, {i: i for i in IDS})
    assert set(maps) == (
        set(IDS)
        | {f"{i}__{k}" for i in IDS for k in ("silence", "noise")}
        | {f"{i}__{j}" for i, j in picks.items()}
    )
    run = localize.load_run(random_run)
    n = int(round(run.config.sample_rate * run.config.audio_seconds))
    i, j = "2002", picks["2002"]
    noise = negative_audio.noise(n, zlib.crc32(i.encode())) * np.float32(audio.PCM_SCALE)
    for key, pcm in [
        (f"{i}__silence", np.zeros(n, np.float32)),
        (f"{i}__noise", noise),
        (f"{i}__{j}", clip_sound(run, disk, j)),
    ]:
        want = direct_map(run, disk, i, pcm)
        np.testing.assert_allclose(maps[key], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())

    pairs = scoring.read_pairs(
        "negative_audio_flickr", **flickr_args(disk, "negative_audio_flickr")
    )
    scores = scoring.score("negative_audio_flickr", maps, pairs, out, run.config.tau)
    assert scores["n_pairs"] == 16 and scores["missing"]["maps"] == []
    assert scores["metrics"]["n_silence"] == scores["metrics"]["n_offscreen"] == 4


def write_is3(root):
    """Two IS3 scenes of two instances: images/<stem>.jpg, audio_waw/<stem>.wav, the json."""
    stems = ["dog_piano_1_dog", "dog_piano_1_piano", "cat_drum_2_cat", "cat_drum_2_drum"]
    entries = []
    for k, stem in enumerate(stems):
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(smooth_image(224, 224, 40 + k)).save(root / "images" / f"{stem}.jpg")
        write_sound(root / "audio_waw" / f"{stem}.wav", 300.0 + 200 * k, seconds=2.0, rate=16000)
        box = [10, 20, 120, 200] if k % 2 == 0 else [100, 90, 220, 210]
        entries.append(
            {
                "image": f"/x/visual_frames/{stem}.jpg",
                "audio": f"/x/audio_wav/{stem}.wav",
                "gt_box": box,
            }
        )
    (root / "is3.json").write_text(json.dumps(entries))
    return stems


def test_is3_layout_and_score(random_run, tmp_path):
    stems = write_is3(tmp_path / "IS3")
    out = str(tmp_path / "maps.npz")
    ann = str(tmp_path / "IS3" / "is3.json")
    pair_maps.make_pair_maps(random_run, "is3", str(tmp_path / "IS3"), ann, out, progress=False)
    maps = maps_file.read_maps(out)
    assert sorted(maps) == sorted(stems)
    run = localize.load_run(random_run)
    stem = stems[1]
    image = localize.model_image(media.load_image(str(tmp_path / "IS3/images" / f"{stem}.jpg")), 96)
    pcm = media.load_audio(
        str(tmp_path / "IS3/audio_waw" / f"{stem}.wav"),
        run.config.sample_rate,
        run.config.audio_seconds,
    )
    s = np.asarray(fusion.model_maps(run.model, run.variables, image[None], pcm[None]))[0]
    want = s * np.float32(1 / run.config.tau)
    np.testing.assert_allclose(maps[stem], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    scores = scoring.score("is3", maps, scoring.read_pairs("is3", ann), out)
    assert scores["n_pairs"] == 4 and scores["metrics"]["n_scenes"] == 2

    # The authors' spelling audio_wav/ is found too; a missing sound is named.
    os.rename(tmp_path / "IS3/audio_waw", tmp_path / "IS3/audio_wav")
    os.remove(tmp_path / "IS3/audio_wav" / f"{stems[2]}.wav")
    with pytest.raises(MediaError, match=f"pair {stems[2]}: missing, nor audio_wav/{stems[2]}.wav"):
        pair_maps.make_pair_maps(random_run, "is3", str(tmp_path / "IS3"), ann, out, progress=False)
    result = pair_maps.make_pair_maps(
        random_run, "is3", str(tmp_path / "IS3"), ann, out, progress=False, allow_missing=True
    )
    assert [k for k, _ in result["left_out"]] == [stems[2]]
    again = maps_file.read_maps(out)
    assert sorted(again) == sorted(set(stems) - {stems[2]})
    np.testing.assert_array_equal(again[stem], maps[stem])


def test_missing_media_names_key_and_path(random_run, disk, tmp_path):
    bad = tmp_path / "disk"
    bad.mkdir()
    for part in ("frames", "video", "Annotations"):
        os.symlink(disk / part, bad / part)
    (bad / "audio").mkdir()
    for i in ("2001", "2007"):  # 2005's sound is missing.
        os.symlink(disk / "audio" / f"{i}.wav", bad / "audio" / f"{i}.wav")
    kw = flickr_args(disk, "extended_flickr")
    out = str(tmp_path / "maps.npz")
    with pytest.raises(MediaError, match=r"audio/2005\.wav: pair 2001__2005: missing"):
        pair_maps.make_pair_maps(
            random_run, "extended_flickr", str(bad), out=out, progress=False, workers=0, **kw
        )
    assert not os.path.exists(out)
    result = pair_maps.make_pair_maps(
        random_run, "extended_flickr", str(bad), out=out, progress=False, allow_missing=True, **kw
    )
    assert sorted(k for k, _ in result["left_out"]) == ["2001__2005", "2005"]
    maps = maps_file.read_maps(out)
    pairs = scoring.read_pairs("extended_flickr", **kw)
    scores = scoring.score("extended_flickr", maps, pairs, out, allow_missing=True)
    assert scores["missing"]["maps"] == ["2001__2005", "2005"] and scores["n_pairs"] == 5


def test_cli_writes_what_the_scorer_reads(random_run, disk, tmp_path):
    out = tmp_path / "maps.npz"
    args = [
        "--protocol=extended_flickr",
        f"--annotations={disk / 'Annotations'}",
        f"--test_list={disk / 'flickr_test.csv'}",
        f"--negatives={disk / 'plus_silent.csv'}",
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "avkd_jax.pair_maps",
            f"--checkpoint={random_run}",
            f"--media_root={disk}",
            f"--out={out}",
            "--batch_size=4",
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    assert "wrote 7 maps" in made.stdout
    scored = subprocess.run(
        [sys.executable, "-m", "avkd_jax.score", f"--maps={out}", "--tau=0.03", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert "extended_flickr: 7 pairs scored" in scored.stdout


def test_own_maps_equal_what_eval_saves(tiny, tmp_path):
    """`<id>` maps of the tiny synthetic world's test clips, read from its raw files, equal
    what `--mode=eval --config.save_maps=True` keeps for them (`evaluate_split_details`)."""
    npz = write_avc_npz(random_avc(tiny.model.width, tiny.model.embed_dim), tmp_path / "avc.npz")
    train_state.import_npz(tiny, str(tmp_path / "run"), npz)
    run = localize.load_run(str(tmp_path / "run"))
    config = tiny.copy_and_resolve_references()
    config.save_maps = True
    builder = datasets.get_builder(config)
    saved = evaluator.evaluate_split_details(
        run.model, {fusion.STUDENT: run.variables}, builder, config, sharding.create_mesh()
    ).maps
    raw = builder.raw_dir()
    out = str(tmp_path / "maps.npz")
    pair_maps.make_pair_maps(
        str(tmp_path / "run"),
        "flickr",
        raw,
        os.path.join(raw, "Annotations"),
        out,
        os.path.join(raw, "test.csv"),
        batch_size=5,
        progress=False,
    )
    maps = maps_file.read_maps(out)
    assert set(maps) == set(saved) and len(saved) == tiny.dataset_kwargs.num_test
    for key, want in saved.items():
        np.testing.assert_allclose(maps[key], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_negative_audio_vggss_offscreen_of_another_class(random_run, tmp_path):
    ids = ["aaa_000001", "bbb_000002", "ccc_000003", "ddd_000004"]
    classes = ["dog", "dog", "piano", "cat"]
    entries = []
    for k, (i, c) in enumerate(zip(ids, classes)):
        write_frame(tmp_path, i, 50, 70, seed=30 + k)
        write_sound(tmp_path / "audio" / f"{i}.wav", 250.0 + 150 * k)
        entries.append({"file": i, "class": c, "bbox": [[0.1, 0.2, 0.6, 0.9]]})
    (tmp_path / "vggss.json").write_text(json.dumps(entries))
    write_lines(tmp_path / "vggss_test.csv", ids, "\r\n")
    kw = {
        "annotation_path": str(tmp_path / "vggss.json"),
        "test_list": str(tmp_path / "vggss_test.csv"),
    }
    out = str(tmp_path / "maps.npz")
    pair_maps.make_pair_maps(
        random_run, "negative_audio_vggss", str(tmp_path), out=out, progress=False, **kw
    )
    maps = maps_file.read_maps(out)
    picks = negative_audio.pick_offscreen(ids, dict(zip(ids, classes)))
    offscreen = {k for k in maps if k not in ids and not k.endswith(("__silence", "__noise"))}
    assert offscreen == {f"{i}__{j}" for i, j in picks.items()}
    by_class = dict(zip(ids, classes))
    assert all(by_class[i] != by_class[j] for i, j in picks.items())
    pairs = scoring.read_pairs("negative_audio_vggss", **kw)
    scores = scoring.score("negative_audio_vggss", maps, pairs, out)
    assert scores["n_pairs"] == 16 and scores["metrics"]["n_offscreen"] == 4
