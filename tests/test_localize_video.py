"""`localize --video=clip.mp4 --out=clip_localized.mp4`: a student's maps over a whole video.

The fast tests use a student with random weights (`conftest.random_run`); the slow one the
trained synthetic run (`conftest.trained_run`) on a video of two moving objects whose
sound passes from one to the other halfway.
"""

import os
import subprocess
import sys

import av
import numpy as np
import pytest
from helpers.paths import REPO
from helpers.torch_reference import random_resnet, write_resnet_npz
from PIL import Image

from avkd_jax import localize, localize_video, pictures
from avkd_jax.datasets import media, synthetic_world, video
from avkd_jax.datasets.synthetic_world import sound as world_sound
from avkd_jax.errors import MediaError
from avkd_jax.eval import diagnostics, fusion

SR = 22050


def write_clip(path, frames, pcm=None, rate=SR, fps=8, rotation=None, audio="aac", fmt=None):
    """A video of `frames` (uint8 [F, H, W, 3]) at `fps`, with `pcm` (int16 mono) as
    `audio` ('aac', or 'pcm_s16le' in a .mkv), and a display matrix of `rotation`°."""
    with av.open(str(path), "w", format=fmt) as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.height, vs.width = frames.shape[1:3]
        vs.pix_fmt = "yuv420p"
        if rotation is not None:
            vs.set_display_rotation(rotation)
        st = None
        if pcm is not None:
            st = c.add_stream(audio, rate=rate, layout="mono")
        for frame in frames:
            c.mux(vs.encode(av.VideoFrame.from_ndarray(frame, "rgb24")))
        c.mux(vs.encode())
        if st is not None:
            fmt_name = "fltp" if audio == "aac" else "s16"
            x = pcm.astype(np.float32)[None] / 32768 if audio == "aac" else pcm[None]
            step = 1024
            for i in range(0, x.shape[1], step):
                chunk = np.ascontiguousarray(x[:, i : i + step])
                frame = av.AudioFrame.from_ndarray(chunk, fmt_name, layout="mono")
                frame.sample_rate, frame.pts = rate, i
                c.mux(st.encode(frame))
            c.mux(st.encode())
    return str(path)


def decoded(path):
    """(frame times [F], uint8 frames [F, H, W, 3] as displayed, audio float [C, N])."""
    with av.open(str(path)) as c:
        times, frames = [], []
        for frame in c.decode(video=0):
            times.append(frame.time)
            frames.append(np.rot90(frame.to_ndarray(format="rgb24"), frame.rotation // 90))
    with av.open(str(path)) as c:
        sound = None
        if c.streams.audio:
            sound = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=-1)
    return np.asarray(times), np.stack(frames), sound


def moving_frames(count, h=64, w=96):
    """A bright square crossing a dark frame, plus noise: every frame differs."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 60, [count, h, w, 3], dtype=np.uint8)
    for i in range(count):
        x = int(i * (w - 16) / max(count - 1, 1))
        frames[i, 20:36, x : x + 16] = [250, 200, 40]
    return frames


def tone(seconds, f=440.0, rate=SR):
    t = np.arange(int(seconds * rate)) / rate
    return np.round(8000 * np.sin(2 * np.pi * f * t) * (1 + t)).astype(np.int16)


def test_sampled_frames_are_the_first_at_each_step():
    fps = 4.0
    for times in (
        np.arange(90) / 30,  # 30 fps.
        np.arange(24) / 2 + 0.5,  # 2 fps, starting late: every frame.
        np.cumsum(np.random.default_rng(1).uniform(0.01, 0.4, 60)),  # Variable rate.
    ):
        rel = times - times[0]
        steps = np.arange(int(np.ceil(rel[-1] * fps)) + 1) / fps
        firsts = np.searchsorted(rel, steps - 1e-9)  # The first frame at or after each step.
        expected = sorted(set(firsts[firsts < len(rel)].tolist()))
        assert localize_video.sample_indices(times, fps) == expected
    assert localize_video.sample_indices(np.arange(90) / 30, 4) == [
        0,
        8,
        15,
        23,
        30,
        38,
        45,
        53,
        60,
        68,
        75,
        83,
    ]


def test_audio_windows_are_centred_and_tiled_at_the_ends():
    track = np.arange(1000, dtype=np.int16)
    rate, n = 100, 300  # 10 s of sound, 3 s windows.
    window = localize_video.audio_window
    np.testing.assert_array_equal(window(track, 5.0, rate, n), np.arange(350, 650))
    np.testing.assert_array_equal(window(track, 5.004, rate, n), np.arange(350, 650))
    np.testing.assert_array_equal(window(track, 5.006, rate, n), np.arange(351, 651))
    # At the start only [0, 150) lies inside: tiled, as a 1.5 s training clip would be.
    np.testing.assert_array_equal(window(track, 0.0, rate, n), np.resize(np.arange(150), 300))
    np.testing.assert_array_equal(window(track, 0.5, rate, n), np.resize(np.arange(200), 300))
    np.testing.assert_array_equal(window(track, 9.0, rate, n), np.resize(np.arange(750, 1000), 300))
    np.testing.assert_array_equal(window(track, 12.0, rate, n), np.zeros(300))
    assert window(track, 5.0, rate, n).dtype == np.int16


def test_upright_turns_as_the_display_matrix_says():
    a = np.arange(2 * 3 * 3).reshape(2, 3, 3).astype(np.uint8)
    quarter = localize_video.upright(a, 90)  # Counter-clockwise: the right column on top.
    assert quarter.shape == (3, 2, 3)
    for i in range(3):
        for j in range(2):
            np.testing.assert_array_equal(quarter[i, j], a[j, 2 - i])
    np.testing.assert_array_equal(localize_video.upright(a, 180), a[::-1, ::-1])
    np.testing.assert_array_equal(localize_video.upright(a, -90), quarter[::-1, ::-1])
    np.testing.assert_array_equal(localize_video.upright(a, 0), a)
    np.testing.assert_array_equal(localize_video.upright(a, 89.6), quarter)


def test_render_writes_every_frame_the_maps_and_the_sound(random_run, tmp_path):
    frames = moving_frames(27)  # 3.375 s at 8 fps.
    pcm = tone(3.4)
    clip = write_clip(tmp_path / "clip.mp4", frames, pcm)
    run = localize.load_run(random_run)
    out = localize_video.render(
        run, clip, str(tmp_path / "out" / "clip_localized.mp4"), batch_size=5, progress=False
    )
    stem = str(tmp_path / "out" / "clip_localized")
    assert {k: out[k] for k in ("mp4", "npz", "plot")} == {
        "mp4": stem + ".mp4",
        "npz": stem + ".npz",
        "plot": stem + "_peak.png",
    }
    assert sorted(os.listdir(tmp_path / "out")) == [
        "clip_localized.mp4",
        "clip_localized.npz",
        "clip_localized_peak.png",
    ]

    times_in, frames_in, sound_in = decoded(clip)
    times_out, frames_out, sound_out = decoded(out["mp4"])
    np.testing.assert_array_equal(times_out, times_in)
    assert frames_out.shape == frames_in.shape == (27, 64, 96, 3)
    np.testing.assert_array_equal(sound_out, sound_in)  # The same packets, decoded.
    with av.open(out["mp4"]) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        assert c.streams.video[0].frames == 27

    saved = np.load(out["npz"])
    assert sorted(saved.files) == ["frames", "maps", "peaks", "raw", "times"]
    picked = list(range(0, 27, 2))  # 8 fps video, 4 maps a second.
    np.testing.assert_array_equal(saved["frames"], picked)
    np.testing.assert_array_equal(saved["times"], times_in[picked] - times_in[0])
    maps = saved["maps"]
    assert maps.shape == (14, 224, 224) and maps.dtype == np.float32
    assert out["maps"] == 14 and out["frames"] == 27

    track = video.load_video_track(clip, run.config.sample_rate)
    samples = round(run.config.sample_rate * run.config.audio_seconds)
    model = localize._jitted(fusion.model_maps, run.model)
    for k, i in enumerate(picked):
        stored = media.image_array(Image.fromarray(frames_in[i]), 256)
        image = localize.model_image(stored, run.config.image_size)
        c = round(times_in[i] * run.config.sample_rate)  # The audio starts at 0 here.
        part = track[max(c - samples // 2, 0) : c - samples // 2 + samples]
        pcm_k = np.resize(part, samples)
        expected = localize.localization_map(run, image, pcm_k)
        np.testing.assert_allclose(maps[k], expected, atol=1e-5)
        raw = np.asarray(model(run.variables, image[None], pcm_k[None]))[0]
        np.testing.assert_allclose(saved["raw"][k], raw, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(saved["peaks"][k], raw.max(), rtol=1e-5)
    # Each frame shows the latest sampled map (held), up to the H.264 round-off.
    for i in range(27):
        drawn = pictures.overlay(frames_in[i], maps[i // 2]).astype(np.float32)
        assert np.abs(frames_out[i] - drawn).mean() < 5.0
    with Image.open(out["plot"]) as im:
        assert im.format == "PNG" and im.size[0] >= 300


def test_og_variant_maps_are_the_fusion(random_run, tmp_path):
    npz = write_resnet_npz(random_resnet(0.25), tmp_path / "resnet.npz")
    frames = moving_frames(6)
    clip = write_clip(tmp_path / "clip.mp4", frames, tone(1.0))
    run = localize.load_run(random_run)
    out = localize_video.render(
        run, clip, str(tmp_path / "og.mp4"), variant="OG-AVC", object_npz=npz, progress=False
    )
    saved = np.load(out["npz"])
    _, frames_in, _ = decoded(clip)
    objects = localize.object_model(run, npz)
    track = video.load_video_track(clip, run.config.sample_rate)
    samples = round(run.config.sample_rate * run.config.audio_seconds)
    for k, i in enumerate(saved["frames"]):
        stored = media.image_array(Image.fromarray(frames_in[i]), 256)
        image = localize.model_image(stored, run.config.image_size)
        pcm = localize_video.audio_window(track, saved["times"][k], SR, samples)
        expected = localize.localization_map(run, image, pcm, "OG-AVC", objects)
        np.testing.assert_allclose(saved["maps"][k], expected, atol=1e-5)
    with pytest.raises(localize.RunError, match="needs an object model"):
        localize_video.render(run, clip, str(tmp_path / "x.mp4"), variant="OG-AVC")


def test_rotated_video_comes_out_upright(random_run, tmp_path):
    frames = moving_frames(8, h=48, w=96)
    clip = write_clip(tmp_path / "turned.mp4", frames, tone(1.0), rotation=90)
    with av.open(clip) as c:
        stored = next(c.decode(video=0))
        assert stored.rotation == 90
        stored = stored.to_ndarray(format="rgb24")  # As written: 48 high, 96 wide.
    run = localize.load_run(random_run)
    out = localize_video.render(run, clip, str(tmp_path / "up.mp4"), progress=False)
    with av.open(out["mp4"]) as c:
        first = next(c.decode(video=0))
        assert (first.width, first.height, first.rotation) == (48, 96, 0)
    _, frames_out, _ = decoded(out["mp4"])
    heat = np.load(out["npz"])["maps"][0]
    # Shown turned a quarter counter-clockwise (ffmpeg's player and command line agree).
    expected = pictures.overlay(np.rot90(stored), heat).astype(np.float32)
    assert np.abs(frames_out[0] - expected).mean() < 5.0
    wrong_way = pictures.overlay(np.rot90(stored, -1), heat).astype(np.float32)
    assert np.abs(frames_out[0] - wrong_way).mean() > 10.0


def test_sound_mp4_cannot_hold_is_reencoded(random_run, tmp_path):
    t = np.arange(2 * SR) / SR
    pcm = np.round(12000 * np.sin(2 * np.pi * (200 * t + 400 * t * t))).astype(np.int16)  # Chirp.
    clip = write_clip(tmp_path / "clip.mkv", moving_frames(16), pcm, audio="pcm_s16le")
    run = localize.load_run(random_run)
    out = localize_video.render(run, clip, str(tmp_path / "clip.mp4"), progress=False)
    with av.open(out["mp4"]) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        again = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=-1)[0]
    # AAC is lossy and may shift by up to a frame: the same sweep at its best lag.
    x = pcm / 32768
    n = len(x) - 2048
    lags = range(-1024, 1025)
    fit = [np.dot(x[1024 : 1024 + n], again[1024 + d : 1024 + d + n]) for d in lags]
    lag = lags[int(np.argmax(fit))]
    aligned = again[1024 + lag : 1024 + lag + n]
    print(f"AAC lag {lag}, length {len(again)} for {len(x)}")
    assert np.corrcoef(x[1024 : 1024 + n], aligned)[0, 1] > 0.99
    assert abs(len(again) - len(x)) <= 1024


def test_a_video_without_sound_is_named(random_run, tmp_path):
    clip = write_clip(tmp_path / "silent.mp4", moving_frames(8))
    run = localize.load_run(random_run)
    with pytest.raises(MediaError, match=r"silent.mp4: no audio stream"):
        localize_video.render(run, clip, str(tmp_path / "x.mp4"), progress=False)
    with pytest.raises(MediaError, match=r"silent.mp4: no audio stream"):
        localize_video.localize_video(random_run, clip, str(tmp_path / "x.mp4"))
    with pytest.raises(ValueError, match="--fps=0"):
        localize_video.render(run, clip, str(tmp_path / "x.mp4"), fps=0)
    assert not os.path.exists(tmp_path / "x.mp4")


SIZE = synthetic_world.IMAGE_SIZE
BOX = 128  # Two objects of the world's sizes (a quarter of the frame), one above the other.


def crossing_boxes(count):
    """Per frame, the boxes [2, 4] (pixels) of object 0 moving right along the top half
    and object 1 moving left along the bottom half."""
    xs = np.round(np.linspace(0, SIZE - BOX, count)).astype(int)
    top = np.stack([xs, 0 * xs, xs + BOX, BOX + 0 * xs], 1)
    bottom = np.stack([xs[::-1], BOX + 0 * xs, xs[::-1] + BOX, 2 * BOX + 0 * xs], 1)
    return np.stack([top, bottom], 1)


def two_source_clip(path, seed, seconds=4.0, fps=8, swap=False, silent=False):
    """A world scene with two objects crossing (`crossing_boxes`): the first sounds for the
    first half, the second for the rest (the other way round with `swap`).

    Returns:
      (the clip's path, boxes [F, 2, 4] pixels, the switch time in seconds).
    """
    rng = np.random.default_rng([seed, 77])
    classes = rng.choice(synthetic_world.NUM_CLASSES, 2, replace=False)
    background = synthetic_world.render_background(rng)
    count = int(seconds * fps)
    boxes = crossing_boxes(count)
    frames = np.empty([count, SIZE, SIZE, 3], np.uint8)
    for i in range(count):
        frames[i] = background
        for k in (0, 1):  # The same colour in every frame: a fresh generator per object.
            obj_rng = np.random.default_rng([seed, 78, k])
            synthetic_world.render_object(obj_rng, int(classes[k]), frames[i], boxes[i, k])
    n = int(seconds * SR)
    sounds = [synthetic_world.synthesize_sound(rng, int(c), n) for c in classes]
    first, second = (1, 0) if swap else (0, 1)
    mix = np.concatenate([sounds[first][: n // 2], sounds[second][n // 2 :]])
    pcm = world_sound.to_int16(synthetic_world.add_background_noise(rng, mix))
    if silent:
        pcm = np.zeros_like(pcm)
    return write_clip(path, frames, pcm, fps=fps), boxes, seconds / 2


def peaks_on_the_sounding_object(run, tmp_path, seeds, **clip_kw) -> list[bool]:
    """Per sampled frame whose sound window holds one object's sound only: whether the
    map peaks on that object (the first half's object unless swapped)."""
    half = run.config.audio_seconds / 2
    hits = []
    for seed in seeds:
        name = f"{seed}_{'_'.join(sorted(clip_kw)) or 'plain'}"
        clip, boxes, switch = two_source_clip(tmp_path / f"{name}.mp4", seed, **clip_kw)
        out = localize_video.render(run, clip, str(tmp_path / f"{name}_out.mp4"), progress=False)
        saved = np.load(out["npz"])
        # The student's own grid, as the evaluation's peak diagnostics take it.
        for heat, t, i in zip(saved["raw"], saved["times"], saved["frames"]):
            if abs(t - switch) < half:
                continue  # Both sounds in the window.
            sounding = int(t >= switch) ^ int(clip_kw.get("swap", False))
            hits.append(diagnostics.peak_object(heat, boxes[i] / SIZE) == sounding)
    return hits


def every_object_hits(fps=4.0, seconds=4.0, half=0.5) -> list[bool]:
    """The audio-blind baseline over the same sampled frames of both sound orders: the
    every-object map's peak (`diagnostics`) on the sounding object."""
    hits = []
    boxes = crossing_boxes(int(seconds * 8))
    for swap in (0, 1):
        for k in range(int(seconds * fps)):
            t = k / fps
            if abs(t - seconds / 2) < half:
                continue
            frame_boxes = boxes[k * 2] / SIZE
            peak = diagnostics.peak_object(diagnostics.every_object_map(frame_boxes), frame_boxes)
            hits.append(peak == int(t >= seconds / 2) ^ swap)
    return hits


@pytest.mark.slow
def test_trained_maps_follow_the_sound_from_one_object_to_the_other(trained_run, tmp_path):
    """Two objects cross the frame; the sound passes from one to the other halfway, in
    either order. The trained student's maps peak on the sounding object far more often
    than audio-blind maps do: those peak on the same object whichever sounds, so they
    score at most 1/2 over both orders (the every-object map, and the same student
    hearing silence)."""
    run = localize.load_run(trained_run)
    seeds = range(8)
    student = peaks_on_the_sounding_object(run, tmp_path, seeds)
    student += peaks_on_the_sounding_object(run, tmp_path, seeds, swap=True)
    silence = peaks_on_the_sounding_object(run, tmp_path, seeds, silent=True)
    silence += peaks_on_the_sounding_object(run, tmp_path, seeds, silent=True, swap=True)
    blind = every_object_hits(half=run.config.audio_seconds / 2)
    shares = {k: float(np.mean(v)) for k, v in [("student", student), ("silence", silence)]}
    print(
        f"peak on the sounding object, {len(student)} sampled frames: student "
        f"{shares['student']:.2f}; audio-blind: every object {np.mean(blind):.2f}, "
        f"the student on silence {shares['silence']:.2f}"
    )
    # A small run (test_localize): the bounds leave room for another CPU's round-off.
    assert shares["student"] >= np.mean(blind) + 0.05
    assert shares["student"] >= shares["silence"] + 0.15


@pytest.mark.slow  # A fresh interpreter (JAX, TensorFlow).
def test_command_line(random_run, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", moving_frames(12), tone(1.5))
    cmd = [sys.executable, "-m", "avkd_jax.localize", f"--checkpoint={random_run}"]
    cmd += [f"--video={clip}", f"--out={tmp_path / 'clip_localized.mp4'}", "--fps=2"]
    ok = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr[-2000:]
    stem = tmp_path / "clip_localized"
    assert f"AVC maps of 3 frames: {stem}.mp4 {stem}.npz {stem}_peak.png" in ok.stdout
    assert "maps: 12/12 frames" in ok.stderr and "video: 12/12 frames" in ok.stderr
    np.testing.assert_array_equal(np.load(f"{stem}.npz")["times"], [0.0, 0.5, 1.0])
