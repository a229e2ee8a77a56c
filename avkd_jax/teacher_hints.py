"""Which teacher hints a config trains with, where their shards are, and getting them made.

The hints themselves come from the PyTorch tool (`python -m teachers.extract`), which this
side never imports: the teachers this repository trains are made by `synthetic_assets`, for
the real teachers (whose weights only the user has) training stops with the exact command.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys

from avkd_jax import errors, input_pipeline, synthetic_assets
from avkd_jax.datasets import hint_shards

# Teachers the trainer may build and run by itself: everything they need is in this repo.
SELF_SERVE_TEACHERS = synthetic_assets.TEACHERS


@dataclasses.dataclass(frozen=True)
class HintSource:
    """One teacher's hint shards for one split.

    Attributes:
      teacher: the hint-shard suffix.
      spec: the split's `HintSpec`.
      names: the hints read from these shards (a subset of `spec.shapes`).
      hints_dir: where the shards are (None: beside the data shards).
    """

    teacher: str
    spec: hint_shards.HintSpec
    names: tuple
    hints_dir: str | None = None

    def file_for(self, data_file: str) -> str:
        """The hint shard of `data_file`."""
        return hint_shards.hint_path(data_file, self.teacher, self.hints_dir)


def needed_hints(config) -> tuple[str, ...]:
    """The hint tensors the loss uses: α2 > 0 needs `audio_hint`, α3 > 0 `visual_hint`."""
    names = []
    if config.alpha_audio:
        names.append(hint_shards.AUDIO_HINT)
    if config.alpha_visual:
        names.append(hint_shards.VISUAL_HINT)
    return tuple(names)


def problem(builder, split, teacher, hints_dir) -> str | None:
    """Why `teacher`'s hints for `split` cannot be used as they are; None when complete."""
    files = input_pipeline.split_files(builder, split)
    spec_file = hint_shards.spec_path(files[0], teacher, hints_dir)
    if not os.path.exists(spec_file):
        return f"no hints extracted ({spec_file} is missing)"
    spec = hint_shards.read_spec(spec_file)
    expected = builder.info.splits[split].num_examples
    if spec.num_examples != expected:
        return f"{spec_file} covers {spec.num_examples} examples, the split has {expected}"
    for f in files:
        if not os.path.exists(hint_shards.hint_path(f, teacher, hints_dir)):
            return f"{hint_shards.hint_path(f, teacher, hints_dir)} is missing"
    return None


def _dataset_arg(builder) -> str:
    name = builder.name
    if builder.builder_config is not None:
        name += f"/{builder.builder_config.name}"
    return f"{name}:{builder.version}"


def extract_command(builder, config, split, teacher, weights="/path/to/weights") -> list[str]:
    """The `teachers.extract` command line that makes `teacher`'s hints for `split`."""
    cmd = [
        sys.executable,
        "-m",
        "teachers.extract",
        f"--data_dir={builder.data_dir_root}",
        f"--dataset={_dataset_arg(builder)}",
        f"--split={split}",
        f"--teacher={teacher}",
        f"--weights={weights}",
    ]
    if teacher == "detr_backbone":  # The feature map is pooled to the student's grid.
        cmd.append(f"--grid={config.image_size // 32}")
    if config.hints_dir:
        cmd.append(f"--hints_dir={config.hints_dir}")
    return cmd


def missing(builder, config, split: str, teachers) -> dict[str, str]:
    """teacher → why its hints for `split` cannot be used, for those of `teachers` whose
    hints are not complete."""
    why = {t: problem(builder, split, t, config.hints_dir) for t in teachers}
    return {t: reason for t, reason in why.items() if reason}


def missing_report(builder, config, split: str, why: dict[str, str]) -> str:
    """Each teacher of `why` (teacher → reason), its reason, and the command that makes its
    hints."""
    return "\n".join(
        f"  {t}: {reason}\n    {shlex.join(extract_command(builder, config, split, t))}"
        for t, reason in why.items()
    )


def make_hints(builder, config, split: str, teachers) -> None:
    """Makes `teachers`' hint shards for `split` complete, where this side can.

    The teachers this repository trains are made by `synthetic_assets`; a real teacher's
    missing hints raise FileNotFoundError with the commands that extract them (its weights
    are the user's).
    """
    absent = missing(builder, config, split, teachers)
    manual = {t: why for t, why in absent.items() if t not in synthetic_assets.TEACHERS}
    if manual:
        raise FileNotFoundError(
            f"Teacher hints for the {split} split are not ready:\n"
            + missing_report(builder, config, split, manual)
            + "\nRun the command(s) above with the teacher's weights (docs/teachers.md)."
        )
    synthetic_assets.make_hints(builder, config, split, list(absent))


def ensure_hints(builder, config, split: str) -> None:
    """Makes sure every teacher the loss needs has complete hint shards for `split`
    (`make_hints` for `config.teachers`; nothing when α2 = α3 = 0)."""
    if not needed_hints(config):
        return
    if not config.teachers:
        raise ValueError(
            f"config.alpha_audio={config.alpha_audio:g} / alpha_visual="
            f"{config.alpha_visual:g} need teacher hints, but config.teachers is empty: "
            "name the teachers or set the weights to 0."
        )
    try:
        make_hints(builder, config, split, config.teachers)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"{e}\nOr set that teacher's weight (alpha_audio / alpha_visual) to 0."
        ) from None


def source_for(builder, config, split: str, teacher: str, names) -> HintSource:
    """`teacher`'s hint shards of `split` as a source of the hints `names`."""
    files = input_pipeline.split_files(builder, split)
    spec = hint_shards.read_spec(hint_shards.spec_path(files[0], teacher, config.hints_dir))
    absent = [n for n in names if n not in spec.shapes]
    if absent:
        raise ValueError(f"Teacher {teacher!r}'s hints hold {sorted(spec.shapes)}, not {absent}")
    return HintSource(teacher, spec, tuple(names), config.hints_dir)


def hint_sources(builder, config, split: str) -> list[HintSource]:
    """The hint shards to read beside `split`'s data shards, one source per teacher used.

    Each needed hint comes from the first teacher in `config.teachers` whose shards hold
    it; teachers that provide nothing needed are not read at all.
    """
    names = needed_hints(config)
    if not names:
        return []
    files = input_pipeline.split_files(builder, split)
    sources, found = [], set()
    for teacher in config.teachers:
        spec = hint_shards.read_spec(hint_shards.spec_path(files[0], teacher, config.hints_dir))
        take = tuple(n for n in names if n in spec.shapes and n not in found)
        if not take:
            continue
        found.update(take)
        sources.append(HintSource(teacher, spec, take, config.hints_dir))
    absent = [n for n in names if n not in found]
    if absent:
        raise ValueError(
            f"No teacher in config.teachers={tuple(config.teachers)} provides {absent}: "
            "add one that does, or set its weight (alpha_audio / alpha_visual) to 0."
        )
    return sources


def check_counts(builder, split: str, sources: list[HintSource]) -> None:
    """Every hint shard has exactly as many records as its data shard (a truncated hint
    shard would otherwise end the zip early and silently drop data)."""
    files = input_pipeline.split_files(builder, split)
    lengths = builder.info.splits[split].shard_lengths
    for source in sources:
        for data_file, n in zip(files, lengths):
            path = source.file_for(data_file)
            got = hint_shards.count_records(path)
            if got != n:
                raise errors.HintError(
                    f"{path}: {got} records, its data shard has {n}: truncated or stale "
                    "(re-run the extraction)"
                )
