"""Audio front end in jax.numpy: the log-spectrogram the student's audio network sees.

The authors compute the spectrogram on the CPU with
`scipy.signal.spectrogram(x, fs, nperseg=512, noverlap=274)` and `np.log(S + 1e-7)`.
We compute the same numbers inside the jitted train step, from int16 PCM, so that the
input pipeline ships 2 bytes a sample instead of a float32 spectrogram (about 1.1x the
samples, 4x the bytes) and the FFT runs on the accelerator.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

NPERSEG = 512
NOVERLAP = 274
HOP = NPERSEG - NOVERLAP  # 238
N_FREQS = NPERSEG // 2 + 1  # 257
TUKEY_ALPHA = 0.25
LOG_EPS = 1e-7
# The reference normalises the log-spectrogram with Normalize(mean=0, std=12).
LOG_SPEC_STD = 12.0
PCM_SCALE = 32768.0  # soundfile's int16 -> float convention


def tukey_periodic(length: int, alpha: float = TUKEY_ALPHA) -> np.ndarray:
    """Periodic Tukey window, as `scipy.signal.get_window(('tukey', alpha), length)`.

    "Periodic" (scipy's default for spectral analysis, fftbins=True) means the symmetric
    window of length + 1 with its last sample dropped.

    Returns:
      [length] float64.
    """
    m = length + 1
    n = np.arange(m, dtype=np.float64)
    width = int(np.floor(alpha * (m - 1) / 2.0))
    w = np.ones(m, dtype=np.float64)
    head = n[: width + 1]
    tail = n[m - width - 1 :]
    w[: width + 1] = 0.5 * (1 + np.cos(np.pi * (-1 + 2.0 * head / alpha / (m - 1))))
    w[m - width - 1 :] = 0.5 * (
        1 + np.cos(np.pi * (-2.0 / alpha + 1 + 2.0 * tail / alpha / (m - 1)))
    )
    return w[:length]


def num_frames(num_samples: int) -> int:
    """Number of spectrogram columns for `num_samples` samples (scipy, padded=False)."""
    return (num_samples - NOVERLAP) // HOP


def _frames(x: jnp.ndarray, frame_length: int, hop: int) -> jnp.ndarray:
    """Overlapping frames by slicing, no gather.

    A frame of length L = k*hop + r starts on a hop boundary, so it is the concatenation
    of k whole hop-sized chunks and the first r samples of the next one. Reshaping the
    signal into chunks and concatenating shifted slices of them gives all frames with
    contiguous copies only, which XLA on CPU handles far better than a [T, L] gather.

    Args:
      x: [..., N].
    Returns:
      [..., T, frame_length] with T = (N - (frame_length - hop)) // hop.
    """
    n = x.shape[-1]
    t = (n - (frame_length - hop)) // hop
    n_chunks = math.ceil(frame_length / hop)
    total = (t + n_chunks - 1) * hop
    # Only the tail of the last chunk can run past N, and those samples are never used.
    if total > n:
        pad = [(0, 0)] * (x.ndim - 1) + [(0, total - n)]
        x = jnp.pad(x, pad)
    else:
        x = x[..., :total]
    chunks = x.reshape(x.shape[:-1] + (t + n_chunks - 1, hop))
    parts = []
    remaining = frame_length
    for k in range(n_chunks):
        take = min(hop, remaining)
        parts.append(chunks[..., k : k + t, :take])
        remaining -= take
    return jnp.concatenate(parts, axis=-1)


def log_spectrogram(waveform, sample_rate) -> jnp.ndarray:
    """log(PSD spectrogram + 1e-7) with scipy.signal.spectrogram's defaults.

    Matches `np.log(scipy.signal.spectrogram(x, fs=sample_rate, nperseg=512,
    noverlap=274)[2] + 1e-7)`: periodic Tukey(0.25) window, per-segment mean removed
    before windowing, one-sided, density scaling 1/(fs * sum(w^2)) with every bin but DC
    and Nyquist doubled. Computed in float32; the 1e-7 floor keeps the float32 error of
    near-silent bins small on the log scale.

    Args:
      waveform: [..., N] float samples (in [-1, 1] for audio read as float).
      sample_rate: Hz; a Python number or a traced scalar.
    Returns:
      [..., 257, T] float32 with T = (N - 274) // 238; 257 x 276 for 3 s at 22,050 Hz.
    """
    x = jnp.asarray(waveform).astype(jnp.float32)
    n = x.shape[-1]
    if num_frames(n) < 1:
        raise ValueError(f"waveform has {n} samples; at least {NPERSEG} are needed for one frame")
    window = tukey_periodic(NPERSEG)
    frames = _frames(x, NPERSEG, HOP)  # [..., T, 512]
    frames = frames - jnp.mean(frames, axis=-1, keepdims=True)
    spec = jnp.fft.rfft(frames * window.astype(np.float32), n=NPERSEG, axis=-1)
    power = jnp.real(spec) ** 2 + jnp.imag(spec) ** 2  # [..., T, 257]
    # One-sided spectrum: the negative frequencies' power folds onto bins 1..N/2-1.
    fold = np.full(N_FREQS, 2.0, dtype=np.float64)
    fold[0] = fold[-1] = 1.0
    bin_scale = (fold / np.sum(window * window)).astype(np.float32)
    power = power * bin_scale / jnp.asarray(sample_rate, dtype=jnp.float32)
    return jnp.log(jnp.swapaxes(power, -1, -2) + jnp.float32(LOG_EPS))


def spectrogram_input(pcm, sample_rate) -> jnp.ndarray:
    """The audio network's input: normalised log-spectrogram of int16 PCM.

    Args:
      pcm: [B, N] int16 (any integer or float array of int16-scaled samples).
      sample_rate: Hz.
    Returns:
      [B, 257, T, 1] float32 = log_spectrogram(pcm / 32768) / 12.
    """
    x = jnp.asarray(pcm).astype(jnp.float32) / PCM_SCALE
    return (log_spectrogram(x, sample_rate) / LOG_SPEC_STD)[..., None]
