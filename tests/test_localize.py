"""`python -m avkd_jax.localize`: a student's map over a user's own image + audio, or video.

The fast tests use a student with random weights (imported with --mode=import's code);
the slow one uses the trained synthetic run of `conftest.trained_run`.
"""

import os
import subprocess
import sys

import av
import numpy as np
import pytest
import soundfile as sf
from helpers.configs import tiny_config
from helpers.paths import REPO
from helpers.torch_reference import random_resnet, write_resnet_npz
from PIL import Image

from avkd_jax import checkpoints, datasets, input_pipeline, localize, pictures, sharding
from avkd_jax.datasets import synthetic_world
from avkd_jax.errors import MediaError
from avkd_jax.eval import diagnostics, evaluator, fusion, protocol


def write_mp4(path, image, pcm, rate, fps=8, seconds=2.0):
    """A clip showing `image` throughout, with `pcm` (int16 mono) as AAC."""
    h, w = image.shape[:2]
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        st = c.add_stream("aac", rate=rate, layout="mono")
        for _ in range(int(fps * seconds)):
            for p in vs.encode(av.VideoFrame.from_ndarray(image, "rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        x = (pcm.astype(np.float32) / 32768)[None]
        step = st.codec_context.frame_size or 1024
        for i in range(0, x.shape[1], step):
            chunk = np.ascontiguousarray(x[:, i : i + step])
            frame = av.AudioFrame.from_ndarray(chunk, "fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, i
            for p in st.encode(frame):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    return str(path)


def test_inputs_are_exactly_what_evaluation_sees(tiny):
    """The raw files of the tiny world's test clips, read by localize, give the evaluation
    pipeline's uint8 image and int16 PCM bit for bit."""
    builder = datasets.get_builder(tiny)
    raw = builder.raw_dir()
    checked = 0
    for batch in input_pipeline.eval_batches(builder, tiny, "test", 6):
        for r in np.flatnonzero(batch["mask"]):
            i = batch["id"][r].decode()
            _, stored = localize.read_picture(os.path.join(raw, "frames", f"{i}.jpg"), False)
            image = localize.model_image(stored, tiny.image_size)
            pcm = localize.read_sound(os.path.join(raw, "audio", f"{i}.wav"), False, tiny)
            np.testing.assert_array_equal(image, batch["image"][r])
            np.testing.assert_array_equal(pcm, batch["audio"][r])
            checked += 1
    assert checked == tiny.dataset_kwargs.num_test


def test_any_image_size_and_audio_format(random_run, tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, [173, 301, 4], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "photo.png")
    t = np.arange(2 * 44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 300 * t), 0.3 * np.sin(2 * np.pi * 900 * t)], 1)
    sf.write(tmp_path / "sound.flac", 0.5 * stereo, 44100)

    out = localize.localize(
        random_run,
        image=str(tmp_path / "photo.png"),
        audio=str(tmp_path / "sound.flac"),
        out=str(tmp_path / "result"),
    )
    assert out["png"] == str(tmp_path / "result.png") and out["npy"] == str(tmp_path / "result.npy")
    heat = np.load(out["npy"])
    assert heat.shape == (224, 224) and heat.dtype == np.float32
    assert heat.min() == 0.0 and heat.max() == 1.0
    with Image.open(out["png"]) as im:
        assert im.size == (301, 173)  # the picture's own size
        drawn = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(drawn, pictures.overlay(rgba[..., :3], heat))


def test_video_gives_its_frame_size_and_the_same_map_as_its_parts(random_run, tmp_path):
    scene = synthetic_world.make_scene(1, "test", 0)
    frame = np.asarray(Image.fromarray(scene["image"]).resize((160, 120)))
    path = write_mp4(tmp_path / "clip.mp4", frame, scene["audio"], 22050)
    out = localize.localize(random_run, video_path=path, out=str(tmp_path / "clip"))
    with Image.open(out["png"]) as im:
        assert im.size == (160, 120)

    run = localize.load_run(random_run)
    _, stored = localize.read_picture(path, True)
    pcm = localize.read_sound(path, True, run.config)
    expected = localize.localization_map(
        run, localize.model_image(stored, run.config.image_size), pcm
    )
    np.testing.assert_array_equal(np.load(out["npy"]), expected)


def test_og_variant_fuses_the_object_map(random_run, tmp_path):
    npz = write_resnet_npz(random_resnet(0.25), tmp_path / "resnet.npz")
    scene = synthetic_world.make_scene(1, "test", 1)
    Image.fromarray(scene["image"]).save(tmp_path / "x.jpg")
    sf.write(tmp_path / "y.wav", scene["audio"], 22050)
    kw = {"image": str(tmp_path / "x.jpg"), "audio": str(tmp_path / "y.wav")}
    avc = localize.localize(random_run, out=str(tmp_path / "avc"), **kw)["map"]
    og = localize.localize(
        random_run, out=str(tmp_path / "og"), variant="OG-AVC", object_npz=npz, **kw
    )["map"]

    run = localize.load_run(random_run)
    objects = localize.object_model(run, npz)
    _, stored = localize.read_picture(kw["image"], False)
    image = localize.model_image(stored, run.config.image_size)[None]
    obj = protocol.protocol_maps(
        np.asarray(fusion.object_maps(objects.trunk, objects.variables, image))
    )
    fused = 0.6 * avc + 0.4 * obj[0]
    np.testing.assert_allclose(og, (fused - fused.min()) / (fused.max() - fused.min()), atol=1e-6)

    with pytest.raises(localize.RunError, match="needs an object model"):
        localize.localize(random_run, out=str(tmp_path / "z"), variant="OG-AVC", **kw)


def test_clear_errors(random_run, tmp_path):
    scene = synthetic_world.make_scene(1, "test", 2)
    good_image, good_audio = tmp_path / "x.jpg", tmp_path / "y.wav"
    Image.fromarray(scene["image"]).save(good_image)
    sf.write(good_audio, scene["audio"], 22050)

    empty = tmp_path / "empty_workdir"
    empty.mkdir()
    with pytest.raises(localize.RunError, match="empty_workdir/config.json does not exist"):
        localize.localize(str(empty), image=str(good_image), audio=str(good_audio))
    checkpoints.save_config(tiny_config(tmp_path / "d"), str(empty))
    with pytest.raises(localize.RunError, match=r"No checkpoint in .*empty_workdir/checkpoints"):
        localize.localize(str(empty), image=str(good_image), audio=str(good_audio))

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good_image.read_bytes()[:300])
    with pytest.raises(MediaError, match="broken.jpg"):
        localize.localize(random_run, image=str(broken), audio=str(good_audio))
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not a sound")
    with pytest.raises(MediaError, match="notes.wav"):
        localize.localize(random_run, image=str(good_image), audio=str(not_audio))
    with pytest.raises(MediaError, match="missing.mp4: file does not exist"):
        localize.localize(random_run, video_path=str(tmp_path / "missing.mp4"))
    with pytest.raises(ValueError, match="not both"):
        localize.localize(random_run, image=str(good_image), video_path=str(good_image))
    with pytest.raises(ValueError, match="--image and --audio together"):
        localize.localize(random_run, image=str(good_image))


@pytest.mark.slow  # Two fresh interpreters, each importing JAX and TensorFlow.
def test_command_line(random_run, tmp_path):
    scene = synthetic_world.make_scene(1, "test", 3)
    Image.fromarray(scene["image"]).save(tmp_path / "x.jpg")
    sf.write(tmp_path / "y.wav", scene["audio"], 22050)
    cmd = [sys.executable, "-m", "avkd_jax.localize", f"--image={tmp_path / 'x.jpg'}"]
    cmd += [f"--audio={tmp_path / 'y.wav'}", f"--out={tmp_path / 'map'}"]
    ok = subprocess.run(
        [*cmd, f"--checkpoint={random_run}"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert f"{tmp_path / 'map.png'} {tmp_path / 'map.npy'}" in ok.stdout
    bad = subprocess.run(
        [*cmd, f"--checkpoint={tmp_path / 'nowhere'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert "error: " in bad.stderr and "nowhere/config.json does not exist" in bad.stderr


@pytest.mark.slow
def test_localize_gives_the_evaluated_map(trained_run):
    """The trained run's test clips, given to localize as a user's files (the world's raw
    frames/<id>.jpg and audio/<id>.wav), get exactly the maps the evaluation scored."""
    run = localize.load_run(trained_run)
    builder = datasets.get_builder(run.config)
    ids = ["9000003", "9000017", "9000028"]
    scored = evaluator.evaluate_split_details(
        run.model,
        {"AVC": run.variables},
        builder,
        run.config,
        sharding.create_mesh(),
        picture_ids=ids,
    )
    assert [p["id"] for p in scored.pictures] == ids
    for picture in scored.pictures:
        i = picture["id"]
        out = localize.localize(
            trained_run,
            image=os.path.join(builder.raw_dir(), "frames", f"{i}.jpg"),
            audio=os.path.join(builder.raw_dir(), "audio", f"{i}.wav"),
            out=os.path.join(trained_run, "localize_test", i),
        )
        np.testing.assert_allclose(out["map"], picture["maps"]["AVC"], atol=1e-6, rtol=0)


def lone_off_centre_scenes(count: int, seed: int = 123):
    """Test scenes of world `seed` (unseen in training) with a single object whose box
    misses the image centre, so that a centre-biased map cannot score: [(index, box)]."""
    found, index = [], 0
    while len(found) < count:
        index += 1
        (obj, *others) = synthetic_world.scene_layout(seed, "test", index)["objects"]
        x0, y0, x1, y1 = obj["box"]
        if not others and not (x0 <= 128 <= x1 and y0 <= 128 <= y1):
            found.append((index, obj["box"]))
    return found


@pytest.mark.slow
def test_trained_maps_peak_on_the_sounding_object(trained_run, tmp_path):
    """The localize command's maps of a trained checkpoint, on a user's files (a 320×256
    jpg with a 44.1 kHz stereo wav, or an mp4), peak on the sounding object of off-centre
    scenes far more often than chance (a peak anywhere: the object's share of the image)."""
    scenes = lone_off_centre_scenes(20)
    hits = {fusion.STUDENT: [], fusion.OG: []}
    chance = []
    for k, (index, box) in enumerate(scenes):
        scene = synthetic_world.make_scene(123, "test", index, 44100, include_swap=False)
        boxes = np.asarray([box]) / 256  # Relative boxes survive the stretch to 320 wide.
        chance.append((boxes[0, 2] - boxes[0, 0]) * (boxes[0, 3] - boxes[0, 1]))
        image = tmp_path / f"{index}.jpg"
        Image.fromarray(scene["image"]).resize((320, 256)).save(image, quality=95)
        audio = tmp_path / f"{index}.wav"
        sf.write(audio, np.repeat(scene["audio"][:, None], 2, axis=1), 44100)
        inputs = {v: {"image": str(image), "audio": str(audio), "variant": v} for v in hits}
        if k < 4:  # The same clip as a video too: its middle frame and centre second.
            clip = write_mp4(tmp_path / f"{index}.mp4", scene["image"], scene["audio"], 44100)
            inputs["video"] = {"video_path": clip}
        for name, kw in inputs.items():
            out = localize.localize(trained_run, out=str(tmp_path / f"{index}_{name}"), **kw)
            size = (256, 256) if name == "video" else (320, 256)
            assert Image.open(out["png"]).size == size
            hit = diagnostics.peak_object(out["map"], boxes) == 0
            hits[kw.get("variant", fusion.STUDENT)].append(hit)
    rates = {v: float(np.mean(h)) for v, h in hits.items()}
    print(f"peak on the lone object: {rates}; chance (its area): {np.mean(chance):.2f}")
    # A small run (docs/layout.md, Tests, the slow tier): bounds relative to chance, with
    # room for another CPU's round-off to move the training.
    assert rates[fusion.STUDENT] >= 1.5 * np.mean(chance)
    assert rates[fusion.OG] >= 2 * np.mean(chance)
