"""Synthetic teachers: labels, the DETR-like hint rule, deterministic cached training."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from avkd_jax.datasets import synthetic_world as world
from teachers import synthetic, synthetic_data

REPO = str(pathlib.Path(__file__).resolve().parents[1])

TINY = {
    "visual_images": 16,
    "visual_steps": 3,
    "audio_clips": 16,
    "audio_steps": 3,
    "audio_seconds": 0.5,
    "batch_size": 8,
    "heldout_images": 4,
    "heldout_clips": 4,
    "heldout_scenes": 2,
}


def exact_coverage(mask, grid=25):
    """Fraction of each grid cell covered by a 256² mask, by brute force: every pixel split
    into 25 × 25 sub-pixels, so that each cell is exactly 256 × 256 sub-pixels."""
    n = mask.shape[0]
    fine = np.repeat(np.repeat(mask, grid, axis=0), grid, axis=1)
    return fine.reshape(grid, n, grid, n).mean(axis=(1, 3))


def test_cell_labels_follow_the_object_mask():
    mask = np.zeros((256, 256), bool)
    mask[30:141, 70:200] = world.shape_mask("star", 130, 111)
    np.testing.assert_allclose(synthetic_data.cell_coverage(mask), exact_coverage(mask), atol=1e-5)

    image, labels = synthetic_data.labelled_image("visual_train", 5, seed=0)
    assert image.shape == (200, 200, 3) and image.dtype == np.uint8
    assert labels.shape == (25, 25)
    classes = set(np.unique(labels)) - {synthetic_data.BACKGROUND}
    assert len(classes) == 1  # one object, one class
    # Regenerating the same sample by hand: same rng stream, same object.
    rng = np.random.default_rng([synthetic_data.NAMESPACE, synthetic_data.STREAMS["visual_train"], 5])
    canvas = world.render_background(rng)
    cls = int(rng.integers(world.NUM_CLASSES))
    x0, y0, x1, y1 = box = synthetic_data._object_box(rng)
    full = np.zeros((256, 256), bool)
    full[y0:y1, x0:x1] = world.render_object(rng, cls, canvas, box)
    assert classes == {cls}
    np.testing.assert_array_equal(labels != synthetic_data.BACKGROUND, exact_coverage(full) >= 0.5)


def test_visual_hint_rule_hand_worked():
    k = world.NUM_CLASSES + 1
    logits = torch.full((2, k, 25, 25), -20.0)
    logits[:, synthetic_data.BACKGROUND] = 0.0  # background everywhere ...
    logits[0, 3, 2, 5] = 3.0  # ... but one clear detection, p ≈ e³/(e³+1) = 0.953
    logits[0, 1, 7, 7] = np.log(0.4 / 0.6)  # one at p = 0.4 (kept)
    logits[0, 2, 9, 9] = np.log(0.25 / 0.75)  # one at p = 0.25 (dropped)
    hint = synthetic.visual_hint_from_logits(logits).numpy()
    p1, p2 = np.exp(3) / (np.exp(3) + 1), 0.4
    expected = np.zeros((25, 25))
    expected[2, 5], expected[7, 7] = p1 / (p1 + p2), p2 / (p1 + p2)
    np.testing.assert_allclose(hint[0], expected, atol=1e-5)
    assert np.isnan(hint[1]).all()  # nothing above 0.3: all NaN


@pytest.fixture(scope="module")
def tiny_teachers(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("teachers") / "teachers.pt")
    assert synthetic.ensure_trained(path, progress=False, **TINY) == path
    return path


def test_short_training_is_cached_and_reused(tiny_teachers, monkeypatch):
    ckpt = torch.load(tiny_teachers, weights_only=True)
    assert ckpt["format"] == synthetic.FORMAT and ckpt["hparams"]["visual_steps"] == 3
    for key in ("audio_accuracy", "visual_cell_accuracy", "scene_mass_in_boxes"):
        assert 0.0 <= ckpt["metrics"][key] <= 1.0
    mtime = os.path.getmtime(tiny_teachers)

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although the file exists")

    monkeypatch.setattr(synthetic, "train", no_training)
    assert synthetic.ensure_trained(tiny_teachers, **TINY) == tiny_teachers
    assert synthetic.main([f"--out={tiny_teachers}"]) == 0
    assert os.path.getmtime(tiny_teachers) == mtime
    assert not [f for f in os.listdir(os.path.dirname(tiny_teachers)) if ".tmp." in f]


def test_training_is_deterministic(tiny_teachers):
    again = synthetic.train(progress=False, **TINY)
    saved = torch.load(tiny_teachers, weights_only=True)
    for part in ("visual_state", "audio_state"):
        for name, value in saved[part].items():
            assert torch.equal(value, again[part][name]), f"{part}.{name}"


def test_teacher_hints_shapes(tiny_teachers):
    teacher = synthetic.make_teacher(tiny_teachers)
    assert teacher.name == "synthetic" and teacher.source == tiny_teachers
    assert teacher.shapes == {"audio_hint": (2048,), "visual_hint": (25, 25)}
    scenes = [world.make_scene(7, "test", i, include_swap=False) for i in range(3)]
    batch = {
        "image": [s["image"] for s in scenes],
        "audio": np.stack([s["audio"][:11025] for s in scenes]),
        "sample_rate": 22050,
    }
    hints = teacher.compute(batch)
    assert hints["audio_hint"].shape == (3, 2048) and (hints["audio_hint"] >= 0).all()
    v = hints["visual_hint"]
    assert v.shape == (3, 25, 25)
    for m in v:  # Either a distribution over the grid or "nothing found".
        assert np.isnan(m).all() or (np.isfinite(m).all() and abs(m.sum() - 1) < 1e-4)
    # The audio hint is the audio net's penultimate layer, post-ReLU.
    _, audio, _ = synthetic.load(tiny_teachers)
    with torch.no_grad():
        x = torch.from_numpy(batch["audio"]).float() / 32768
        emb = torch.relu(audio.fc(_pooled(audio, x)))
    np.testing.assert_allclose(hints["audio_hint"], emb.numpy(), rtol=1e-5, atol=1e-6)
    # Another sample rate is resampled to the teacher's 22,050 Hz first.
    batch32 = dict(batch, audio=np.zeros((3, 16000), np.int16), sample_rate=32000)
    assert teacher.compute(batch32)["audio_hint"].shape == (3, 2048)


def _pooled(audio, x):
    """AudioNet's pooled features, recomputed with torch's own STFT and mel matrix."""
    spec = torch.stft(
        x, 1024, 256, window=torch.hann_window(1024), center=True, return_complex=True
    )
    mel = torch.log(audio.front.filters @ spec.abs() ** 2 + 1e-6)[:, None]
    y = audio.body(audio.norm(mel)).mean(2)
    return y.amax(2) + y.mean(2)


def test_box_cells():
    inside = synthetic.box_cells([[0, 0, 21, 11]])  # cell centres at 5.12, 15.36, 25.6, ...
    assert inside[0, :2].all() and inside.sum() == 2


@pytest.mark.slow
def test_full_training_learns_its_task(tmp_path):
    """The default training through the CLI the trainer runs (about 2¼ minutes on 2 idle
    cores): its held-out numbers are stored in the file."""
    path = tmp_path / "teachers.pt"
    out = subprocess.run(
        [sys.executable, "-m", "teachers.synthetic", f"--out={path}", "--no_progress"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "synthetic teachers trained" in out.stdout
    m = synthetic.load(str(path))[2]["metrics"]
    print(m)
    assert m["audio_accuracy"] > 0.9
    assert m["visual_cell_accuracy"] > 0.9
    assert m["scene_detected_fraction"] > 0.9
    assert m["scene_mass_in_boxes"] > 0.8
