"""Hint shards that mirror a prepared TFDS split record for record (docs/design.md, Data flow).

    python -m teachers.extract --data_dir=data --dataset=synthetic_av/CONFIG --split=train \
        --teacher=synthetic --weights=data/synthetic_teachers/teachers.pt --verify

For every data shard `<name>.tfrecord-NNNNN-of-MMMMM` it writes `<name>...hints-<teacher>`
(beside it, or in `--hints_dir`) whose i-th record holds the i-th data record's `id` and
the teacher's hints as float16 (`avkd_jax/datasets/hint_shards.py` defines the format),
then the split's spec file. Each shard is written to a temporary name and renamed when
complete; finished shards are kept on a re-run and temporary files of dead runs removed.
Batches restart at every shard, so a resumed run computes exactly the batches an
uninterrupted one would, and the same inputs give bit-identical files.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import numpy as np

from avkd_jax import errors, files
from avkd_jax.datasets import hint_shards
from teachers import common, data

TEACHERS = ("detr", "detr_backbone", "panns", "synthetic")
logger = logging.getLogger("teachers")


def teacher_name(teacher: str, visual_hint: str = "attention") -> str:
    """The hint files' suffix: `--teacher=detr --visual_hint=backbone` is `detr_backbone`."""
    if teacher == "detr" and visual_hint == "backbone":
        return "detr_backbone"
    return teacher


def make_teacher(
    teacher: str,
    weights: str | None = None,
    *,
    random_weights: bool = False,
    visual_hint: str = "attention",
    grid: int = 7,
    device: str = "cpu",
) -> common.Teacher:
    """Loads a teacher by name (the PyTorch libraries are imported only here)."""
    name = teacher_name(teacher, visual_hint)
    if name in ("detr", "detr_backbone"):
        from teachers import detr

        variant = detr.BACKBONE if name == "detr_backbone" else detr.ATTENTION
        return detr.make_teacher(
            weights, random_weights=random_weights, variant=variant, grid=grid, device=device
        )
    if name == "panns":
        from teachers import panns

        return panns.make_teacher(weights, random_weights=random_weights, device=device)
    if name == "synthetic":
        from teachers import synthetic

        return synthetic.make_teacher(weights, random_weights=random_weights, device=device)
    raise ValueError(f"--teacher={teacher}: expected one of {TEACHERS}")


# ------------------------------------------------------------------------------ files


def remove_stale_temps(hint_files: list[str]) -> list[str]:
    """Deletes `<hint file>.tmp.<pid>` files whose writer is dead; returns their paths."""
    removed = []
    for path in hint_files:
        directory, base = os.path.split(path)
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            rest = name[len(base) :]
            if name.startswith(base) and rest.startswith(".tmp."):
                pid = rest[len(".tmp.") :]
                if pid.isdigit() and not files.pid_alive(int(pid)):
                    os.remove(os.path.join(directory, name))
                    removed.append(os.path.join(directory, name))
    return removed


def _same_teacher(found: hint_shards.HintSpec, wanted: hint_shards.HintSpec, path: str) -> None:
    """Refuses to mix hints of two teachers (other weights, other shapes) in one split."""
    if (found.teacher, found.source, found.shapes) != (
        wanted.teacher,
        wanted.source,
        wanted.shapes,
    ):
        raise errors.HintError(
            f"{path}: these hints come from {found.teacher} weights {found.source!r} with "
            f"shapes {found.shapes}, not {wanted.source!r} with {wanted.shapes}: pass "
            "--overwrite to replace them, or another --hints_dir"
        )


# ---------------------------------------------------------------------------- writing


def write_hint_shard(builder, data_shard, out, teacher, spec, batch_size, rate, bar) -> int:
    """Runs `teacher` over one data shard into `out` (temp file, renamed when complete)."""
    import tensorflow as tf

    count = 0
    with files.atomic_path(out) as tmp, tf.io.TFRecordWriter(tmp) as writer:
        for batch in data.shard_batches(builder, data_shard, batch_size, teacher.inputs):
            batch["sample_rate"] = rate
            hints = teacher.compute(batch)
            for i, example_id in enumerate(batch["id"]):
                values = {k: np.asarray(v[i], np.float32) for k, v in hints.items()}
                for name, value in values.items():
                    if not hint_shards.finite_or_nothing_found(name, value):
                        raise errors.HintError(
                            f"{data_shard}: id {example_id}: the {teacher.name} teacher "
                            f"gave {name} with NaN or inf"
                        )
                writer.write(hint_shards.encode_example(example_id, values, spec))
            count += len(batch["id"])
            bar.update(len(batch["id"]))
    return count


def _prepare_outputs(outs, spec_file, partial_file, name, source, overwrite) -> None:
    """Removes what --overwrite replaces and stale temporaries; refuses hints on disk that
    another teacher (other weights) wrote."""
    os.makedirs(os.path.dirname(spec_file), exist_ok=True)
    if overwrite:
        for path in [*outs, spec_file, partial_file]:
            if os.path.exists(path):
                os.remove(path)
    remove_stale_temps(outs)
    for path in (spec_file, partial_file):
        if os.path.exists(path):
            found = hint_shards.read_spec(path)
            _same_teacher(found, hint_shards.HintSpec(name, found.shapes, source), path)


def _compute_missing(
    builder, todo, pending, total, name, load_teacher, spec, partial_file, batch_size, progress
):
    """Runs the teacher over the data shards in `todo` (pairs of data shard, hint shard);
    returns (the spec, the examples computed)."""
    from avkd_jax import terminal

    teacher = load_teacher()
    wanted = hint_shards.HintSpec(name, teacher.shapes, teacher.source, total)
    if spec is not None:
        _same_teacher(spec, wanted, partial_file)
    hint_shards.write_spec(partial_file, wanted)  # Pins the teacher until the split is done.
    rate = data.sample_rate(builder) if "audio" in teacher.inputs else 0
    computed = 0
    with terminal.progress_bar(
        total=pending, desc=f"{name} hints", unit="sample", disable=not progress
    ) as bar:
        for data_shard, out in todo:
            computed += write_hint_shard(
                builder,
                data_shard,
                out,
                teacher,
                wanted,
                batch_size or teacher.batch_size,
                rate,
                bar,
            )
    return wanted, computed


def extract_split(
    builder,
    split: str,
    name: str,
    load_teacher,
    *,
    source: str,
    hints_dir: str | None = None,
    batch_size: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Writes the missing hint shards of `split` and then its spec.

    Args:
      builder: the prepared dataset (`data.open_dataset`).
      name: the hint files' suffix (`teacher_name`).
      load_teacher: () → `common.Teacher`, called only when a shard needs computing.
      source: the weights' description that the teacher will record (checked against
        hints already on disk before anything is loaded).

    Returns:
      {'shards', 'written', 'kept', 'examples', 'computed' (examples run through the
      teacher now), 'seconds', 'spec'}.
    """
    shards = data.split_shards(builder, split)
    outs = [hint_shards.hint_path(s, name, hints_dir) for s in shards]
    spec_file = hint_shards.spec_path(shards[0], name, hints_dir)
    partial_file = f"{spec_file}.partial"
    _prepare_outputs(outs, spec_file, partial_file, name, source, overwrite)
    todo = [(s, o) for s, o in zip(shards, outs) if not os.path.exists(o)]
    total = int(builder.info.splits[split].num_examples)
    start = time.time()
    computed = 0
    spec = hint_shards.read_spec(partial_file) if os.path.exists(partial_file) else None
    if todo:
        pending = sum(
            n
            for o, n in zip(outs, builder.info.splits[split].shard_lengths)
            if not os.path.exists(o)
        )
        spec, computed = _compute_missing(
            builder,
            todo,
            pending,
            total,
            name,
            load_teacher,
            spec,
            partial_file,
            batch_size,
            progress,
        )
    if spec is None:  # Every shard was there already.
        if not os.path.exists(spec_file):
            raise errors.HintError(
                f"{spec_file}: missing although every hint shard exists: pass --overwrite"
            )
        spec = hint_shards.read_spec(spec_file)
    if not os.path.exists(spec_file) or todo:
        hint_shards.write_spec(spec_file, spec)
    if os.path.exists(partial_file):
        os.remove(partial_file)
    return {
        "shards": len(shards),
        "written": len(todo),
        "kept": len(shards) - len(todo),
        "examples": total,
        "computed": computed,
        "seconds": time.time() - start,
        "spec": spec,
    }


def verify_split(builder, split: str, name: str, hints_dir: str | None = None) -> int:
    """Checks every hint shard of `split` against its data shard; returns the record count.

    Raises:
      HintError naming the shard (missing, truncated, misaligned ids, unexpected NaN).
    """
    shards = data.split_shards(builder, split)
    spec_file = hint_shards.spec_path(shards[0], name, hints_dir)
    spec = hint_shards.read_spec(spec_file)
    count = sum(
        hint_shards.verify_shard(s, hint_shards.hint_path(s, name, hints_dir), spec) for s in shards
    )
    if count != spec.num_examples:
        raise errors.HintError(
            f"{spec_file}: says {spec.num_examples} examples, the hint shards hold {count}"
        )
    return count


# -------------------------------------------------------------------------------- CLI


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m teachers.extract",
        description="Write teacher hint shards beside a prepared TFDS split.",
    )
    p.add_argument("--data_dir", required=True, help="the TFDS data directory")
    p.add_argument("--dataset", required=True, help="name, name/config or name/config:version")
    p.add_argument("--split", default="train")
    p.add_argument("--teacher", required=True, choices=TEACHERS)
    p.add_argument("--weights", help="DETR directory, Cnn14 .pth, or synthetic teachers .pt")
    p.add_argument(
        "--random_weights",
        action="store_true",
        help="run the teacher untrained (tests and benchmarks only; recorded in the spec)",
    )
    p.add_argument(
        "--visual_hint",
        default="attention",
        choices=("attention", "backbone"),
        help="DETR: the cross-attention map [25, 25] (released code) or the ResNet-50 "
        "backbone map [grid, grid, 2048] (paper text), written as teacher detr_backbone",
    )
    p.add_argument("--grid", type=int, default=7, help="backbone variant: the student's grid")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch_size", type=int, default=None, help="default: the teacher's")
    p.add_argument("--hints_dir", default=None, help="default: beside the data shards")
    p.add_argument("--overwrite", action="store_true", help="redo this teacher's hints")
    p.add_argument("--verify", action="store_true", help="check every hint shard afterwards")
    p.add_argument("--no_progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    name = teacher_name(args.teacher, args.visual_hint)
    if name == "detr_backbone":
        args.teacher, args.visual_hint = "detr", "backbone"
    try:
        source = common.weights_source(args.weights, args.random_weights, args.teacher)
        builder = data.open_dataset(args.data_dir, args.dataset)
        common.use_all_cores()

        def load():
            return make_teacher(
                args.teacher,
                args.weights,
                random_weights=args.random_weights,
                visual_hint=args.visual_hint,
                grid=args.grid,
                device=args.device,
            )

        stats = extract_split(
            builder,
            args.split,
            name,
            load,
            source=source,
            hints_dir=args.hints_dir,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        verified = verify_split(builder, args.split, name, args.hints_dir) if args.verify else None
    except (ValueError, OSError) as e:  # HintError, DatasetError, CheckpointError, ...
        print(f"error: {e}", file=sys.stderr)
        return 1
    where = args.hints_dir or builder.data_dir
    rate = ""
    if stats["written"]:
        rate = f", {stats['computed'] / max(stats['seconds'], 1e-9):.1f} samples/s"
    line = (
        f"{args.dataset} {args.split}: {name} hints in {where}: {stats['shards']} shards "
        f"({stats['written']} written, {stats['kept']} kept), {stats['examples']} examples{rate}"
    )
    if verified is not None:
        line += f"; verified {verified} records"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
