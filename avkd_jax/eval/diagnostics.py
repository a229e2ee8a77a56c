"""The synthetic world's diagnostics (docs/design.md, The synthetic world): where a map
peaks, the audio swap, and the audio-blind baselines (centre prior, every object).

Protocols of `config.evals`: 'peaks' (the models' peak histogram over their own grid and
its border share) and 'synthetic' (peak on the sounding object and the audio swap, on
batches whose scenes list their objects; others are passed over).
"""

from __future__ import annotations

import numpy as np

from avkd_jax.eval import protocol, registry


def centre_prior_map(size=protocol.MAP_SIZE):
    """A Gaussian at the image centre: `[size, size]`, the position-only baseline."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    s = size / 4
    return np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * s * s))


def every_object_map(boxes_xyxy, size=protocol.MAP_SIZE):
    """The audio-blind baseline: every object of the scene, sounding or not, painted.

    Each box is 1 inside and decays with the distance to it outside. The decay matters:
    with the protocol's median threshold a binary map covering less than half the image
    has threshold 0 and so marks the whole image; the decay makes the threshold keep the
    objects and a margin around them instead.
    """
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    out = np.zeros([size, size])
    for xmin, ymin, xmax, ymax in np.asarray(boxes_xyxy) * size:
        dx = np.maximum(np.maximum(xmin - xx, xx - xmax), 0)
        dy = np.maximum(np.maximum(ymin - yy, yy - ymax), 0)
        out = np.maximum(out, np.exp(-np.hypot(dx, dy) / (0.1 * size)))
    return out


def peak_cell(pred):
    """(y, x) of the maximum of a 2-D map."""
    return np.unravel_index(np.argmax(pred), pred.shape)


def peak_object(pred, boxes_xyxy) -> int:
    """The object a map's peak is on: the index of the box holding the centre of the
    peak's cell of `pred`'s own grid, the one whose centre is nearest when boxes overlap
    there; -1 on none.

    Nearest-centre rather than "inside the box": the synthetic world's objects are large
    and overlap, so the image centre mostly lies in the sounding box and in a distractor's
    at once, and an audio-blind centre map would pass an "inside the distractor's box"
    audio-swap test.

    A model's map is passed on its own h×w grid, not as the protocol's 224² upsampling:
    the protocol's corner-aligned resize draws the border cells' values on the image's
    outermost pixels, half a cell outward of the centre of what their features see, so a
    peak on a border cell whose centre lies in the object would read as a peak beside it.

    Args:
      pred: `[h, w]` map: a model's grid, or a 224² map (fusions, baselines).
      boxes_xyxy: `[N, 4]` normalised boxes.
    """
    h, w = np.shape(pred)
    iy, ix = peak_cell(pred)
    y, x = (iy + 0.5) / h, (ix + 0.5) / w
    best, best_d = -1, np.inf
    for k, (xmin, ymin, xmax, ymax) in enumerate(np.asarray(boxes_xyxy, dtype=np.float64)):
        if xmin <= x <= xmax and ymin <= y <= ymax:
            d = np.hypot(x - (xmin + xmax) / 2, y - (ymin + ymax) / 2)
            if d < best_d:
                best, best_d = k, d
    return best


def scene_objects(batch, row):
    """Row `row`'s scene objects: (`[N, 4]` normalised xyxy, index of the sounding one)."""
    objs = batch["objects"]["bbox"][row, : batch["num_objects"][row], :][:, [1, 0, 3, 2]]
    return objs, np.flatnonzero(batch["objects"]["sounding"][row, : len(objs)])[0]


@registry.register("peaks")
class Peaks:
    """Where each model variant's map peaks on its own h×w grid (`maps.grids`).

    `result()`: model variant → `border_peak` (% of peaks on a border cell) and
    `peak_hist` (`[h, w]` counts, as lists).
    """

    wants_swap = False

    def __init__(self, config=None):
        del config
        self.hists: dict = {}

    def update(self, batch, maps) -> None:
        del batch
        for name in maps.models:
            grid = maps.grids[name]
            hist = self.hists.setdefault(name, np.zeros(grid.shape[1:], int))
            for m in grid:
                y, x = peak_cell(m)
                hist[y, x] += 1

    def result(self) -> dict:
        out = {}
        for name, hist in self.hists.items():
            border = hist.sum() - hist[1:-1, 1:-1].sum()
            out[name] = {
                "border_peak": 100.0 * border / max(hist.sum(), 1),
                "peak_hist": hist.tolist(),
            }
        return out


@registry.register("synthetic")
class SceneObjects:
    """On scenes that list their objects: how often a variant's map peaks on the sounding
    object (`peak_object`; a model's on its own grid), and with the distractor's sound
    (`maps.swapped`) on the distractor; an audio-blind map reads the same with either.

    `result()`: variant → `peak_on_sounding` (%), `swap_score` (fraction), `swap_n`.
    """

    wants_swap = True

    def __init__(self, config=None):
        del config
        self.on_sounding: dict = {}
        self.swap: dict = {}

    def update(self, batch, maps) -> None:
        if "objects" not in batch.data:
            return
        for k, r in enumerate(batch.rows):
            objs, sounding = scene_objects(batch.data, r)
            s = batch.data["swap_index"][r]
            for name in maps.maps:
                pred = maps.peak_map(name)
                self.on_sounding.setdefault(name, []).append(peak_object(pred[k], objs) == sounding)
                if s >= 0:
                    swapped = maps.peak_swapped(name)
                    self.swap.setdefault(name, []).append(peak_object(swapped[k], objs) == s)

    def result(self) -> dict:
        out = {}
        for name, hits in self.on_sounding.items():
            summary = out.setdefault(name, {})
            if hits:
                summary["peak_on_sounding"] = 100.0 * np.mean(hits)
            if self.swap.get(name):
                summary["swap_score"] = float(np.mean(self.swap[name]))
                summary["swap_n"] = len(self.swap[name])
        return out
