"""The authors' released AVC checkpoint (PyTorch) → `.npz` of our `avkd_jax.models.AVC`.

    python -m teachers.convert_avc --pth=avc.pth --out=avc.npz
    python -m avkd_jax.main --config=configs/flickr144k.py --workdir=runs/authors \\
        --mode=import --npz=avc.npz

The checkpoint (docs/design.md, Model and losses) is a `state_dict`, possibly under `model` (or `state_dict`),
possibly with `module.` prefixes, holding
  imgnet.*                   a torchvision ResNet18 without fc (the visual trunk),
  img_proj.{weight,bias}     Conv2d 512 → D, 1 × 1,
  audnet.*                   a torchvision ResNet18 whose conv1 takes 1 channel, without fc,
  aud_proj.{weight,bias}     Linear 512 → D.
The `.npz` keys are Flax paths of the whole model joined by '/':
`params/visual/imgnet/conv1/kernel`, `batch_stats/audio/audnet/bn1/mean`,
`params/visual/img_proj/kernel`, `params/audio/aud_proj/bias`, ... Every key and shape is
checked here against the layout and against each other, and again on the JAX side against
the config's model (`avkd_jax.pretrained.load_avc_npz`). The file is opened with
`torch.load(weights_only=True)` only.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from avkd_jax import errors
from avkd_jax.errors import ConversionError
from teachers import common
from teachers.convert_resnet import (
    save_npz,
    torchvision_to_flax,
    unwrap_state_dict,
)

# torch key prefix → (Flax module path, input channels of its conv1).
TRUNKS = {"imgnet.": ("visual/imgnet", 3), "audnet.": ("audio/audnet", 1)}
PROJECTIONS = ("img_proj.weight", "img_proj.bias", "aud_proj.weight", "aud_proj.bias")


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _check_layout(state_dict: dict) -> None:
    for key in state_dict:
        if not (key.startswith(tuple(TRUNKS)) or key in PROJECTIONS):
            raise ConversionError(
                f"unexpected key {key!r}: the AVC checkpoint holds imgnet.*, img_proj.*, "
                "audnet.* and aud_proj.* only"
            )
    for key in PROJECTIONS:
        if key not in state_dict:
            raise ConversionError(f"missing key {key!r}: not an AVC checkpoint")


def _trunk(state_dict: dict, prefix: str) -> dict[str, np.ndarray]:
    module, in_channels = TRUNKS[prefix]
    flat = torchvision_to_flax(state_dict, prefix)
    conv1 = flat["params/conv1/kernel"]  # HWIO
    if conv1.shape[2] != in_channels:
        raise ConversionError(
            f"{prefix}conv1.weight takes {conv1.shape[2]} input channels; the "
            f"{module.split('/')[0]} trunk takes {in_channels}"
        )
    out = {}
    for key, value in flat.items():
        collection, rest = key.split("/", 1)
        out[f"{collection}/{module}/{rest}"] = value
    return out


def avc_to_flax(state_dict: dict) -> dict[str, np.ndarray]:
    """The authors' AVC `state_dict` → {Flax path of `models.AVC`: float32 array}.

    Conv kernels OIHW → HWIO, the Linear weight [D, C] → kernel [C, D], BatchNorm weight /
    bias / running statistics → params scale / bias and batch_stats mean / var; fc and
    `num_batches_tracked` are dropped.

    Raises:
      ConversionError naming a missing or unexpected key, or a shape that does not fit
      the layout (a 3-channel audio conv1, projections that disagree with the trunks or
      with each other).
    """
    sd = unwrap_state_dict(state_dict)
    _check_layout(sd)
    out = {**_trunk(sd, "imgnet."), **_trunk(sd, "audnet.")}
    img_w, img_b = _numpy(sd["img_proj.weight"]), _numpy(sd["img_proj.bias"])
    aud_w, aud_b = _numpy(sd["aud_proj.weight"]), _numpy(sd["aud_proj.bias"])
    visual_c = out["params/visual/imgnet/layer4_1/conv2/kernel"].shape[-1]
    audio_c = out["params/audio/audnet/layer4_1/conv2/kernel"].shape[-1]
    if img_w.ndim != 4 or img_w.shape[1:] != (visual_c, 1, 1):
        raise ConversionError(
            f"'img_proj.weight' has shape {img_w.shape}, expected [D, {visual_c}, 1, 1] "
            "(a 1×1 Conv2d on the visual trunk)"
        )
    dim = img_w.shape[0]
    if aud_w.shape != (dim, audio_c):
        raise ConversionError(
            f"'aud_proj.weight' has shape {aud_w.shape}, expected [{dim}, {audio_c}] "
            "(a Linear from the audio trunk to img_proj's dimension)"
        )
    for name, bias in (("img_proj.bias", img_b), ("aud_proj.bias", aud_b)):
        if bias.shape != (dim,):
            raise ConversionError(f"{name!r} has shape {bias.shape}, expected [{dim}]")
    out["params/visual/img_proj/kernel"] = img_w.transpose(2, 3, 1, 0)
    out["params/visual/img_proj/bias"] = img_b
    out["params/audio/aud_proj/kernel"] = aud_w.T
    out["params/audio/aud_proj/bias"] = aud_b
    return out


def describe(arrays: dict[str, np.ndarray]) -> str:
    """The config fields the converted model needs: width and embedding dimension."""
    width = arrays["params/visual/imgnet/conv1/kernel"].shape[-1] / 64
    dim = arrays["params/visual/img_proj/bias"].shape[0]
    count = sum(a.size for k, a in arrays.items() if k.startswith("params/"))
    return (
        f"{count:,} parameters; import with a config of model.width={width:g}, "
        f"model.embed_dim={dim}"
    )


def convert(pth: str, out: str) -> dict[str, np.ndarray]:
    checkpoint = common.load_checkpoint(pth)
    try:
        arrays = avc_to_flax(checkpoint)
    except ConversionError as e:
        raise ConversionError(f"{pth}: {e}") from None
    save_npz(out, arrays)
    return arrays


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m teachers.convert_avc",
        description="Convert the authors' PyTorch AVC checkpoint to the .npz that "
        "`python -m avkd_jax.main --mode=import --npz=...` reads.",
    )
    parser.add_argument("--pth", required=True, help="the authors' checkpoint (.pth)")
    parser.add_argument("--out", required=True, help="output .npz")
    args = parser.parse_args(argv)
    try:
        arrays = convert(args.pth, args.out)
    except (errors.CheckpointError, ConversionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.out}: {len(arrays)} arrays, {describe(arrays)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
