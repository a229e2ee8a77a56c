"""--mode=prepare: everything a run reads, made before training.

The dataset's TFRecords, the evaluation sets, the train/test overlap check, and what the
dataset can make for itself (`synthetic_assets`); for the real teachers, which hints are
missing and the `python -m teachers.extract` command that makes each. Training runs the
same steps first (`make demo` stays one command) and then refuses missing hints.
"""

from __future__ import annotations

import dataclasses

from avkd_jax import datasets, synthetic_assets, teacher_hints
from avkd_jax.datasets import overlap


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A prepared dataset.

    Attributes:
      builder: the training dataset's TFDS builder, prepared.
      eval_sets: name → `datasets.EvalSet`, every builder prepared.
      made: what `synthetic_assets.make` made or found, one line each.
      missing_hints: teacher → why its train-split hints are not usable (the loss's
        teachers only; empty when α2 = α3 = 0).
    """

    builder: object
    eval_sets: dict
    made: list
    missing_hints: dict


def prepare_data(config) -> tuple:
    """(the training dataset's builder, name → `datasets.EvalSet`), every builder prepared
    (built on first use, reused afterwards) and the test sets checked for clips of the
    train split."""
    builder = datasets.get_builder(config)
    builder.download_and_prepare()
    eval_sets = datasets.prepare_eval_sets(config, builder)
    overlap.check_train_test_overlap(
        builder, config.train_split, eval_sets, config.allow_test_overlap
    )
    return builder, eval_sets


def prepare(config) -> Prepared:
    """`prepare_data`, then `synthetic_assets.make`, then which real teachers' hints are
    missing. No batch-size check: that is training's."""
    builder, eval_sets = prepare_data(config)
    made = synthetic_assets.make(builder, config)
    missing = {}
    if teacher_hints.needed_hints(config):
        missing = teacher_hints.missing(builder, config, config.train_split, config.teachers)
    return Prepared(builder, eval_sets, made, missing)


def report(config, prepared: Prepared) -> str:
    """What `prepare` did, and the commands still to run, as text."""
    builder = prepared.builder
    lines = [f"Dataset {builder.name} in {builder.data_dir}:"]
    for split, info in builder.info.splits.items():
        lines.append(f"  {split}: {info.num_examples} examples")
    for name, s in prepared.eval_sets.items():
        lines.append(f"Evaluation set {name}: {s.builder.name} {s.split} ({s.fmt})")
    lines += [f"Made: {line}" for line in prepared.made]
    if prepared.missing_hints:
        lines.append(f"Teacher hints for the {config.train_split} split are not ready:")
        lines.append(
            teacher_hints.missing_report(
                builder, config, config.train_split, prepared.missing_hints
            )
        )
        lines.append("Run the command(s) above with the teacher's weights (docs/teachers.md).")
    elif teacher_hints.needed_hints(config):
        lines.append(f"Teacher hints of {tuple(config.teachers)}: ready")
    return "\n".join(lines)


def main(config) -> Prepared:
    """--mode=prepare: `prepare`, its report printed."""
    prepared = prepare(config)
    print(report(config, prepared), flush=True)
    return prepared
