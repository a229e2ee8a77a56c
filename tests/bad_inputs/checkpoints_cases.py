"""The bad-input cases of weights and checkpoints (.pth, .npz, orbax)."""

import os

import numpy as np
import torch
from helpers.configs import tiny_config
from helpers.torch_reference import random_avc, write_avc_npz

from avkd_jax import (
    checkpoints,
    models,
    pretrained,
)
from avkd_jax import state as train_state
from bad_inputs.cases import (
    Case,
    copied_run,
    cut,
    evil_pth,
    load_npz,
    pth_bytes,
    resnet_npz,
    restore,
)
from teachers import common, convert_resnet, torch_resnet


def _pth_truncated(ctx):
    path = ctx.path("weights.pth")
    torch.save(torch_resnet.resnet18(3, 10, 0.125).state_dict(), path)
    cut(path)
    return (lambda: common.load_checkpoint(path)), path


def _pth_string_tensor(ctx):
    path = ctx.path("weights.pth")
    sd = torch_resnet.resnet18(3, 10, 0.125).state_dict()
    sd["conv1.weight"] = "hello"
    torch.save(sd, path)
    return (lambda: convert_resnet.convert(path, ctx.path("o.npz"))), "'conv1.weight' is a str"


def _pth_missing_key(ctx):
    path = ctx.path("weights.pth")
    sd = torch_resnet.resnet18(3, 10, 0.125).state_dict()
    del sd["layer3.1.bn2.running_var"]
    torch.save(sd, path)
    return (
        lambda: convert_resnet.convert(path, ctx.path("o.npz")),
        f"{path}: missing key 'layer3.1.bn2.running_var'",
    )


def _npz_bytes(ctx, data):
    path = ctx.path("resnet18.npz")
    with open(path, "wb") as f:
        f.write(data)
    return load_npz(path), path


def _npz_object(ctx):
    path = ctx.path("resnet18.npz")
    with open(path, "wb") as f:
        np.savez(f, **{"params/conv1/kernel": np.array([{"a": 1}], dtype=object)})
    return load_npz(path), f"{path}: not a readable .npz file (Object arrays cannot be loaded"


def _npz_nan(ctx):
    def poison(arrays):
        arrays["batch_stats/bn1/var"][3] = np.nan

    path = resnet_npz(ctx, poison)
    return load_npz(path), f"{path}: 'batch_stats/bn1/var' holds NaN"


def _npz_shape(ctx):
    path = resnet_npz(ctx)
    return (
        lambda: pretrained.load_resnet18_npz(path, width=0.25),
        f"{path}: 'batch_stats/bn1/mean' has shape (8,)",
    )


def _npz_missing_key(ctx):
    path = resnet_npz(ctx, lambda a: a.pop("params/layer4_1/conv2/kernel"))
    return load_npz(path), f"{path}: missing key 'params/layer4_1/conv2/kernel'"


def _avc_other_width(ctx):
    config = tiny_config(ctx.tmp)
    npz = write_avc_npz(random_avc(0.25, config.model.embed_dim), ctx.path("avc.npz"))
    model = models.create_model(config)
    return (lambda: pretrained.load_avc_npz(npz, model, config)), "model.width=0.125"


def _orbax_damaged(ctx, damage):
    workdir, step_dir = copied_run(ctx)
    damage(step_dir)
    return restore(workdir), f"{os.path.dirname(step_dir)}: no checkpoint restores (step 1: "


def _biggest_data_file(step_dir):
    found = []
    for root, _, files in os.walk(os.path.join(step_dir, "default")):
        found += [os.path.join(root, f) for f in files if os.sep + "d" + os.sep in root + os.sep]
    return max(found, key=os.path.getsize)


def _import_into_used(ctx):
    workdir, _ = copied_run(ctx)
    config = tiny_config(ctx.tmp)
    return (
        lambda: train_state.import_npz(config, workdir, ctx.path("avc.npz")),
        f"{workdir}/checkpoints already holds a checkpoint (step 1)",
    )


CHECKPOINT_CASES = [
    Case(
        "pth-missing",
        "checkpoint",
        "the .pth does not exist",
        common.CheckpointError,
        lambda ctx: ((lambda: common.load_checkpoint(ctx.path("none.pth"))), "none.pth"),
        "`<path>: weights file does not exist`.",
    ),
    Case(
        "pth-runs-code",
        "checkpoint",
        "a .pth whose pickle would run code",
        common.CheckpointError,
        evil_pth,
        "`<path>: refused: the file holds more than tensors`: nothing runs (weights_only=True); "
        "re-save a plain state_dict.",
    ),
    Case(
        "pth-empty",
        "checkpoint",
        "0 bytes",
        common.CheckpointError,
        lambda ctx: pth_bytes(ctx, b""),
        "`<path>: not a readable PyTorch checkpoint (EOFError ...)`.",
    ),
    Case(
        "pth-not-a-checkpoint",
        "checkpoint",
        "text saved as .pth",
        common.CheckpointError,
        lambda ctx: pth_bytes(ctx, b"hello"),
        "`<path>: not a readable PyTorch checkpoint (KeyError ...)`.",
    ),
    Case(
        "pth-truncated",
        "checkpoint",
        "a .pth cut in half",
        common.CheckpointError,
        _pth_truncated,
        "`<path>: not a readable PyTorch checkpoint (... central directory ...)`: download again.",
    ),
    Case(
        "pth-non-tensor-value",
        "checkpoint",
        "a state_dict entry that is a string, not a tensor (wrong dtype)",
        convert_resnet.ConversionError,
        _pth_string_tensor,
        "`'<key>' is a str, not a tensor of numbers`.",
    ),
    Case(
        "pth-missing-key",
        "checkpoint",
        "a ResNet18 state_dict without one tensor",
        convert_resnet.ConversionError,
        _pth_missing_key,
        "`<path>: missing key '<key>'`: not torchvision's ResNet18.",
    ),
    Case(
        "npz-missing",
        "checkpoint",
        "`init_visual_npz` names no file",
        FileNotFoundError,
        lambda ctx: (load_npz(ctx.path("nothing.npz")), "nothing.npz"),
        "FileNotFoundError with the convert_resnet command.",
    ),
    Case(
        "npz-not-a-zip",
        "checkpoint",
        "a .npz that is not a zip (truncated download)",
        pretrained.PretrainedError,
        lambda ctx: _npz_bytes(ctx, b"PK\x03\x04 not really"),
        "`<path>: not a readable .npz file (...)`.",
    ),
    Case(
        "npz-pickled-object",
        "checkpoint",
        "a .npz holding a pickled object array (its pickle could run code)",
        pretrained.PretrainedError,
        _npz_object,
        "Refused (`allow_pickle=False`): `<path>: not a readable .npz file`.",
    ),
    Case(
        "npz-nan",
        "checkpoint",
        "a .npz with a NaN weight",
        pretrained.PretrainedError,
        _npz_nan,
        "`<path>: '<key>' holds NaN or infinite values`: convert again from a good .pth.",
    ),
    Case(
        "npz-wrong-shape",
        "checkpoint",
        "a ResNet18 .npz of another width than the student's",
        pretrained.PretrainedError,
        _npz_shape,
        "`<path>: '<key>' has shape ..., a ResNet18 trunk (... width w) wants ...`.",
    ),
    Case(
        "npz-missing-key",
        "checkpoint",
        "a ResNet18 .npz without one array",
        pretrained.PretrainedError,
        _npz_missing_key,
        "`<path>: missing key '<key>'`.",
    ),
    Case(
        "avc-npz-other-config",
        "checkpoint",
        "the authors' converted AVC for another `model.width`",
        pretrained.PretrainedError,
        _avc_other_width,
        "`<path>: '<key>' has shape ..., the AVC of this config (model.width=...)`: set "
        "model.width / model.embed_dim as convert_avc printed.",
    ),
    Case(
        "orbax-truncated-array",
        "checkpoint",
        "a checkpoint's array data file cut short",
        checkpoints.CheckpointRestoreError,
        lambda ctx: _orbax_damaged(ctx, lambda d: cut(_biggest_data_file(d))),
        "`<workdir>/checkpoints: no checkpoint restores (step <n>: ...)`: use a fresh --workdir "
        "(a damaged newest step alone is skipped, with a warning, for the newest that restores).",
    ),
    Case(
        "orbax-missing-metadata",
        "checkpoint",
        "a checkpoint's _METADATA deleted",
        checkpoints.CheckpointRestoreError,
        lambda ctx: _orbax_damaged(
            ctx, lambda d: os.remove(os.path.join(d, "default", "_METADATA"))
        ),
        "As above.",
    ),
    Case(
        "import-into-used-workdir",
        "checkpoint",
        "`--mode=import` into a workdir that holds a checkpoint",
        FileExistsError,
        _import_into_used,
        "Import into a fresh --workdir.",
    ),
]
