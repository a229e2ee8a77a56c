"""torchvision ResNet18 weights → `.npz` for the JAX student (`avkd_jax.pretrained`).

    python -m teachers.convert_resnet --torchvision_pth=resnet18-f37072fd.pth --out=resnet18.npz

The `.npz` keys are the Flax variable paths of `avkd_jax.models.ResNet18Trunk` joined by
'/': `params/conv1/kernel` (HWIO), `params/bn1/scale`, `params/bn1/bias`,
`batch_stats/bn1/mean`, `batch_stats/bn1/var`, `params/layer2_0/downsample_conv/kernel`, ...
The classifier (`fc`) and BatchNorm's `num_batches_tracked` are dropped: the trunk has
neither. Any channel width converts (`torch_resnet.resnet18(width=...)`): shapes follow the
state_dict, and `load_resnet18_npz(path, width=...)` checks them against the trunk. The
checkpoint is opened with `torch.load(weights_only=True)` only.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from avkd_jax import errors, files
from avkd_jax.errors import ConversionError
from teachers import common
from teachers.torch_resnet import STAGE_SIZES

_DROPPED_SUFFIXES = ("num_batches_tracked",)
_DROPPED_PREFIXES = ("fc.",)


def _bn(torch_name: str, flax_name: str) -> list[tuple[str, str, str]]:
    return [
        (f"{torch_name}.weight", f"params/{flax_name}/scale", "vector"),
        (f"{torch_name}.bias", f"params/{flax_name}/bias", "vector"),
        (f"{torch_name}.running_mean", f"batch_stats/{flax_name}/mean", "vector"),
        (f"{torch_name}.running_var", f"batch_stats/{flax_name}/var", "vector"),
    ]


def key_mapping() -> list[tuple[str, str, str]]:
    """(torchvision key, Flax path, kind) for every tensor of the ResNet18 trunk."""
    rows = [("conv1.weight", "params/conv1/kernel", "conv")] + _bn("bn1", "bn1")
    for stage, blocks in enumerate(STAGE_SIZES):
        for block in range(blocks):
            t, f = f"layer{stage + 1}.{block}", f"layer{stage + 1}_{block}"
            for conv in ("1", "2"):
                rows.append((f"{t}.conv{conv}.weight", f"params/{f}/conv{conv}/kernel", "conv"))
                rows += _bn(f"{t}.bn{conv}", f"{f}/bn{conv}")
            if stage > 0 and block == 0:
                rows.append(
                    (f"{t}.downsample.0.weight", f"params/{f}/downsample_conv/kernel", "conv")
                )
                rows += _bn(f"{t}.downsample.1", f"{f}/downsample_bn")
    return rows


def unwrap_state_dict(checkpoint) -> dict:
    """A bare state_dict, or one under `state_dict` / `model`, without `module.` prefixes."""
    sd = checkpoint
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict):
        raise ConversionError(f"expected a state_dict (a dict of tensors), got {type(sd).__name__}")
    return {(k.removeprefix("module.")): v for k, v in sd.items()}


def torchvision_to_flax(state_dict: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """torchvision-layout ResNet18 tensors under `prefix` → {Flax path: float32 array}.

    Args:
      state_dict: name → tensor (torch or numpy), e.g. torchvision's `resnet18()` state,
        or the authors' checkpoint with `prefix='imgnet.'` / `'audnet.'`.
      prefix: the trunk's key prefix; keys outside it are ignored.

    Returns:
      conv kernels OIHW → HWIO; BatchNorm weight/bias → params scale/bias and
      running_mean/var → batch_stats mean/var.

    Raises:
      ConversionError naming a missing key, an unexpected key under `prefix`, or a tensor
      of the wrong rank.
    """
    out = {}
    used = set()
    for torch_key, flax_key, kind in key_mapping():
        name = prefix + torch_key
        if name not in state_dict:
            raise ConversionError(f"missing key {name!r}: not a torchvision ResNet18 state_dict")
        try:
            value = np.asarray(_to_numpy(state_dict[name]), dtype=np.float32)
        except (TypeError, ValueError):
            raise ConversionError(
                f"{name!r} is a {type(state_dict[name]).__name__}, not a tensor of numbers"
            ) from None
        want_ndim = 4 if kind == "conv" else 1
        if value.ndim != want_ndim:
            raise ConversionError(
                f"{name!r} has shape {value.shape}, expected a {want_ndim}-d tensor"
            )
        out[flax_key] = value.transpose(2, 3, 1, 0) if kind == "conv" else value
        used.add(name)
    for name in state_dict:
        if not name.startswith(prefix) or name in used:
            continue
        rest = name[len(prefix) :]
        if rest.startswith(_DROPPED_PREFIXES) or rest.endswith(_DROPPED_SUFFIXES):
            continue
        raise ConversionError(f"unexpected key {name!r}: not part of a torchvision ResNet18")
    return out


def _to_numpy(value):
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


def save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Writes to a temporary name and renames, so `path` only ever holds a complete file."""
    # A file object: np.savez would append '.npz' to a name.
    with files.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def convert(torchvision_pth: str, out: str, prefix: str = "") -> dict[str, np.ndarray]:
    checkpoint = common.load_checkpoint(torchvision_pth)
    try:
        arrays = torchvision_to_flax(unwrap_state_dict(checkpoint), prefix)
    except ConversionError as e:
        raise ConversionError(f"{torchvision_pth}: {e}") from None
    save_npz(out, arrays)
    return arrays


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m teachers.convert_resnet",
        description="Convert torchvision ResNet18 weights to the .npz the JAX student loads.",
    )
    parser.add_argument("--torchvision_pth", required=True, help="e.g. resnet18-f37072fd.pth")
    parser.add_argument("--out", required=True, help="output .npz")
    parser.add_argument("--prefix", default="", help="key prefix of the trunk, e.g. 'imgnet.'")
    args = parser.parse_args(argv)
    try:
        arrays = convert(args.torchvision_pth, args.out, args.prefix)
    except (errors.CheckpointError, ConversionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    count = sum(a.size for k, a in arrays.items() if k.startswith("params/"))
    print(f"{args.out}: {len(arrays)} arrays, {count:,} trunk parameters (fc dropped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
