"""The jax log-spectrogram against scipy.signal.spectrogram (float64) on real-looking audio."""

import jax
import numpy as np
import pytest
import scipy.signal

from avkd_jax import audio

ATOL = 1e-4


def scipy_log_spec(x, fs):
    """The reference front end, in float64."""
    _, _, s = scipy.signal.spectrogram(np.asarray(x, np.float64), fs=fs, nperseg=512, noverlap=274)
    return np.log(s + 1e-7)


def int16_like(x):
    """Quantise to int16 and back, as audio read from a wav file is."""
    return (np.clip(np.round(x * 32768), -32768, 32767) / 32768).astype(np.float32)


def signals(fs, n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    return {
        "tones+noise": int16_like(
            0.3 * np.sin(2 * np.pi * 440 * t)
            + 0.1 * np.sin(2 * np.pi * 3150.7 * t + 1.0)
            + 0.01 * rng.standard_normal(n)
        ),
        "white": int16_like(0.25 * rng.standard_normal(n)),
        "chirp": int16_like(0.8 * scipy.signal.chirp(t, f0=30, t1=t[-1], f1=0.45 * fs)),
        "silence": np.zeros(n, np.float32),
        # A DC offset stresses the per-segment mean removal in float32.
        "dc+quiet": int16_like(0.5 + 0.001 * rng.standard_normal(n)),
        "one lsb": int16_like(rng.integers(-1, 2, n) / 32768),
    }


def test_window_is_scipys_periodic_tukey():
    ref = scipy.signal.get_window(("tukey", 0.25), 512)
    np.testing.assert_allclose(audio.tukey_periodic(512), ref, rtol=0, atol=1e-15)


@pytest.mark.parametrize("fs", [22050, 16000, 44100])
def test_matches_scipy_on_several_signals(fs):
    n = 3 * fs
    for name, x in signals(fs, n).items():
        ref = scipy_log_spec(x, fs)
        out = np.asarray(audio.log_spectrogram(x, fs))
        assert out.dtype == np.float32
        assert out.shape == ref.shape == (257, (n - 274) // 238), name
        np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL, err_msg=name)


def test_paper_shape_three_seconds_at_22050():
    x = np.zeros(66150, np.float32)
    assert audio.log_spectrogram(x, 22050).shape == (257, 276)
    assert audio.num_frames(66150) == 276


def test_silence_is_the_floor():
    out = np.asarray(audio.log_spectrogram(np.zeros(4000, np.float32), 22050))
    np.testing.assert_allclose(out, np.log(1e-7), rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", [512, 513, 749, 750, 12345])
def test_lengths_not_a_multiple_of_the_hop(n):
    rng = np.random.default_rng(n)
    x = int16_like(0.2 * rng.standard_normal(n))
    ref = scipy_log_spec(x, 16000)
    out = np.asarray(audio.log_spectrogram(x, 16000))
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL)


def test_too_short_raises():
    with pytest.raises(ValueError, match="511 samples"):
        audio.log_spectrogram(np.zeros(511, np.float32), 22050)


def test_batched_and_jitted():
    fs, n = 22050, 22050 + 101
    sigs = signals(fs, n, seed=3)
    batch = np.stack(list(sigs.values()))  # [6, N]
    f = jax.jit(audio.log_spectrogram, static_argnums=1)
    out = np.asarray(f(batch, fs))
    assert out.shape == (6, 257, (n - 274) // 238)
    for k, x in enumerate(batch):
        np.testing.assert_allclose(out[k], scipy_log_spec(x, fs), rtol=0, atol=ATOL)
    # A traced sample rate gives the same numbers.
    traced = np.asarray(jax.jit(audio.log_spectrogram)(batch, np.float32(fs)))
    np.testing.assert_allclose(traced, out, rtol=0, atol=1e-5)


def test_spectrogram_input_from_int16_pcm():
    fs = 22050
    rng = np.random.default_rng(7)
    t = np.arange(3 * fs) / fs
    clean = 9000 * np.sin(2 * np.pi * 220 * t) + 1500 * rng.standard_normal(t.size)
    pcm = np.stack(
        [
            np.clip(np.round(clean), -32768, 32767).astype(np.int16),
            rng.integers(-32768, 32768, t.size).astype(np.int16),
            np.zeros(t.size, np.int16),
        ]
    )
    out = np.asarray(jax.jit(audio.spectrogram_input, static_argnums=1)(pcm, fs))
    assert out.shape == (3, 257, 276, 1) and out.dtype == np.float32
    for k in range(3):
        ref = scipy_log_spec(pcm[k] / 32768.0, fs) / 12
        np.testing.assert_allclose(out[k, ..., 0], ref, rtol=0, atol=ATOL / 12)
