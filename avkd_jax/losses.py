"""Losses of AVKD (docs/design.md, Model and losses) as pure jax.numpy functions.

Indices: i runs over audio clips, j over images; both over the same (global) batch, so
the matching pairs lie on the diagonal.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def similarity_maps(audio_emb, visual_maps, tau: float) -> jnp.ndarray:
    """Audio-to-image similarity at every spatial cell.

    Args:
      audio_emb: [B, C] (L2-normalised by the model).
      visual_maps: [B, H, W, C] (L2-normalised over C by the model).
      tau: temperature (0.03 in the paper).
    Returns:
      [B, B, H, W] float32, S[i, j, h, w] = <visual_maps[j, h, w], audio_emb[i]> / tau.
    """
    # Accumulate in float32 even for bfloat16 activations: with tau = 0.03 the logits
    # reach ~33 and bfloat16's 8-bit mantissa would blur neighbouring negatives.
    s = jnp.einsum("ic,jhwc->ijhw", audio_emb, visual_maps, preferred_element_type=jnp.float32)
    return s.astype(jnp.float32) / tau


def contrastive_loss(sim_maps) -> jnp.ndarray:
    """Symmetric InfoNCE over max-pooled similarity maps.

    logits[i, j] = max over (h, w) of sim_maps[i, j]; the loss is the cross-entropy of
    the rows (audio -> image) plus that of the columns (image -> audio), each averaged
    over the batch, with the diagonal as targets.

    Args:
      sim_maps: [B, B, H, W] from `similarity_maps`.
    Returns:
      scalar float32.
    """
    logits = jnp.max(sim_maps.astype(jnp.float32), axis=(2, 3))  # [B, B]
    audio_to_image = -jnp.mean(jnp.diagonal(jax.nn.log_softmax(logits, axis=1)))
    image_to_audio = -jnp.mean(jnp.diagonal(jax.nn.log_softmax(logits, axis=0)))
    return audio_to_image + image_to_audio


def _mse(student, teacher, what: str) -> jnp.ndarray:
    s = jnp.asarray(student).astype(jnp.float32)
    t = jnp.asarray(teacher).astype(jnp.float32)
    if s.shape != t.shape:
        raise ValueError(f"{what} {t.shape} does not match the student's {s.shape}")
    return jnp.mean(jnp.square(s - t))


def audio_hint_loss(audio_emb, teacher_emb) -> jnp.ndarray:
    """Mean squared error to the audio teacher's embedding.

    Args:
      audio_emb: [B, D] student embedding.
      teacher_emb: [B, D] teacher embedding (PANNs Cnn14, D = 2048).
    Returns:
      scalar float32, mean over all B * D elements.
    """
    return _mse(audio_emb, teacher_emb, "audio hint")


def _source_index(in_size: int, out_size: int, align_corners: bool):
    """Torch's bilinear source coordinates along one axis (computed at trace time).

    Returns (i0 [out], i1 [out], frac [out]) such that
    out[k] = (1 - frac[k]) * in[i0[k]] + frac[k] * in[i1[k]].
    """
    dst = np.arange(out_size, dtype=np.float64)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = dst * scale
    else:
        # Half-pixel centres; torch clamps negative source coordinates to 0 for linear
        # modes, which is what makes the first output rows copies of the first input row.
        src = np.maximum((dst + 0.5) * (in_size / out_size) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    frac = (src - i0).astype(np.float32)
    return i0, i1, frac


def resize_bilinear(maps, out_hw: Sequence[int], align_corners: bool) -> jnp.ndarray:
    """Bilinear resize with torch.nn.functional.interpolate semantics, no antialiasing.

    Equal to F.interpolate(maps[:, None], size=out_hw, mode='bilinear',
    align_corners=align_corners)[:, 0] for upsampling and downsampling alike (unlike
    jax.image.resize, which antialiases when shrinking). Written as two separable
    gather-and-lerp passes rather than a matmul so that float32 stays float32 on GPUs
    whose default matmul precision is TF32.

    Args:
      maps: [..., H, W] jax or numpy array.
      out_hw: (h, w).
      align_corners: torch's flag; False = half-pixel centres.
    Returns:
      [..., h, w] jax array (float32 for float32 or integer input).
    """
    maps = jnp.asarray(maps)
    if not jnp.issubdtype(maps.dtype, jnp.floating):
        maps = maps.astype(jnp.float32)
    if maps.ndim < 2:
        raise ValueError(f"maps must be [..., H, W], got shape {maps.shape}")
    out_h, out_w = (int(s) for s in out_hw)
    in_h, in_w = maps.shape[-2], maps.shape[-1]

    y0, y1, fy = _source_index(in_h, out_h, align_corners)
    x0, x1, fx = _source_index(in_w, out_w, align_corners)
    fy = jnp.asarray(fy, dtype=maps.dtype)[:, None]
    fx = jnp.asarray(fx, dtype=maps.dtype)
    rows = maps[..., y0, :] * (1 - fy) + maps[..., y1, :] * fy  # [..., h, W]
    return rows[..., x0] * (1 - fx) + rows[..., x1] * fx  # [..., h, w]


def visual_hint_loss(visual_maps, hint) -> jnp.ndarray:
    """Mean squared error between the student's channel-mean map and the DETR map.

    Args:
      visual_maps: [B, H, W, C] student visual features (7 x 7 x 2048).
      hint: [B, h, w] teacher map (25 x 25); a sample whose hint contains any NaN is
        dropped (NaN marks "DETR kept no query").
    Returns:
      scalar float32: mean over kept samples and all h * w cells of (m - d)^2, where m is
      the channel mean resized with half-pixel centres (torch align_corners=False).
      0 when no sample is kept.
    """
    hint = jnp.asarray(hint).astype(jnp.float32)
    m = jnp.mean(jnp.asarray(visual_maps).astype(jnp.float32), axis=-1)  # [B, H, W]
    m = resize_bilinear(m, hint.shape[-2:], align_corners=False)  # [B, h, w]
    nan = jnp.isnan(hint)
    kept = ~jnp.any(nan, axis=(1, 2))  # [B]
    # Zero the NaNs before subtracting: jnp.where on the loss alone would still send
    # NaN * 0 = NaN into the gradient.
    d = jnp.where(nan, 0.0, hint)
    per_sample = jnp.mean(jnp.square(m - d), axis=(1, 2))  # [B]
    kept_f = kept.astype(jnp.float32)
    return jnp.sum(per_sample * kept_f) / jnp.maximum(jnp.sum(kept_f), 1.0)


def visual_feature_hint_loss(visual_maps, hint) -> jnp.ndarray:
    """Mean squared error between the student's map and a teacher's feature map (the
    paper's text, Eq. 2: every element of f_v against e_v).

    Args:
      visual_maps: [B, H, W, C] student visual features.
      hint: [B, H, W, C] teacher features at the student's grid (DETR's ResNet-50).
    Returns:
      scalar float32, mean over all elements.
    """
    return _mse(visual_maps, hint, "visual feature hint (extract it at the student's grid)")
