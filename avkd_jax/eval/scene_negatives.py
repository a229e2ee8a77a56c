"""The negative sounds of a batch of synthetic scenes (protocols 'extended' and
'negative_audio'): silence, noise, and the sound of a scene whose sounding class the
image does not hold."""

from __future__ import annotations

import numpy as np

from avkd_jax import audio, input_pipeline
from avkd_jax.eval import diagnostics, fusion, negative_audio


def add_negative_maps(maps_fn, variants, data_sharding, batch, image, out) -> None:
    """Fills `out.negatives` and `out.offscreen_ids` (`evaluator.Maps`) of a batch of
    scenes that list their objects: every model variant's S with silence, noise and the
    `offscreen_partners` row's sound; an audio-blind variant's own S for each.

    Args:
      maps_fn: (variables, image, pcm) → S `[B, h, w]` (the predictor's jitted maps).
      variants: model variant → its variables.
      data_sharding: how a batch input is split over the devices.
      batch: the `evaluator.EvalBatch`; image: its images as the device holds them.
    """
    data, rows = batch.data, batch.rows
    pcm = np.asarray(data["audio"])
    partner = offscreen_partners(data, rows)
    out.offscreen_ids = [batch.ids[list(rows).index(j)] if j >= 0 else None for j in partner]
    sounds = {
        "silence": np.zeros(pcm.shape, np.float32),
        "noise": np.zeros(pcm.shape, np.float32),
        "offscreen": pcm.astype(np.float32),
    }
    for r, i in zip(rows, batch.ids):
        sounds["noise"][r] = negative_audio.image_noise(i, pcm.shape[1]) * audio.PCM_SCALE
    for r, j in zip(rows, partner):
        if j >= 0:
            sounds["offscreen"][r] = pcm[j]
    for name, variables in variants.items():
        out.negatives[name] = {}
        for kind, sound in sounds.items():
            pcm_in = input_pipeline.replicated_global({"a": sound}, data_sharding)["a"]
            out.negatives[name][kind] = np.asarray(maps_fn(variables, image, pcm_in))[rows]
    for name in out.maps:
        if name not in out.negatives and name not in (fusion.OG, fusion.OG_DETR):
            blind = out.similarity(name)  # Audio-blind: the same map whatever it hears.
            out.negatives[name] = {kind: blind for kind in sounds}


def offscreen_partners(data, rows) -> np.ndarray:
    """For each real row, the batch row whose scene's sounding class is in none of the
    row's objects, the first such after it (cyclically); -1 where there is none.

    Returns:
      `[n]` int batch-row indices.
    """
    labels = [set(data["objects"]["label"][r, : data["num_objects"][r]].tolist()) for r in rows]
    sounding = [
        int(data["objects"]["label"][r, diagnostics.scene_objects(data, r)[1]]) for r in rows
    ]
    out = np.full(len(rows), -1)
    for k in range(len(rows)):
        for step in range(1, len(rows)):
            j = (k + step) % len(rows)
            if sounding[j] not in labels[k]:
                out[k] = rows[j]
                break
    return out
