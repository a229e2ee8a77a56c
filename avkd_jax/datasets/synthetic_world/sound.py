"""The sounds of a scene: each class's recipe, per-instance jitter and background noise."""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.fft

from avkd_jax.datasets.synthetic_world.classes import check_class

__all__ = ["SAMPLE_RATE", "add_background_noise", "synthesize_sound", "to_int16"]

SAMPLE_RATE = 22050
SNR_DB_RANGE = (5.0, 20.0)
PITCH_JITTER = 0.06
RATE_JITTER = 0.15


def _strike_times(rng, rate: float, duration: float) -> np.ndarray:
    """Onset times (s) of a roughly periodic rhythm with random phase and timing jitter."""
    period = 1.0 / rate
    n = int(np.ceil(duration * rate)) + 2
    times = -rng.uniform(0, period) + period * np.arange(n)
    times = times + rng.uniform(-0.1, 0.1, size=n) * period
    return np.sort(times)


def _since_last(t: np.ndarray, onsets: np.ndarray) -> np.ndarray:
    """Seconds since the latest onset at or before each t (inf before the first onset)."""
    idx = np.searchsorted(onsets, t, side="right") - 1
    out = np.full(t.shape, np.inf)
    ok = idx >= 0
    out[ok] = t[ok] - onsets[idx[ok]]
    return out


def _fast_len(n: int) -> int:
    # Scene lengths are arbitrary (often with large prime factors, where an FFT is
    # slow); filtering is done on a 5-smooth length and cut back.
    return scipy.fft.next_fast_len(int(n), real=True)


def _bandpass(x: np.ndarray, sr: int, lo: float, hi: float) -> np.ndarray:
    """Ideal (FFT-mask) band-pass of x [N] to [lo, hi] Hz (zero-padded to a fast length)."""
    n = x.shape[0]
    m = _fast_len(n)
    spec = scipy.fft.rfft(x, m)
    f = scipy.fft.rfftfreq(m, 1.0 / sr)
    spec[(f < lo) | (f > hi)] = 0
    return scipy.fft.irfft(spec, m)[:n]


def _band_noise(rng, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    m = _fast_len(n)
    spec = scipy.fft.rfft(rng.standard_normal(m))
    f = scipy.fft.rfftfreq(m, 1.0 / sr)
    spec[(f < lo) | (f > hi)] = 0
    return scipy.fft.irfft(spec, m)[:n]


def _sound_bell(rng, t, sr, f0, rate):
    since = _since_last(t, _strike_times(rng, rate, t[-1] + 1 / sr))
    out = np.zeros_like(t)
    for ratio, amp, tau in (
        (1.0, 1.0, 0.6),
        (2.76, 0.6, 0.35),
        (5.40, 0.35, 0.2),
        (8.93, 0.2, 0.12),
    ):
        if ratio * f0 < 0.45 * sr:
            env = np.exp(-since / tau)
            out += amp * env * np.sin(2 * np.pi * ratio * f0 * t + rng.uniform(0, 2 * np.pi))
    return out


def _harmonic_wave(rng, phase, f0, sr, harmonics, amps) -> np.ndarray:
    """sum_k amps[k] sin(k * phase + random phase_k), harmonics >= 0.45 sr left out.

    Evaluated through a one-period wavetable (4096 points, linear interpolation): the
    same waveform as summing the sines, an order of magnitude faster for many partials.
    """
    grid = np.linspace(0.0, 2 * np.pi, 4097)
    table = np.zeros_like(grid)
    for k, a in zip(harmonics, amps):
        offset = rng.uniform(0, 2 * np.pi)  # drawn even when unused: stable streams
        if k * f0 < 0.45 * sr:
            table += a * np.sin(k * grid + offset)
    return np.interp(np.mod(phase, 2 * np.pi), grid, table)


def _sound_engine(rng, t, sr, f0, rate):
    # Slow pitch wobble, like an engine under varying load.
    wobble = 1 + 0.02 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * f0 * np.cumsum(wobble) / sr
    # A bright buzz (partials fall as k^-1/2), so its energy reaches kHz where the drum
    # and the horn have little.
    ks = np.arange(1, 61)
    out = _harmonic_wave(rng, phase, f0, sr, ks, ks**-0.5)
    out *= 1 + 0.6 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    rumble = _band_noise(rng, t.size, sr, 20.0, 300.0)
    return out / np.abs(out).max() + 0.3 * rumble / (np.abs(rumble).max() + 1e-12)


def _sound_whistle(rng, t, sr, f0, rate):
    depth = 0.02  # vibrato: +-2 % of the pitch
    phase = 2 * np.pi * f0 * t + depth * f0 / rate * np.sin(
        2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)
    )
    return np.sin(phase) + 0.15 * np.sin(2 * phase)


def _sound_drum(rng, t, sr, f0, rate):
    out = np.zeros_like(t)
    hit_len = int(0.35 * sr)
    th = np.arange(hit_len) / sr
    for onset in _strike_times(rng, rate, t[-1] + 1 / sr):
        start = int(round(onset * sr))
        # A thump whose pitch falls, and a lowpassed noise slap.
        pitch = f0 * (1 + 1.5 * np.exp(-th / 0.03))
        thump = np.sin(2 * np.pi * np.cumsum(pitch) / sr) * np.exp(-th / 0.12)
        slap = _band_noise(rng, hit_len, sr, 40.0, 900.0)
        slap = 0.5 * slap / (np.abs(slap).max() + 1e-12) * np.exp(-th / 0.04)
        hit = thump + slap
        lo, hi = max(start, 0), min(start + hit_len, t.size)
        if lo < hi:
            out[lo:hi] += hit[lo - start : hi - start]
    return out


def _sound_siren(rng, t, sr, f0, rate):
    freq = f0 * (1 + 0.3 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return np.sin(phase) + 0.3 * np.sin(2 * phase)


def _sound_rain(rng, t, sr, f0, rate):
    hi = min(1.8 * f0, 0.95 * sr / 2)
    lo = min(0.6 * f0, hi / 3)
    hiss = _band_noise(rng, t.size, sr, lo, hi)
    # Sparse droplets (band-limited clicks) on top of the hiss.
    drops = (rng.random(t.size) < 200.0 / sr) * rng.uniform(-1, 1, size=t.size)
    drops = _bandpass(drops, sr, lo, hi)
    out = hiss / (np.abs(hiss).max() + 1e-12) + 0.5 * drops / (np.abs(drops).max() + 1e-12)
    return out * (1 + 0.3 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))


def _sound_bird(rng, t, sr, f0, rate):
    out = np.zeros_like(t)
    for onset in _strike_times(rng, rate, t[-1] + 1 / sr):
        dur = rng.uniform(0.06, 0.1)
        n = int(dur * sr)
        tc = np.arange(n) / sr
        top = min(1.6 * f0, 0.45 * sr)
        freq = f0 + (top - f0) * tc / dur
        chirp = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.hanning(n)
        start = int(round(onset * sr))
        lo, hi = max(start, 0), min(start + n, t.size)
        if lo < hi:
            out[lo:hi] += chirp[lo - start : hi - start]
    return out


def _sound_horn(rng, t, sr, f0, rate):
    ks = np.array([1, 3, 5, 7, 9])
    out = _harmonic_wave(rng, 2 * np.pi * f0 * t, f0, sr, ks, 1.0 / ks)
    return out * (1 + 0.35 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))


_SOUND_RECIPES: dict[str, Callable[..., np.ndarray]] = {
    "bell": _sound_bell,
    "engine": _sound_engine,
    "whistle": _sound_whistle,
    "drum": _sound_drum,
    "siren": _sound_siren,
    "rain": _sound_rain,
    "bird": _sound_bird,
    "horn": _sound_horn,
}


def synthesize_sound(
    rng: np.random.Generator, cls: int, num_samples: int, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """The sound of one instance of class `cls`, without background noise.

    Per instance: pitch jittered by up to +-6 %, rhythm/modulation rate by up to +-15 %,
    random phases and rhythm offsets. Peak-normalised to 0.9.

    Args:
      rng: numpy Generator (consumed).
      cls: class index in [0, NUM_CLASSES).
      num_samples: output length (>= 1).
      sample_rate: Hz; partials above 0.45 * sample_rate are left out.

    Returns:
      float32 [num_samples] in [-1, 1].
    """
    spec = check_class(cls)
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    f0 = spec.f0 * rng.uniform(1 - PITCH_JITTER, 1 + PITCH_JITTER)
    rate = spec.rate * rng.uniform(1 - RATE_JITTER, 1 + RATE_JITTER)
    t = np.arange(num_samples, dtype=np.float64) / sample_rate
    x = _SOUND_RECIPES[spec.sound](rng, t, sample_rate, f0, rate)
    peak = np.abs(x).max()
    if peak > 0:
        x = x * (0.9 / peak)
    return x.astype(np.float32)


def add_background_noise(
    rng: np.random.Generator, sound: np.ndarray, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Mixes coloured noise into `sound` at a random SNR and sets a random peak level.

    Noise power spectrum ~ f^-beta, beta uniform in [0, 1.5] (white to between pink and
    brown); SNR uniform in [5, 20] dB relative to the sound's RMS; the mix is scaled to
    a peak uniform in [0.3, 0.9] so loudness varies.

    Args:
      sound: float [N].

    Returns:
      float32 [N] in [-1, 1].
    """
    n = sound.shape[0]
    beta = rng.uniform(0.0, 1.5)
    snr_db = rng.uniform(*SNR_DB_RANGE)
    m = _fast_len(n)
    spec = scipy.fft.rfft(rng.standard_normal(m))
    f = scipy.fft.rfftfreq(m, 1.0 / sample_rate)
    spec *= np.maximum(f, 20.0) ** (-beta / 2)
    noise = scipy.fft.irfft(spec, m)[:n]
    sig_rms = np.sqrt(np.mean(np.square(sound, dtype=np.float64)))
    noise_rms = np.sqrt(np.mean(noise**2)) + 1e-12
    mix = sound + noise * (sig_rms / noise_rms) * 10 ** (-snr_db / 20)
    mix *= rng.uniform(0.3, 0.9) / (np.abs(mix).max() + 1e-12)
    return mix.astype(np.float32)


def to_int16(x: np.ndarray) -> np.ndarray:
    """float [N] in [-1, 1] -> int16 [N], round(clip(x, -1, 1) * 32767)."""
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
