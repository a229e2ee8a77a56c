"""Object-guided inference (paper §3.5, docs/design.md, Evaluation): the student's and the
object model's maps, the DETR maps and the OG-AVC / OG-AVC-DETR fusions."""

from __future__ import annotations

import dataclasses
import os
import shlex

import jax.numpy as jnp
import numpy as np

from avkd_jax import conv_impl as conv_impl_lib
from avkd_jax import errors, models, pretrained, teacher_hints
from avkd_jax.datasets import hint_shards
from avkd_jax.eval import protocol
from avkd_jax.eval.protocol import protocol_maps

STUDENT = "AVC"
OG = "OG-AVC"
OG_DETR = "OG-AVC-DETR"
# The variants a maps picture shows, as the paper's Fig. 3 (baselines would crowd it).
PICTURE_VARIANTS = (STUDENT, OG, OG_DETR)


def model_maps(model, variables, image, pcm):
    """Localisation maps `[B, h, w]`: the diagonal S[i, i] of docs/design.md, Evaluation (τ omitted: the
    maps are min-max normalised afterwards, so a positive scale changes nothing)."""
    audio_emb, visual_map = model.apply(variables, image, pcm, train=False)
    return jnp.einsum("bhwc,bc->bhw", visual_map, audio_emb)


def object_maps(trunk, variables, image):
    """EZ-VSL's object map: uint8 `[B, H, W, 3]` → `[B, H/32, W/32]`, the mean over channels
    of |layer4| of an ImageNet ResNet18 (`models.ResNet18Trunk`) on the normalised image."""
    features = trunk.apply(variables, models.image_input(image), train=False)
    return jnp.mean(jnp.abs(features), axis=-1)


def detr_maps(hints, ids=None) -> np.ndarray:
    """DETR maps `[B, h, w]`, NaN everywhere where DETR kept no query → `[B, 224, 224]`.

    A map with nothing detected counts as zeros: in OG-AVC-DETR it adds the same constant
    to every cell of the sum, which cannot change which cells pass its median threshold.
    A map that is NaN in some cells only is corrupt: HintError, naming its id.
    """
    hints = np.asarray(hints, np.float32)
    nan = np.isnan(hints)
    nothing = nan.all(axis=(-2, -1))
    partly = nan.any(axis=(-2, -1)) & ~nothing
    if partly.any():
        k = int(np.flatnonzero(partly)[0])
        who = f"id {ids[k]}" if ids is not None else f"row {k}"
        raise errors.HintError(
            f"the DETR map of {who} is NaN in some cells only: a corrupt hint (re-extract it)"
        )
    return protocol_maps(np.where(nothing[:, None, None], np.float32(0), hints))


# OG-AVC's rules (`config.og_fusion`): the paper's text, and the authors' VGG-SS code.
OG_RULES = ("paper", "authors")


def check_og_rule(rule: str) -> None:
    """Raises ValueError naming `config.og_fusion` unless `rule` is one of `OG_RULES`."""
    if rule not in OG_RULES:
        raise ValueError(f"config.og_fusion={rule!r}: expected one of {OG_RULES}")


def fuse_og(avc, obj, alpha: float, rule: str = "paper") -> np.ndarray:
    """OG-AVC of protocol maps `[..., 224, 224]` → `[..., 224, 224]` (α = 0.4 in both):
    'paper' (1 − α)·AVC + α·object; 'authors' min-max normalise(AVC + α·object), per map."""
    check_og_rule(rule)
    avc, obj = np.asarray(avc), np.asarray(obj)
    if rule == "authors":
        return protocol.normalize_map(avc + alpha * obj)
    return (1.0 - alpha) * avc + alpha * obj


def fuse_og_detr(avc, obj, detr) -> np.ndarray:
    """OG-AVC-DETR: (AVC + object + DETR) / 3, of protocol maps `[..., 224, 224]`."""
    return (np.asarray(avc) + np.asarray(obj) + np.asarray(detr)) / 3.0


@dataclasses.dataclass(frozen=True)
class ObjectModel:
    """The object-guided variants' ImageNet ResNet18.

    Attributes:
      width: its channel multiplier (conv1's output channels / 64), not the student's.
      variables: `models.ResNet18Trunk(width)`'s {'params', 'batch_stats'}.
      path: the `.npz` it was read from.
      conv_impl: its convolution and max-pool (`avkd_jax.conv_impl`).
    """

    width: float
    variables: dict
    path: str = ""
    conv_impl: str = conv_impl_lib.DEFAULT

    @property
    def trunk(self) -> models.ResNet18Trunk:
        return models.ResNet18Trunk(self.width, **conv_impl_lib.layers(self.conv_impl))


def load_object_model(config, builder) -> tuple[ObjectModel | None, str | None]:
    """`config.object_npz` as an ObjectModel, or (None, why the OG variants are skipped).

    A file that is not there skips them; a file that is there but unreadable or not a
    ResNet18 raises `errors.PretrainedError`.
    """
    if not config.get("object_npz"):
        return None, (
            "no object model: set --config.object_npz to torchvision's ImageNet ResNet18 "
            "converted by `python -m teachers.convert_resnet` (docs/evaluation.md, Object-guided inference)"
        )
    path = pretrained.resolve_npz(config.object_npz, builder, config)
    if not os.path.exists(path):
        return None, f"the object model {path} (config.object_npz) does not exist"
    variables, width = pretrained.load_object_npz(path)
    conv_impl = config.model.get("conv_impl", conv_impl_lib.DEFAULT)
    return ObjectModel(width, variables, path, conv_impl), None


def detr_source(config, builder, split) -> tuple[teacher_hints.HintSource | None, str | None]:
    """The DETR maps of `split` for OG-AVC-DETR, or (None, why the variant is skipped).

    Missing hints of a teacher this side can run (the synthetic one) are made here; a real
    teacher's are not, and the reason holds the `teachers.extract` command that makes them.
    A truncated hint shard raises (`errors.HintError`).
    """
    teacher = config.get("og_detr_teacher")
    if not teacher:
        return None, "no DETR teacher: config.og_detr_teacher is empty"
    why = teacher_hints.problem(builder, split, teacher, config.hints_dir)
    if why and teacher in teacher_hints.SELF_SERVE_TEACHERS:
        teacher_hints.make_hints(builder, config, split, [teacher])
    elif why:
        command = shlex.join(teacher_hints.extract_command(builder, config, split, teacher))
        return None, f"{teacher} hints of the {split} split: {why}; extract them: {command}"
    try:
        source = teacher_hints.source_for(
            builder, config, split, teacher, [hint_shards.VISUAL_HINT]
        )
    except ValueError as e:
        return None, f"config.og_detr_teacher={teacher!r}: {e}"
    shape = source.spec.shapes[hint_shards.VISUAL_HINT]
    if len(shape) != 2:
        return None, (
            f"teacher {teacher!r}'s visual_hint is a {shape} feature map, not a 2-D map "
            "(OG-AVC-DETR wants DETR's attention map: og_detr_teacher='detr')"
        )
    teacher_hints.check_counts(builder, split, [source])
    return source, None
