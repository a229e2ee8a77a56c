"""The procedural audio-visual world (docs/design.md, The synthetic world).

K object classes, each a visual SHAPE (colour and size random per instance, so neither
gives the class away) and a SOUND (class-specific pitch / timbre / rhythm with
per-instance jitter). A scene is a textured 256x256 background, one sounding object and
0-2 silent distractors of other classes; its audio is the sounding object's sound plus
coloured noise; its annotation is the sounding object's tight box.

Everything is a pure function of (seed, split, index): any scene can be generated alone,
in any process, and the same seed gives bit-identical files. `write_world` writes scenes
in the Flickr-SoundNet raw layout so the real TFDS builder and evaluation read them.

Box convention everywhere: [xmin, ymin, xmax, ymax] int pixels with exclusive max, i.e.
the object covers image[ymin:ymax, xmin:xmax] -- the way the Flickr evaluation paints
its ground-truth map. The shape touches all four sides of its box, so the box is tight.

    python -m avkd_jax.datasets.synthetic_world --root=DIR --num_train=N --num_test=M --seed=S
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import sys
from typing import Any, Callable, Sequence

import numpy as np
import scipy.fft
from PIL import Image, ImageDraw

from avkd_jax import files
from avkd_jax.datasets import flickr_layout, media

__all__ = [
    "ObjectClass",
    "CLASSES",
    "CLASS_NAMES",
    "NUM_CLASSES",
    "IMAGE_SIZE",
    "SAMPLE_RATE",
    "SPLIT_CODES",
    "render_object",
    "synthesize_sound",
    "add_background_noise",
    "render_background",
    "scene_layout",
    "make_scene",
    "scene_id",
    "write_world",
    "box_iou",
]

IMAGE_SIZE = 256
SAMPLE_RATE = 22050
# Bump when the generator's output changes, so an old world on disk is never mixed with
# new scenes (WORLD.json records it).
WORLD_VERSION = 1

# Scene statistics (docs/design.md, The synthetic world). Sounding objects and distractors share them, so
# neither size nor aspect tells which object sounds.
AREA_FRACTION_RANGE = (0.2, 0.45)
ASPECT_RANGE = (0.75, 4.0 / 3.0)  # width / height, sampled log-uniformly
MAX_PAIR_IOU = 0.1
# Joint placement: up to ROUNDS x BATCH candidate layouts (vectorised), then a distractor
# is dropped. 2 objects almost always fit; 3 of these sizes fit in roughly 40 % of draws.
PLACEMENT_BATCH = 2048
PLACEMENT_ROUNDS = 16
NUM_ANNOTATORS = 3
ANNOTATOR_JITTER_PX = 4
SNR_DB_RANGE = (5.0, 20.0)
DURATION_S_RANGE = (3.0, 5.0)
PITCH_JITTER = 0.06
RATE_JITTER = 0.15

SPLIT_CODES = {"train": 0, "test": 1, "validation": 2}
TEST_ID_OFFSET = 9_000_000
ID_DIGITS = 7


@dataclasses.dataclass(frozen=True)
class ObjectClass:
    """One class of the world: what it looks like and how it sounds.

    Attributes:
      name: class name.
      shape: key into the shape table (drawn by `render_object`).
      sound: key into the sound-recipe table (used by `synthesize_sound`).
      f0: the recipe's characteristic frequency in Hz (pitch, partial base or band centre).
      rate: the recipe's rhythm / modulation rate in Hz.
    """

    name: str
    shape: str
    sound: str
    f0: float
    rate: float


# The class table: the one place that defines the world's classes. Pitches are spread
# over octaves and recipes differ in kind (harmonic / inharmonic / noise, steady /
# pulsed / swept) so the classes stay apart even with +-6 % pitch jitter and noise.
CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("bell", "disc", "bell", 520.0, 1.6),
    ObjectClass("engine", "square", "engine", 95.0, 11.0),
    ObjectClass("whistle", "triangle", "whistle", 1500.0, 5.5),
    ObjectClass("drum", "cross", "drum", 70.0, 2.4),
    ObjectClass("siren", "ring", "siren", 900.0, 0.6),
    ObjectClass("rain", "star", "rain", 4000.0, 0.3),
    ObjectClass("bird", "diamond", "bird", 2600.0, 5.0),
    ObjectClass("horn", "hexagon", "horn", 230.0, 4.0),
)
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
NUM_CLASSES = len(CLASSES)


def _check_cls(cls: int) -> ObjectClass:
    if not 0 <= int(cls) < NUM_CLASSES:
        raise ValueError(f"class index {cls} out of range [0, {NUM_CLASSES})")
    return CLASSES[int(cls)]


# ---------------------------------------------------------------------------- geometry


def box_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """IoU of two [xmin, ymin, xmax, ymax] boxes (exclusive max, pixel areas)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _regular_star(points: int, inner: float) -> list[tuple[float, float]]:
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return list(zip(radii * np.cos(angles), radii * np.sin(angles)))


def _cross(arm: float) -> list[tuple[float, float]]:
    a = arm
    return [
        (-a, -1),
        (a, -1),
        (a, -a),
        (1, -a),
        (1, a),
        (a, a),
        (a, 1),
        (-a, 1),
        (-a, a),
        (-1, a),
        (-1, -a),
        (-a, -a),
    ]


# Polygons in any coordinates; they are stretched so their bounding box is the object box.
_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "square": [(0, 0), (1, 0), (1, 1), (0, 1)],
    "triangle": [(0.5, 0), (1, 1), (0, 1)],
    "cross": _cross(0.3),
    "star": _regular_star(5, 0.45),
    "diamond": [(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)],
    "hexagon": [(0.25, 0), (0.75, 0), (1, 0.5), (0.75, 1), (0.25, 1), (0, 0.5)],
}
RING_INNER = 0.55  # inner radius / outer radius


def shape_mask(shape: str, width: int, height: int) -> np.ndarray:
    """Boolean mask [height, width] of a shape that touches all four sides of its box."""
    if width < 2 or height < 2:
        raise ValueError(f"box too small for a shape: {width}x{height}")
    img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(img)
    w1, h1 = width - 1, height - 1
    if shape in ("disc", "ring"):
        draw.ellipse([0, 0, w1, h1], fill=255)
        if shape == "ring":
            mx, my = (1 - RING_INNER) / 2 * w1, (1 - RING_INNER) / 2 * h1
            draw.ellipse([mx, my, w1 - mx, h1 - my], fill=0)
    elif shape in _POLYGONS:
        pts = np.asarray(_POLYGONS[shape], dtype=np.float64)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        pts = (pts - lo) / (hi - lo) * np.array([w1, h1])
        draw.polygon([tuple(p) for p in pts], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.asarray(img) > 0


# ------------------------------------------------------------------------------ images


def _pick_colour(rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
    """A random RGB colour far from `avoid` (the mean colour under the object)."""
    best, best_d = None, -1.0
    for _ in range(16):
        c = rng.integers(0, 256, size=3).astype(np.float64)
        d = float(np.linalg.norm(c - avoid))
        if d > best_d:
            best, best_d = c, d
        # Far enough to be visible; stop early so colours stay close to uniform.
        if d >= 110.0:
            break
    return best


def render_object(
    rng: np.random.Generator, cls: int, canvas_rgb: np.ndarray, box: Sequence[int]
) -> np.ndarray:
    """Draws an object of class `cls` filling `box` on `canvas_rgb`, in place.

    The shape is the class's; the colour is random (chosen to contrast with what is
    under the box) with a gentle random brightness gradient, so colour says nothing
    about the class. Only pixels inside image[ymin:ymax, xmin:xmax] can change, and the
    shape touches all four sides of the box.

    Args:
      rng: numpy Generator (consumed).
      cls: class index in [0, NUM_CLASSES).
      canvas_rgb: uint8 [H, W, 3], modified in place.
      box: [xmin, ymin, xmax, ymax] ints, exclusive max, inside the canvas.

    Returns:
      bool [ymax - ymin, xmax - xmin]: the pixels of the box the shape covers.
    """
    spec = _check_cls(cls)
    if canvas_rgb.dtype != np.uint8 or canvas_rgb.ndim != 3 or canvas_rgb.shape[2] != 3:
        raise ValueError(
            f"canvas must be uint8 [H, W, 3], got {canvas_rgb.dtype} {canvas_rgb.shape}"
        )
    x0, y0, x1, y1 = (int(v) for v in box)
    h_img, w_img = canvas_rgb.shape[:2]
    if not (0 <= x0 < x1 <= w_img and 0 <= y0 < y1 <= h_img):
        raise ValueError(f"box {list(box)} not inside a {w_img}x{h_img} canvas")
    mask = shape_mask(spec.shape, x1 - x0, y1 - y0)
    region = canvas_rgb[y0:y1, x0:x1]
    colour = _pick_colour(rng, region.reshape(-1, 3).mean(axis=0))
    # A brightness ramp in a random direction, so an object is not one flat colour that
    # a single colour threshold would segment.
    theta = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0.05, 0.25)
    v = (np.arange(y1 - y0) + 0.5) / (y1 - y0) - 0.5
    u = (np.arange(x1 - x0) + 0.5) / (x1 - x0) - 0.5
    ramp = 1.0 + strength * (np.cos(theta) * u[None, :] + np.sin(theta) * v[:, None])
    shaded = np.clip(np.rint(colour[None, None, :] * ramp[..., None]), 0, 255)
    region[mask] = shaded[mask].astype(np.uint8)
    return mask


def render_background(rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """A random textured background: smooth colour blobs, stripes or a gradient, plus grain.

    Returns:
      uint8 [size, size, 3].
    """

    def blobs(cells: int) -> np.ndarray:
        small = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
        big = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(big, dtype=np.float32)

    coord = (np.arange(size, dtype=np.float32) + 0.5) / size
    kind = rng.integers(0, 3)
    if kind == 0:
        img = blobs(int(rng.integers(3, 9)))
    else:
        c1 = rng.integers(0, 256, size=3).astype(np.float32)
        c2 = rng.integers(0, 256, size=3).astype(np.float32)
        theta = rng.uniform(0, 2 * np.pi)
        # float() keeps the maths in float32 (numpy scalars would promote to float64).
        proj = float(np.cos(theta)) * coord[None, :] + float(np.sin(theta)) * coord[:, None]
        if kind == 1:
            period = rng.uniform(12, 64) / size
            t = 0.5 + 0.5 * np.sin(
                proj * float(2 * np.pi / period) + float(rng.uniform(0, 2 * np.pi))
            )
        else:
            t = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
        img = c1 + (c2 - c1) * t[..., None]
        # Low-contrast blobs on top so stripes and gradients are not perfectly regular.
        img = 0.75 * img + 0.25 * blobs(int(rng.integers(3, 9)))
    # Luminance grain (one channel: a third of the cost of colour grain).
    img += 6.0 * rng.standard_normal(size=(size, size, 1), dtype=np.float32)
    np.rint(img, out=img)
    return np.clip(img, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ sounds


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
    # Scene lengths are arbitrary (often with large prime factors, where an FFT is ~10x
    # slower); filtering is done on a 5-smooth length and cut back.
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
    spec = _check_cls(cls)
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


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


# ------------------------------------------------------------------------------ scenes


def _split_code(split) -> int:
    if isinstance(split, (int, np.integer)):
        return int(split)
    if split not in SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_CODES)}")
    return SPLIT_CODES[split]


def _streams(seed: int, split, index: int) -> dict[str, np.random.Generator]:
    """Independent generators per concern, so e.g. skipping object drawing leaves the
    background, the layout and the audio unchanged."""
    root = np.random.default_rng([int(seed), _split_code(split), int(index)])
    names = ("layout", "background", "objects", "audio", "swap")
    return dict(zip(names, root.spawn(len(names))))


def _pairwise_ok(boxes: list[np.ndarray]) -> np.ndarray:
    """boxes: per object int [M, 4] candidates -> bool [M], all pairwise IoU <= 0.1."""
    ok = np.ones(boxes[0].shape[0], dtype=bool)
    for i in range(len(boxes)):
        for j in range(i):
            a, b = boxes[i], boxes[j]
            iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
            ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
            inter = iw * ih
            union = (
                (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
                + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
                - inter
            )
            ok &= inter <= MAX_PAIR_IOU * union
    return ok


def _place(rng: np.random.Generator, sizes: list[tuple[int, int]], size: int):
    """Rejection-samples positions for all objects jointly, uniformly over the layouts
    with pairwise IoU <= 0.1. Returns a list of boxes, or None if none was found.

    Jointly, not one object after another: a first object dropped in the middle would
    block the others, and greedy placement then rarely fits more than one.
    """
    if len(sizes) == 1:
        ((w, h),) = sizes
        x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        return [[x0, y0, x0 + w, y0 + h]]
    for _ in range(PLACEMENT_ROUNDS):
        cands = []
        for w, h in sizes:
            x0 = rng.integers(0, size - w + 1, size=PLACEMENT_BATCH)
            y0 = rng.integers(0, size - h + 1, size=PLACEMENT_BATCH)
            cands.append(np.stack([x0, y0, x0 + w, y0 + h], axis=1))
        hits = np.flatnonzero(_pairwise_ok(cands))
        if hits.size:
            return [[int(v) for v in c[hits[0]]] for c in cands]
    return None


def _layout_from_rng(rng: np.random.Generator, size: int = IMAGE_SIZE):
    n_wanted = 1 + int(rng.integers(0, 3))
    classes = [int(c) for c in rng.choice(NUM_CLASSES, size=n_wanted, replace=False)]
    sizes = []
    for _ in classes:
        # Sizes are drawn once and never redrawn on rejection: redrawing would make the
        # objects that survive crowded scenes smaller than the others, a size cue.
        area = rng.uniform(*AREA_FRACTION_RANGE) * size * size
        aspect = np.exp(rng.uniform(np.log(ASPECT_RANGE[0]), np.log(ASPECT_RANGE[1])))
        sizes.append(
            (
                int(min(size, max(2, round(np.sqrt(area * aspect))))),
                int(min(size, max(2, round(np.sqrt(area / aspect))))),
            )
        )
    boxes = _place(rng, sizes, size)
    while boxes is None:
        # Drop the last object (classes and sizes are i.i.d., so it is a random one).
        classes, sizes = classes[:-1], sizes[:-1]
        boxes = _place(rng, sizes, size)
    # Which placed object sounds is drawn only now, uniformly, so within a scene the
    # sounding object is exchangeable with its distractors (same size/place statistics).
    n = len(boxes)
    sounding = int(rng.integers(0, n))
    order = rng.permutation(n)  # drawing order = list order
    objects = [{"cls": classes[i], "box": boxes[i], "sounding": bool(i == sounding)} for i in order]
    s_box = np.array(boxes[sounding])
    annotators = []
    for _ in range(NUM_ANNOTATORS):
        jitter = rng.integers(-ANNOTATOR_JITTER_PX, ANNOTATOR_JITTER_PX + 1, size=4)
        annotators.append([int(v) for v in np.clip(s_box + jitter, 0, size)])
    swap_index = next((i for i, o in enumerate(objects) if not o["sounding"]), None)
    return objects, annotators, swap_index


def scene_layout(seed: int, split, index: int) -> dict[str, Any]:
    """The layout of scene (seed, split, index) without rendering pixels or sound.

    Returns:
      dict with `objects` (list of {cls: int, box: [xmin, ymin, xmax, ymax] int,
      sounding: bool} in drawing order), `annotator_boxes` (3 boxes) and `swap_index`
      (index in objects of the first distractor, or None) -- identical to make_scene's.
    """
    objects, annotators, swap_index = _layout_from_rng(_streams(seed, split, index)["layout"])
    return {"objects": objects, "annotator_boxes": annotators, "swap_index": swap_index}


def make_scene(
    seed: int,
    split,
    index: int,
    sample_rate: int = SAMPLE_RATE,
    draw_objects: bool = True,
    include_swap: bool = True,
) -> dict[str, Any]:
    """Generates one scene, a pure function of (seed, split, index).

    Args:
      seed: world seed.
      split: "train", "test", "validation" or an int split code.
      index: scene index within the split.
      sample_rate: audio rate in Hz.
      draw_objects: False renders the background only (everything else unchanged), so
        tests can see which pixels the objects changed.
      include_swap: False skips synthesizing `swap_audio` (None then).

    Returns:
      dict with
        image: uint8 [256, 256, 3].
        audio: int16 [N], N = round(U(3, 5) s * sample_rate): sounding object + noise.
        objects: list of {cls, box, sounding} in drawing order (see scene_layout).
        annotator_boxes: 3 x [xmin, ymin, xmax, ymax], the sounding box jittered
          independently by up to +-4 px per coordinate, clipped to [0, 256].
        swap_index: index in objects of the first distractor, None without distractors.
        swap_audio: int16 [N], a sound of that distractor's class with the same
          length/noise recipe (fresh noise, SNR, level); None without distractors.
    """
    rng = _streams(seed, split, index)
    return _render_scene(
        rng, _layout_from_rng(rng["layout"]), sample_rate, draw_objects, include_swap
    )


def _render_scene(rng, layout, sample_rate, draw_objects, include_swap):
    objects, annotators, swap_index = layout
    image = render_background(rng["background"])
    if draw_objects:
        for obj in objects:
            render_object(rng["objects"], obj["cls"], image, obj["box"])
    a_rng = rng["audio"]
    n = int(round(a_rng.uniform(*DURATION_S_RANGE) * sample_rate))
    sounding_cls = next(o["cls"] for o in objects if o["sounding"])
    audio = _to_int16(
        add_background_noise(
            a_rng, synthesize_sound(a_rng, sounding_cls, n, sample_rate), sample_rate
        )
    )
    swap_audio = None
    if swap_index is not None and include_swap:
        s_rng = rng["swap"]
        swap_audio = _to_int16(
            add_background_noise(
                s_rng,
                synthesize_sound(s_rng, objects[swap_index]["cls"], n, sample_rate),
                sample_rate,
            )
        )
    return {
        "image": image,
        "audio": audio,
        "objects": objects,
        "annotator_boxes": annotators,
        "swap_index": swap_index,
        "swap_audio": swap_audio,
    }


# ----------------------------------------------------------------------- writing worlds


def scene_id(split: str, index: int) -> str:
    """Zero-padded numeric ids; train and test are disjoint ("0000123" / "9000123")."""
    base = {"train": 0, "test": TEST_ID_OFFSET}[split]
    return f"{base + int(index):0{ID_DIGITS}d}"


def _write_if_changed(path: str, data: bytes) -> bool:
    if os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    files.write_bytes(path, data)
    return True


def _wav_bytes(x: np.ndarray, sample_rate: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, x, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _scene_paths(root: str, split: str, id_: str, has_swap: bool) -> dict[str, str]:
    paths = {
        "image": os.path.join(root, "frames", f"{id_}.jpg"),
        "audio": os.path.join(root, "audio", f"{id_}.wav"),
    }
    if split == "test":
        paths["xml"] = os.path.join(root, "Annotations", f"{id_}.xml")
        if has_swap:
            paths["swap"] = os.path.join(root, "audio_swap", f"{id_}.wav")
    return paths


def _write_scene(task) -> tuple[str, str, dict | None, int]:
    """Worker: writes the missing files of one scene. Returns (split, id, meta, n_written)."""
    root, seed, split, index, sample_rate = task
    id_ = scene_id(split, index)
    rng = _streams(seed, split, index)
    layout = _layout_from_rng(rng["layout"])
    objects, _, swap_index = layout
    paths = _scene_paths(root, split, id_, swap_index is not None)
    missing = [k for k, p in paths.items() if not os.path.exists(p)]
    if missing:
        scene = _render_scene(
            rng, layout, sample_rate, draw_objects=True, include_swap="swap" in missing
        )
        for key in missing:
            if key == "image":
                data = media.encode_jpeg(scene["image"], quality=95)
            elif key == "audio":
                data = _wav_bytes(scene["audio"], sample_rate)
            elif key == "swap":
                data = _wav_bytes(scene["swap_audio"], sample_rate)
            else:
                data = flickr_layout.flickr_annotation_bytes(scene["annotator_boxes"], id_)
            files.write_bytes(paths[key], data)
    meta = None
    if split == "test":
        meta = {"objects": objects, "swap_index": swap_index}
    return split, id_, meta, len(missing)


def _world_params(num_train, num_test, seed, sample_rate) -> dict[str, Any]:
    return {
        "format": "avkd-synthetic-world",
        "version": WORLD_VERSION,
        "seed": int(seed),
        "num_train": int(num_train),
        "num_test": int(num_test),
        "num_classes": NUM_CLASSES,
        "class_names": list(CLASS_NAMES),
        "sample_rate": int(sample_rate),
        "image_size": IMAGE_SIZE,
    }


def _check_params_file(path: str, params: dict) -> None:
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            existing = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(
            f"{path}: unreadable world parameters ({e}); delete the world directory or this file"
        ) from None
    if existing != params:
        diff = {
            k: (existing.get(k), params.get(k))
            for k in sorted(set(existing) | set(params))
            if existing.get(k) != params.get(k)
        }
        raise ValueError(
            f"{path}: the directory holds a different synthetic world (differences, "
            f"on disk vs requested: {diff}). Refusing to mix worlds: use another --root "
            "or delete this one."
        )


def write_world(
    root,
    num_train: int = 10000,
    num_test: int = 500,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    sample_rate: int = SAMPLE_RATE,
) -> dict[str, int]:
    """Writes a synthetic world in the Flickr-SoundNet raw layout.

    Layout under `root`:
      frames/<id>.jpg           JPEG quality 95, 256x256
      audio/<id>.wav            int16 mono, 3-5 s at `sample_rate`
      Annotations/<id>.xml      test ids: the 3 annotator boxes (Flickr XML format)
      train.txt                 train ids, one per line
      test.csv                  "id,0" per test id, CRLF (like flickr_test.csv)
      audio_swap/<id>.wav       test ids with a distractor: a sound of the first
                                distractor's class (synthetic-only, for the swap test)
      scenes.json               test id -> {"objects": [...], "swap_index": int|null}
      WORLD.json                the parameters; written last, marks a complete world

    Restartable: every file is written to a temporary name and renamed, existing files are
    skipped, so re-running after an interruption completes the world with identical bytes.

    Args:
      root: output directory (created).
      num_train, num_test: scene counts; ids are "%07d" of index (train) and of
        9,000,000 + index (test).
      seed: world seed.
      workers: processes (default os.cpu_count()); 1 writes in this process.
      progress: show a tqdm bar.
      sample_rate: audio rate in Hz.

    Returns:
      {"scenes": total scenes, "files_written": files (re)written this call}.

    Raises:
      ValueError: `root` already holds (part of) a world with other parameters.
    """
    if not 0 <= num_train <= TEST_ID_OFFSET:
        raise ValueError(f"num_train must be in [0, {TEST_ID_OFFSET}], got {num_train}")
    if not 0 <= num_test < 10**ID_DIGITS - TEST_ID_OFFSET:
        raise ValueError(
            f"num_test must be in [0, {10**ID_DIGITS - TEST_ID_OFFSET}), got {num_test}"
        )
    root = os.path.abspath(os.fspath(root))
    params = _world_params(num_train, num_test, seed, sample_rate)
    done_path = os.path.join(root, "WORLD.json")
    pending_path = os.path.join(root, ".WORLD.pending.json")
    # An interrupted world has no WORLD.json yet; the pending file still pins its params.
    _check_params_file(done_path, params)
    _check_params_file(pending_path, params)
    params_bytes = (json.dumps(params, indent=2, sort_keys=True) + "\n").encode()

    for sub in ("frames", "audio", "Annotations", "audio_swap"):
        d = os.path.join(root, sub)
        os.makedirs(d, exist_ok=True)
        for name in os.listdir(d):  # leftovers of killed writers
            m = files.TMP_RE.search(name)
            if m and not files.pid_alive(int(m.group(1))):
                os.remove(os.path.join(d, name))
    if not os.path.exists(done_path):
        _write_if_changed(pending_path, params_bytes)

    tasks = [(root, int(seed), "train", i, int(sample_rate)) for i in range(num_train)]
    tasks += [(root, int(seed), "test", i, int(sample_rate)) for i in range(num_test)]
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    workers = max(1, min(workers, len(tasks)))

    from tqdm import tqdm

    test_meta: dict[str, dict] = {}
    written = 0
    with tqdm(total=len(tasks), disable=not progress, desc="synthetic world", unit="scene") as bar:

        def consume(results):
            nonlocal written
            for split, id_, meta, n in results:
                written += n
                if meta is not None:
                    test_meta[id_] = meta
                bar.update(1)

        if workers == 1:
            consume(map(_write_scene, tasks))
        else:
            import multiprocessing

            # spawn, not fork: callers (TFDS builders) may hold TF/JAX threads that a fork
            # would copy in a locked state.
            ctx = multiprocessing.get_context("spawn")
            chunk = max(1, min(32, len(tasks) // (workers * 8)))
            with ctx.Pool(workers) as pool:
                consume(pool.imap_unordered(_write_scene, tasks, chunksize=chunk))

    train_ids = [scene_id("train", i) for i in range(num_train)]
    test_ids = [scene_id("test", i) for i in range(num_test)]
    index_files = {
        "train.txt": "".join(f"{i}\n" for i in train_ids).encode(),
        "test.csv": "".join(f"{i},0\r\n" for i in test_ids).encode(),
        "scenes.json": (
            json.dumps({i: test_meta[i] for i in test_ids}, indent=1, sort_keys=True) + "\n"
        ).encode(),
    }
    for name, data in index_files.items():
        written += _write_if_changed(os.path.join(root, name), data)
    written += _write_if_changed(done_path, params_bytes)
    if os.path.exists(pending_path):
        os.remove(pending_path)
    return {"scenes": len(tasks), "files_written": written}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m avkd_jax.datasets.synthetic_world",
        description="Write the synthetic audio-visual world in the Flickr-SoundNet layout.",
    )
    parser.add_argument("--root", required=True, help="output directory")
    parser.add_argument("--num_train", type=int, default=10000)
    parser.add_argument("--num_test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--sample_rate", type=int, default=SAMPLE_RATE)
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    stats = write_world(
        args.root,
        num_train=args.num_train,
        num_test=args.num_test,
        seed=args.seed,
        workers=args.workers,
        progress=not args.no_progress,
        sample_rate=args.sample_rate,
    )
    print(f"{args.root}: {stats['scenes']} scenes, {stats['files_written']} files written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
