"""Pretrained weights for the students: torchvision's ImageNet ResNet18 as `.npz`.

The `.npz` is written by `python -m teachers.convert_resnet` (the PyTorch side); its keys
are Flax variable paths of `models.ResNet18Trunk` joined by '/' (`params/conv1/kernel`,
`batch_stats/bn1/mean`, ...). Loading checks every key and shape against the trunk, so a
wrong or truncated file fails here, naming the key, rather than at the first train step.
"""

from __future__ import annotations

import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np

from avkd_jax import models, synthetic_assets
from avkd_jax.errors import PretrainedError

# The value of a config's weights field that names the synthetic world's stand-in for
# ImageNet (`synthetic_assets.resnet18`).
SYNTHETIC = synthetic_assets.RESNET18


def trunk_shapes(in_channels: int = 3, width: float = 1.0) -> dict[str, tuple]:
    """'collection/module/.../name' → shape, for `ResNet18Trunk` on `in_channels` inputs."""
    trunk = models.ResNet18Trunk(width)
    variables = jax.eval_shape(
        lambda: trunk.init(
            jax.random.key(0), jnp.zeros([1, 64, 64, in_channels], jnp.float32), train=False
        )
    )
    return {
        "/".join(k.key for k in path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(variables)
    }


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    """{'a/b/c': x} → {'a': {'b': {'c': x}}}."""
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def load_resnet18_npz(path: str, in_channels: int = 3, width: float = 1.0) -> dict:
    """Reads a converted ResNet18 trunk.

    Args:
      path: the `.npz` from `teachers.convert_resnet`.
      in_channels: the trunk's input channels (3 for images).
      width: the trunk's channel multiplier (`config.model.width`; 1 for torchvision's).

    Returns:
      {'params': ..., 'batch_stats': ...}: nested dicts of float32 numpy arrays with the
      structure of `ResNet18Trunk`'s variables (conv kernels HWIO).

    Raises:
      FileNotFoundError: no file at `path`.
      PretrainedError: an unreadable file, or a missing key, an unexpected key or a wrong
        shape (the message names the key).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path}: ResNet18 weights file does not exist (convert torchvision's with "
            "`python -m teachers.convert_resnet --torchvision_pth=... --out=...`)"
        )
    flat = read_npz(path, "ResNet18 weights")
    expected = trunk_shapes(in_channels, width)
    check_shapes(
        path, flat, expected, f"a ResNet18 trunk ({in_channels} input channels, width {width:g})"
    )
    return unflatten(flat)


CONV1_KERNEL = "params/conv1/kernel"


def load_object_npz(path: str) -> tuple[dict, float]:
    """The ImageNet ResNet18 of the object-guided variants, at the width it was converted.

    Returns:
      (its variables as `load_resnet18_npz` gives them, its width = conv1's output
      channels / 64): 1 for torchvision's, whatever the student's width.
    Raises:
      FileNotFoundError, PretrainedError: as `load_resnet18_npz`.
    """
    flat = read_npz(path, "ResNet18 weights")
    if CONV1_KERNEL not in flat or flat[CONV1_KERNEL].ndim != 4:
        raise PretrainedError(f"{path}: no 4-d {CONV1_KERNEL!r}: not a ResNet18 trunk")
    width = flat[CONV1_KERNEL].shape[-1] / 64
    return load_resnet18_npz(path, 3, width), width


def avc_shapes(model: models.AVC, config) -> dict[str, tuple]:
    """'collection/module/.../name' → shape for every variable of `model` (`models.AVC`)."""
    variables = jax.eval_shape(lambda: models.init_variables(model, config, jax.random.key(0)))
    return {
        "/".join(k.key for k in path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(variables)
    }


def load_avc_npz(path: str, model: models.AVC, config) -> dict:
    """Reads a whole AVC student (`python -m teachers.convert_avc`: the authors' checkpoint).

    Args:
      path: the `.npz`, keyed by Flax paths (`params/visual/imgnet/conv1/kernel`, ...).
      model, config: the model it must fit (`config.model.width`, `embed_dim`).
    Returns:
      {'params': ..., 'batch_stats': ...} of float32 numpy arrays, `model`'s structure.
    Raises:
      FileNotFoundError: no file at `path`.
      PretrainedError: unreadable, or a missing key, an unexpected key or a wrong shape
        (the message names the key and the config fields to change).
    """
    flat = read_npz(path, "AVC weights")
    check_shapes(
        path,
        flat,
        avc_shapes(model, config),
        f"the AVC of this config (model.width={config.model.width:g}, "
        f"model.embed_dim={config.model.embed_dim})",
    )
    return unflatten(flat)


def read_npz(path: str, what: str) -> dict[str, np.ndarray]:
    """{key: float32 array} of an `.npz`; FileNotFoundError / PretrainedError naming it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: {what} file does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            flat = {k: np.asarray(z[k], np.float32) for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise PretrainedError(f"{path}: not a readable .npz file ({e})") from None
    for key, value in flat.items():
        if not np.isfinite(value).all():
            raise PretrainedError(f"{path}: {key!r} holds NaN or infinite values")
    return flat


def check_shapes(path: str, flat: dict, expected: dict, what: str) -> None:
    """Raises PretrainedError naming the first missing, unexpected or misshapen key."""
    missing = sorted(set(expected) - set(flat))
    if missing:
        raise PretrainedError(
            f"{path}: missing key {missing[0]!r} ({len(missing)} missing) for {what}"
        )
    unexpected = sorted(set(flat) - set(expected))
    if unexpected:
        raise PretrainedError(
            f"{path}: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected) for {what}"
        )
    for key, shape in expected.items():
        if flat[key].shape != shape:
            raise PretrainedError(
                f"{path}: {key!r} has shape {flat[key].shape}, {what} wants {shape}"
            )


def resolve_npz(value, builder, config) -> str | None:
    """A config's ResNet18 weights field (`init_visual_npz`, `object_npz`) as a file path.

    None stays None; 'synthetic' is the synthetic world's stand-in
    (`synthetic_assets.resnet18`: made on first use, cached beside the data); anything
    else is a path.
    """
    if not value:
        return None
    if value == SYNTHETIC:
        return synthetic_assets.resnet18(builder, config)
    return os.path.expanduser(value)
