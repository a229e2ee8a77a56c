"""PANNs Cnn14: loaded without running panns_inference's __init__, resampling, embeddings."""

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.signal
import torch

from teachers import common, panns

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def cnn14():
    return panns.build_cnn14(seed=0)


def test_cnn14_loads_without_the_package_init(tmp_path):
    # In a fresh process whose home is empty: the package's __init__ would try to wget
    # a CSV into ~/panns_data.
    code = (
        "import sys; from teachers import panns; c = panns.cnn14_class(); "
        "assert 'panns_inference' not in sys.modules; print(c.__module__)"
    )
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=REPO)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "_teachers_panns_inference.models"
    assert not (tmp_path / "panns_data").exists()


def test_architecture_and_embedding_shape(cnn14):
    assert sum(p.numel() for p in cnn14.parameters()) == 81_837_071  # Cnn14, 527 classes.
    assert cnn14.conv_block6.conv2.weight.shape == (2048, 2048, 3, 3)
    pcm = (np.random.default_rng(0).standard_normal((3, 11025)) * 3000).astype(np.int16)
    teacher = panns.teacher_from_model(cnn14, "random")
    assert teacher.shapes == {"audio_hint": (2048,)} and teacher.inputs == ("audio",)
    hints = teacher.compute({"audio": pcm, "sample_rate": 22050})["audio_hint"]
    assert hints.shape == (3, 2048) and hints.dtype == np.float32
    assert (hints >= 0).all() and (hints > 0).any()  # post-ReLU fc1 output
    # The hint is Cnn14's own `embedding` output on the resampled clip.
    with torch.no_grad():
        direct = cnn14(torch.from_numpy(panns.resample(pcm, 22050)))["embedding"].numpy()
    np.testing.assert_array_equal(hints, direct)


def band_limited(rng, n, rate, fmax):
    """A sum of 20 random sines below fmax: identical for any resampler that keeps the band."""
    t = np.arange(n) / rate
    f = rng.uniform(50, fmax, 20)
    phase = rng.uniform(0, 2 * np.pi, 20)
    return lambda tt: 0.04 * np.sin(2 * np.pi * f[:, None] * tt[None] + phase[:, None]).sum(0), t


def test_resampler_against_scipy_and_the_analytic_signal():
    rng = np.random.default_rng(1)
    n = 22050  # 1 s
    signal, t = band_limited(rng, n, 22050, 8000.0)
    pcm = np.round(signal(t) * 32768).astype(np.int16)[None]
    got = panns.resample(pcm, 22050)
    assert got.shape == (1, 32000) and got.dtype == np.float32
    # scipy's polyphase filter (640/441, Kaiser window) is an independent implementation.
    ref = scipy.signal.resample_poly(pcm[0] / 32768.0, 640, 441)
    inner = slice(320, -320)  # The two filters treat the clip's edges differently.
    np.testing.assert_allclose(got[0, inner], ref[inner], atol=2e-3)
    # And against the signal itself, sampled at 32 kHz (int16 rounding is 1.5e-5).
    exact = signal(np.arange(32000) / 32000)
    np.testing.assert_allclose(got[0, inner], exact[inner], atol=2e-3)


def test_resampled_sine_keeps_its_frequency_and_duration():
    n = 3 * 22050
    pcm = np.round(0.5 * 32767 * np.sin(2 * np.pi * 1000.0 * np.arange(n) / 22050)).astype(np.int16)
    got = panns.resample(pcm[None], 22050)[0]
    assert got.shape == (96000,)  # 3 s at 32 kHz
    spectrum = np.abs(np.fft.rfft(got * np.hanning(got.size)))
    peak_hz = np.argmax(spectrum) * 32000 / got.size
    assert abs(peak_hz - 1000.0) < 0.5
    assert abs(np.abs(got[1000:-1000]).max() - 0.5) < 1e-3  # amplitude kept, /32768 scaling


def test_checkpoint_round_trip_with_weights_only(tmp_path, cnn14):
    path = tmp_path / "Cnn14_random.pth"
    # The released checkpoints hold the state_dict under 'model', beside plain numbers.
    torch.save({"model": cnn14.state_dict(), "iteration": 0}, path)
    loaded = panns.load_cnn14(str(path))
    for (name, a), (_, b) in zip(cnn14.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    teacher = panns.make_teacher(str(path))
    assert teacher.source == str(path)
    torch.save({"model": {"fc1.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    with pytest.raises(common.CheckpointError, match="other.pth: not a Cnn14 checkpoint"):
        panns.load_cnn14(str(tmp_path / "other.pth"))
    with pytest.raises(ValueError, match="--weights=PATH"):
        panns.make_teacher(None)
