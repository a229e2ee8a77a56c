"""Maps upsampled to the protocols' 224² as each reference's code does: corner-aligned
bilinear (LVS / EZ-VSL, IS3: torch's `F.interpolate(..., 'bilinear', align_corners=True)`),
corner-aligned bicubic (SLAVC: `'bicubic'`) and half-pixel bilinear (negative audio's
negatives: `cv2.resize(..., INTER_LINEAR)`), in numpy."""

from __future__ import annotations

import functools

import numpy as np

GT_SIZE = 224
# Maps upsampled bicubically at a time: small blocks keep the temporaries in cache.
_CHUNK = 8


def _corner_aligned(in_size: int, out_size: int):
    """Torch's align_corners=True source coordinates along one axis: (i0, i1, frac) `[out]`
    with out[k] = (1 - frac[k]) * in[i0[k]] + frac[k] * in[i1[k]]."""
    scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    src = np.arange(out_size, dtype=np.float64) * scale
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, (src - i0).astype(np.float32)


def upsample_map(maps, size: int = GT_SIZE) -> np.ndarray:
    """Bilinear upsampling with corner alignment, as EZ-VSL's test code.

    Equal to F.interpolate(maps[:, None], size=(size, size), mode='bilinear',
    align_corners=True)[:, 0], and bit for bit to `losses.resize_bilinear` on the CPU.

    Args:
      maps: [B, h, w] (7 x 7 similarity or object maps).
    Returns:
      [B, size, size] numpy float32.
    """
    maps = np.asarray(maps, dtype=np.float32)
    y0, y1, fy = _corner_aligned(maps.shape[-2], size)
    x0, x1, fx = _corner_aligned(maps.shape[-1], size)
    fy = fy[:, None]
    rows = maps[..., y0, :] * (1 - fy) + maps[..., y1, :] * fy  # [B, size, w]
    return rows[..., x0] * (1 - fx) + rows[..., x1] * fx


_F32 = np.float32
_A = _F32(-0.75)  # torch's cubic convolution constant without antialiasing


# --- torch's bicubic upsampling (align_corners=True), in float32 -------------------------


def _fma(a, b, c):
    """a·b + c rounded once to float32, as the fused multiply-adds torch's CPU kernels are
    compiled with (the float32 product is exact in float64; the float64 sum's rounding
    before float32 differs from a true fused rounding only at exact float32 ties)."""
    return (np.asarray(a, np.float64) * b + c).astype(_F32)


def _cubic1(x):
    """|x| <= 1: ((A + 2)·x − (A + 3))·x·x + 1."""
    return _fma(_A + _F32(2), x, -(_A + _F32(3))) * x * x + _F32(1)


def _cubic2(x):
    """1 < |x| < 2: ((A·x − 5A)·x + 8A)·x − 4A."""
    return _fma(_fma(_A, x, _F32(-5) * _A), x, _F32(8) * _A) * x - _F32(4) * _A


@functools.lru_cache(maxsize=64)
def _cubic_taps(in_size: int, out_size: int):
    """One axis: the 4 source indices `[out]` (clamped to the border) and their float32
    weights `[out]`, as torch's `HelperInterpCubic::compute_indices_weights`."""
    scale = _F32(in_size - 1) / _F32(out_size - 1) if out_size > 1 else _F32(0)
    real = scale * np.arange(out_size, dtype=_F32)
    index = np.minimum(np.floor(real).astype(np.int64), in_size - 1)
    lam = np.minimum(np.maximum(real - index.astype(_F32), _F32(0)), _F32(1))
    weights = (
        _cubic2(lam + _F32(1)),
        _cubic1(lam),
        _cubic1(_F32(1) - lam),
        _cubic2((_F32(1) - lam) + _F32(1)),
    )
    taps = tuple(np.clip(index + j - 1, 0, in_size - 1) for j in range(4))
    weights = tuple(w.astype(np.float64) for w in weights)  # exact: products stay exact
    for a in taps + weights:
        a.flags.writeable = False  # cached
    return taps, weights


def _four_tap_sum(terms):
    """Σ value·weight over 4 taps in the order torch's loop compiles to:
    fma(v0, w0, v1·w1), then fma with taps 2 and 3. Values and weights are float32 numbers
    held in float64, so each product is exact and each sum rounds once (as `_fma`)."""
    (v0, w0), (v1, w1), (v2, w2), (v3, w3) = terms
    out = (v0 * w0 + (v1 * w1).astype(_F32)).astype(_F32)
    out = (v2 * w2 + out).astype(_F32)
    return (v3 * w3 + out).astype(_F32)


def upsample_bicubic(maps, size: int = GT_SIZE) -> np.ndarray:
    """Bicubic upsampling with corner alignment, as SLAVC's test code.

    Equal to F.interpolate(maps[:, None], size=(size, size), mode='bicubic',
    align_corners=True)[:, 0] on the CPU (cubic convolution a = −0.75, source indices
    clamped to the border; rows first, then columns, in float32 with torch's rounding):
    bit for bit with the CPU build the tests run against. The reference ran on a GPU,
    whose kernel may differ in the last bits.

    Args:
      maps: `[B, h, w]` or `[h, w]`.
    Returns:
      float32 of the same rank, `[..., size, size]`; a map already `size x size` comes
      back unchanged (as a float32 copy).
    """
    maps = np.asarray(maps, dtype=_F32)
    if maps.ndim not in (2, 3) or 0 in maps.shape:
        raise ValueError(f"maps must be [B, h, w] or [h, w], got shape {maps.shape}")
    if maps.shape[-2:] == (size, size):
        return maps.copy()
    if maps.ndim == 3 and len(maps) > _CHUNK:
        return np.concatenate(
            [upsample_bicubic(maps[i : i + _CHUNK], size) for i in range(0, len(maps), _CHUNK)]
        )
    ys, wy = _cubic_taps(maps.shape[-2], size)
    xs, wx = _cubic_taps(maps.shape[-1], size)
    wide = maps.astype(np.float64)
    rows = _four_tap_sum([(wide[..., x], w) for x, w in zip(xs, wx)])  # [..., h, size]
    rows = rows.astype(np.float64)
    return _four_tap_sum([(rows[..., y, :], w[:, None]) for y, w in zip(ys, wy)])


def _half_pixel(in_size: int, out_size: int):
    """cv2 INTER_LINEAR's source taps along one axis: (i0, i1, frac) `[out]`."""
    src = ((np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5).astype(
        np.float32
    )
    i0 = np.floor(src).astype(np.int64)
    frac = src - i0.astype(np.float32)
    low, high = i0 < 0, i0 >= in_size - 1  # cv2 clamps to the border cell, weight 0
    i0 = np.where(low, 0, np.where(high, in_size - 1, i0))
    frac = np.where(low | high, np.float32(0), frac).astype(np.float32)
    return i0, np.minimum(i0 + 1, in_size - 1), frac


def upsample_half_pixel(maps, size: int = GT_SIZE) -> np.ndarray:
    """Bilinear upsampling as `cv2.resize(m, (size, size), interpolation=INTER_LINEAR)`:
    half-pixel centres, border cells clamped, rows interpolated first; the reference
    upsamples every negative map this way (and the positive one with corner alignment).

    Args:
      maps: [..., h, w].
    Returns:
      [..., size, size] float32.
    """
    m = np.asarray(maps, dtype=np.float32)
    y0, y1, fy = _half_pixel(m.shape[-2], size)
    x0, x1, fx = _half_pixel(m.shape[-1], size)
    rows = m[..., x0] * (np.float32(1) - fx) + m[..., x1] * fx  # [..., h, size]
    fy = fy[:, None]
    return rows[..., y0, :] * (np.float32(1) - fy) + rows[..., y1, :] * fy
