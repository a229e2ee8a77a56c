"""DETR visual hints (docs/design.md, Model and losses): the decoder's cross-attention map, or backbone features.

Weights: a local directory in `save_pretrained` format, e.g. a snapshot of
`facebook/detr-resnet-50`. That snapshot's default revision uses a timm ResNet-50, which
needs the `timm` package; its `no_timm` revision uses transformers' own ResNet and needs
nothing more.

The map (the released AVKD code): the image resized to 800×800 goes through DETR; the
last decoder layer's cross-attention [heads, queries, 25·25] is averaged over heads; the
queries whose best non-background class probability (softmax over all logits, the last,
"no object", left out) exceeds 0.3 are kept; the map is the mean of |attention| over the
kept queries, reshaped row-major (the encoder flattens the 25×25 feature map row by row)
to 25×25. It is NaN everywhere when no query is kept.

The paper-text variant (`--visual_hint=backbone`): the ResNet-50 backbone's last feature
map (2048 channels, 25×25 at 800²), area-averaged to the student's grid, channels last.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import torch
import torch.nn.functional as F

from avkd_jax.errors import DetrWeightsError
from teachers import common

IMAGE_SIZE = 800
THRESHOLD = 0.3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ATTENTION = "attention"
BACKBONE = "backbone"


def _transformers():
    import transformers  # Imported late: it is slow to import and only DETR needs it.

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def load_detr(path: str):
    """`DetrForObjectDetection` from a local `save_pretrained` directory, eager attention.

    Raises:
      DetrWeightsError: no such directory, or a timm-backbone snapshot without timm.
    """
    tf = _transformers()
    path = os.fspath(path)
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise DetrWeightsError(
            f"{path}: not a DETR weights directory (no config.json); give a local "
            "save_pretrained directory, e.g. a snapshot of facebook/detr-resnet-50"
        )
    config = tf.DetrConfig.from_pretrained(path, local_files_only=True)
    backbone_type = getattr(config.backbone_config, "model_type", "")
    if backbone_type == "timm_backbone" and importlib.util.find_spec("timm") is None:
        raise DetrWeightsError(
            f"{path}: this DETR snapshot uses a timm ResNet-50 backbone and the timm package "
            "is not installed: `pip install timm`, or use the snapshot's `no_timm` revision "
            "(transformers' own ResNet backbone), e.g. "
            "`huggingface-cli download facebook/detr-resnet-50 --revision no_timm --local-dir DIR`"
        )
    model = tf.DetrForObjectDetection.from_pretrained(
        path, attn_implementation="eager", local_files_only=True
    )
    return model.eval()


def resnet50_config(**overrides):
    """DETR-R50's architecture with transformers' own ResNet-50 backbone (no timm)."""
    tf = _transformers()
    backbone = tf.ResNetConfig(out_features=["stage4"])  # ResNetConfig() is ResNet-50.
    return tf.DetrConfig(use_timm_backbone=False, backbone_config=backbone, **overrides)


def random_detr(config=None, seed: int = 0):
    """A randomly initialised DETR (tests, benchmarks): DETR-R50 unless `config` is given."""
    tf = _transformers()
    config = resnet50_config() if config is None else config
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return tf.DetrForObjectDetection(config).eval()


def preprocess(images, size: int = IMAGE_SIZE) -> torch.Tensor:
    """uint8 images `[H, W, 3]` (sizes may differ) → `pixel_values` `[B, 3, size, size]`.

    Bilinear resize (half-pixel centres, antialiased when shrinking), /255, ImageNet
    mean/std.
    """
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    out = []
    for image in images:
        # A copy: tf.data hands out read-only arrays, which torch.from_numpy warns about.
        x = torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1)[None].float()
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        out.append((x[0] / 255.0 - mean) / std)
    return torch.stack(out)


def map_from_outputs(logits, cross_attention, threshold: float = THRESHOLD) -> torch.Tensor:
    """The released code's DETR map from DETR's outputs.

    Args:
      logits: `[B, Q, num_labels + 1]`, the last column "no object".
      cross_attention: the last decoder layer's `[B, heads, Q, h·w]` (row-major h, w).

    Returns:
      float32 `[B, h, w]`; NaN everywhere for an image where no query passes `threshold`.
    """
    b, _, _, hw = cross_attention.shape
    side = round(hw**0.5)
    if side * side != hw:
        raise ValueError(f"cross-attention over {hw} positions is not a square feature map")
    best = logits.float().softmax(-1)[..., :-1].max(-1).values  # [B, Q]
    keep = (best > threshold).float()
    attention = cross_attention.float().mean(1).abs()  # [B, Q, hw]
    total = (attention * keep[..., None]).sum(1)
    count = keep.sum(1, keepdim=True)
    maps = torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))
    return maps.view(b, side, side)


@torch.no_grad()
def attention_maps(model, pixel_values: torch.Tensor, threshold: float = THRESHOLD) -> torch.Tensor:
    """`[B, 3, 800, 800]` → the DETR maps `[B, 25, 25]` (see `map_from_outputs`)."""
    captured = []
    # A hook on the one attention we need, rather than output_attentions=True, which would
    # also keep every encoder self-attention map (8 heads × 625² per layer and image).
    cross = model.model.decoder.layers[-1].encoder_attn
    handle = cross.register_forward_hook(lambda module, args, out: captured.append(out[1]))
    try:
        outputs = model(pixel_values=pixel_values, pixel_mask=_full_mask(pixel_values))
    finally:
        handle.remove()
    if not captured or captured[0] is None:
        raise RuntimeError("DETR returned no cross-attention weights (is attention 'eager'?)")
    return map_from_outputs(outputs.logits, captured[0], threshold)


def area_pool(features: torch.Tensor, grid: int) -> torch.Tensor:
    """`[B, C, H, W]` → `[B, grid, grid, C]`: adaptive average pooling, channels last."""
    return F.adaptive_avg_pool2d(features, grid).permute(0, 2, 3, 1).contiguous()


@torch.no_grad()
def backbone_maps(model, pixel_values: torch.Tensor, grid: int) -> torch.Tensor:
    """`[B, 3, 800, 800]` → the backbone's last feature map pooled to `[B, grid, grid, C]`."""
    features, _ = model.model.backbone(pixel_values, _full_mask(pixel_values))[-1]
    return area_pool(features, grid)


def _full_mask(pixel_values):
    b, _, h, w = pixel_values.shape
    return torch.ones((b, h, w), dtype=torch.long, device=pixel_values.device)


def make_teacher(
    weights: str | None = None,
    *,
    random_weights: bool = False,
    variant: str = ATTENTION,
    grid: int = 7,
    device: str = "cpu",
) -> common.Teacher:
    """The DETR teacher for `teachers.extract` from `--weights` (or `--random_weights`)."""
    if variant not in (ATTENTION, BACKBONE):
        raise ValueError(f"--visual_hint={variant}: expected {ATTENTION!r} or {BACKBONE!r}")
    source = common.weights_source(weights, random_weights, "detr")
    model = load_detr(weights) if weights else random_detr()
    return teacher_from_model(model, source, variant=variant, grid=grid, device=device)


def teacher_from_model(
    model, source: str, *, variant: str = ATTENTION, grid: int = 7, device: str = "cpu"
) -> common.Teacher:
    """`detr` (the attention map, [25, 25]) or `detr_backbone` ([grid, grid, 2048])."""
    dev = common.device(device)
    model = model.to(dev).eval()
    if variant == ATTENTION:
        side = IMAGE_SIZE // 32
        shapes = {"visual_hint": (side, side)}

        def compute(batch):
            maps = attention_maps(model, preprocess(batch["image"]).to(dev))
            return {"visual_hint": maps.cpu().numpy()}

    elif variant == BACKBONE:
        channels = model.model.backbone.intermediate_channel_sizes[-1]
        shapes = {"visual_hint": (grid, grid, channels)}

        def compute(batch):
            maps = backbone_maps(model, preprocess(batch["image"]).to(dev), grid)
            return {"visual_hint": maps.cpu().numpy()}

    else:
        raise ValueError(f"--visual_hint={variant}: expected {ATTENTION!r} or {BACKBONE!r}")
    name = "detr" if variant == ATTENTION else "detr_backbone"
    return common.Teacher(name, shapes, source, ("image",), 8, compute)
