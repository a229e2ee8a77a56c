"""Pictures of an evaluation (the paper's Fig. 3) and of `localize`.

Drawn on matplotlib's Agg canvas directly (no pyplot): nothing is ever shown, no display
is needed, and no global matplotlib state is touched. Every file is written to a temporary
name and renamed when complete.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from avkd_jax import files
from avkd_jax.eval import fusion, protocol

COLOUR_MAP = "jet"
OPACITY = 0.5  # of the heat map over the image
CELL_INCHES = 1.45  # one image of the maps grid
DPI = 80


def heat_rgb(heat) -> np.ndarray:
    """A map `[H, W]` in [0, 1] → uint8 `[H, W, 3]` colours of the 'jet' colour map."""
    rgba = colormaps[COLOUR_MAP](np.clip(np.asarray(heat, np.float64), 0.0, 1.0))
    return np.round(rgba[..., :3] * 255).astype(np.uint8)


def resize_map(heat, height: int, width: int) -> np.ndarray:
    """A float map `[h, w]` → `[height, width]` float32, bilinear (PIL)."""
    image = Image.fromarray(np.asarray(heat, np.float32))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), np.float32)


def overlay(image, heat, opacity: float = OPACITY) -> np.ndarray:
    """A heat map over a picture.

    Args:
      image: uint8 `[H, W, 3]`, any size.
      heat: `[h, w]` in [0, 1] (a protocol map), stretched to H × W as the model's input
        was stretched to a square.
    Returns:
      uint8 `[H, W, 3]`: (1 − opacity)·image + opacity·colour(heat), rounded.
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    return blend(image, heat_rgb(resize_map(heat, height, width)), opacity)


def blend(image, colours, opacity: float = OPACITY) -> np.ndarray:
    """uint8 `[H, W, 3]` picture and colours → (1 − opacity)·image + opacity·colours."""
    image, colours = np.asarray(image, np.float32), np.asarray(colours, np.float32)
    out = (1.0 - opacity) * image + opacity * colours
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def save_png(array, path: str) -> str:
    """uint8 `[H, W, 3]` → a PNG of exactly H × W pixels at `path`."""
    with files.atomic_path(path) as tmp:
        Image.fromarray(np.asarray(array, np.uint8)).save(tmp, format="PNG")
    return path


def _save_figure(fig: Figure, path: str) -> str:
    """Renders `fig` at `DPI` and writes it as a 256-colour PNG: Floyd–Steinberg dithering
    over a median-cut palette looks like the RGB render in a fraction of its bytes."""
    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(DPI)
    canvas.draw()
    rgb = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
    palette = rgb.quantize(256, method=Image.Quantize.MEDIANCUT)
    with files.atomic_path(path) as tmp:
        rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(
            tmp, format="PNG", optimize=True
        )
    return path


def maps_grid(pictures: list, cious: dict, ids: list, path: str, title: str = "") -> str:
    """The paper's Fig. 3: one row per picture; columns: the input image, its ground-truth
    boxes, then each variant's map over the image with the sample's cIoU.

    Args:
      pictures: `eval.evaluator.SplitEval.pictures`.
      cious, ids: `SplitEval.cious` and `.ids` (for the cIoU shown under each map).
    """
    variants = [v for v in fusion.PICTURE_VARIANTS if any(v in p["maps"] for p in pictures)]
    position = {i: k for k, i in enumerate(ids)}
    cols = 2 + len(variants)
    fig = Figure(figsize=(cols * CELL_INCHES, len(pictures) * CELL_INCHES + 0.35))
    axes = fig.subplots(len(pictures), cols, squeeze=False)
    for r, picture in enumerate(pictures):
        image = picture["image"]
        height, width = image.shape[:2]
        axes[r, 0].imshow(image)
        axes[r, 0].set_ylabel(picture["id"], fontsize=7)
        axes[r, 1].imshow(image)
        for xmin, ymin, xmax, ymax in np.asarray(picture["boxes"]).reshape(-1, 4):
            axes[r, 1].add_patch(
                Rectangle(
                    (xmin * width, ymin * height),
                    (xmax - xmin) * width,
                    (ymax - ymin) * height,
                    fill=False,
                    edgecolor="lime",
                    linewidth=1,
                )
            )
        for c, variant in enumerate(variants, start=2):
            if variant not in picture["maps"]:
                continue
            axes[r, c].imshow(overlay(image, picture["maps"][variant]))
            if variant in cious and picture["id"] in position:
                value = cious[variant][position[picture["id"]]]
                axes[r, c].set_xlabel(f"cIoU {value:.2f}", fontsize=7, labelpad=1)
    for c, name in enumerate(["input image", "ground truth"] + variants):
        axes[0, c].set_title(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.3)
    return _save_figure(fig, path)


def ciou_histogram(cious: dict, path: str, title: str = "") -> str:
    """Histogram of per-sample cIoU (20 bins over [0, 1]) for each variant, with the 0.5
    line that the reported cIoU counts from."""
    fig = Figure(figsize=(5, 3.2))
    ax = fig.subplots()
    bins = np.linspace(0, 1, 21)
    for variant, values in cious.items():
        ax.hist(values, bins=bins, histtype="step", linewidth=1.2, label=variant)
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("per-sample cIoU")
    ax.set_ylabel("samples")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title(title or "cIoU per sample", fontsize=9)
    fig.tight_layout()
    return _save_figure(fig, path)


def success_plot(cious: dict, path: str, title: str = "") -> str:
    """The success-rate curve (t, fraction of samples with cIoU ≥ t) over the protocol's
    thresholds t = 0.05·i for each variant; the legend gives its area, the AUC."""
    fig = Figure(figsize=(5, 3.2))
    ax = fig.subplots()
    for variant, values in cious.items():
        thresholds, fractions = protocol.success_curve(values)
        auc = protocol.summarize(values)["auc"]
        ax.plot(thresholds, fractions, marker=".", linewidth=1.2, label=f"{variant}: AUC {auc:.1f}")
    ax.set_xlabel("cIoU threshold t")
    ax.set_ylabel("fraction of samples with cIoU ≥ t")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title or "success rate", fontsize=9)
    fig.tight_layout()
    return _save_figure(fig, path)


def write_pictures(directory: str, set_name: str, result) -> list[str]:
    """An evaluation set's pictures in `directory`: `<set>_maps.png` (`maps_grid`),
    `<set>_ciou_hist.png` (`ciou_histogram`) and `<set>_success.png` (`success_plot`).

    Args:
      result: the set's `evaluator.SplitEval`.
    Returns:
      the paths written.
    """
    os.makedirs(directory, exist_ok=True)
    stem = os.path.join(directory, set_name)
    paths = []
    if result.pictures:
        paths.append(maps_grid(result.pictures, result.cious, result.ids, f"{stem}_maps.png"))
    if result.cious:
        n = len(result.ids)
        paths.append(ciou_histogram(result.cious, f"{stem}_ciou_hist.png", f"{set_name}, N={n}"))
        paths.append(success_plot(result.cious, f"{stem}_success.png", f"{set_name}, N={n}"))
    return paths
