"""What a dataset can make for itself: the synthetic world's teachers, their hints and its
stand-in for ImageNet's ResNet18.

Everything they need is in this repository, so training and --mode=prepare make them (by
process 0, in child processes of the PyTorch side, which this process never imports) and
cache them beside the data. The strings users type stay: a weights field
(`init_visual_npz`, `object_npz`) set to 'synthetic', the teacher name 'synthetic'.
Real teachers and real ImageNet weights are the user's (`teacher_hints.ensure_hints`
names the commands).
"""

from __future__ import annotations

import os
import sys

import jax

from avkd_jax import terminal

# The value of a config's weights field that names the synthetic world's stand-in for
# ImageNet: a ResNet18 of the student's layout pretrained on the world's labelled single
# objects (`python -m teachers.synthetic_pretrain`).
RESNET18 = "synthetic"
# Teachers whose weights this repository trains (`python -m teachers.synthetic`).
TEACHERS = ("synthetic",)


def assets_dir(builder) -> str:
    """Where the synthetic assets are cached: once per data directory."""
    return os.path.join(builder.data_dir_root, "synthetic_teachers")


def resnet18_path(builder, config) -> str:
    """The stand-in ResNet18 for `config`'s student (its width and image size)."""
    name = f"resnet18_w{config.model.width:g}_{config.image_size}px.npz"
    return os.path.join(assets_dir(builder), name)


def teacher_weights_path(builder) -> str:
    """The synthetic teachers' weights (`teachers.synthetic`)."""
    return os.path.join(assets_dir(builder), "teachers.pt")


def run(cmd: list[str]) -> None:
    """Runs a command of the PyTorch side (which this process never imports)."""
    terminal.run_child(cmd)


def _sync(name: str) -> None:
    """Every process waits for process 0's making of `name`."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

        multihost_utils.sync_global_devices(name)


def resnet18(builder, config) -> str:
    """`resnet18_path`, trained by process 0 when missing. Returns the path."""
    path = resnet18_path(builder, config)
    if not os.path.exists(path) and jax.process_index() == 0:
        run(
            [
                sys.executable,
                "-m",
                "teachers.synthetic_pretrain",
                f"--out={path}",
                f"--width={config.model.width:g}",
                f"--image_size={config.image_size}",
            ]
        )
    _sync("synthetic resnet18")
    return path


def make_hints(builder, config, split: str, teachers) -> None:
    """The hint shards of the synthetic `teachers` for `split`, extracted by process 0 (the
    teachers' weights trained first when missing); raises RuntimeError when the extraction
    leaves them incomplete."""
    from avkd_jax import teacher_hints  # pylint: disable=g-import-not-at-top  # It asks this module.

    if not teachers:
        return
    if jax.process_index() == 0:
        weights = teacher_weights_path(builder)
        if not os.path.exists(weights):
            run([sys.executable, "-m", "teachers.synthetic", f"--out={weights}"])
        for teacher in teachers:
            run(teacher_hints.extract_command(builder, config, split, teacher, weights))
    _sync(f"hints {split}")
    still = {t: teacher_hints.problem(builder, split, t, config.hints_dir) for t in teachers}
    still = {t: why for t, why in still.items() if why}
    if still:
        raise RuntimeError(f"Hint extraction finished but the hints are incomplete: {still}")


def make(builder, config) -> list[str]:
    """Makes what `config` uses that this repository can make: the stand-in ResNet18 for a
    weights field set to 'synthetic', the synthetic teachers' hints of the train split
    (when the loss uses hints) and of the evaluation split (OG-AVC-DETR's, which needs an
    object model). Returns what it made or found, one line each."""
    from avkd_jax import teacher_hints  # pylint: disable=g-import-not-at-top  # It asks this module.

    done = []
    if RESNET18 in (config.get("init_visual_npz"), config.get("object_npz")):
        done.append(f"stand-in ResNet18: {resnet18(builder, config)}")
    wanted = []
    if teacher_hints.needed_hints(config):
        wanted += [(config.train_split, t) for t in config.teachers if t in TEACHERS]
    if config.get("object_npz") and config.get("og_detr_teacher") in TEACHERS:
        wanted.append((config.eval_split, config.og_detr_teacher))
    for split, teacher in wanted:
        if teacher_hints.problem(builder, split, teacher, config.hints_dir):
            make_hints(builder, config, split, [teacher])
        done.append(f"{teacher} hints of the {split} split")
    return done
