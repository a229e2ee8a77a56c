"""Hint-extraction throughput per teacher, in samples/s, end to end (read, decode, teacher,
encode, write), with each teacher's default batch size.

    python benchmarks/extract_throughput.py                     # a 64-sample world, CPU
    python benchmarks/extract_throughput.py --num_samples=8 --teachers=synthetic
    python benchmarks/extract_throughput.py --data_dir=DIR --dataset=NAME/CONFIG --device=cuda

Teachers run with random weights built offline (full-size DETR-R50 from a config, full-size
Cnn14; the synthetic teachers untrained unless `--synthetic_weights` is given): the cost
does not depend on the weights. Without `--data_dir`, a synthetic world with 3 s clips
(the paper's length) is built in a temporary directory first. Records BENCHMARKS.md's
extraction table.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from teachers import common, data, extract


def build_world(data_dir: str, num_samples: int) -> str:
    """A prepared synthetic_av dataset of `num_samples` train scenes with 3 s clips."""
    from avkd_jax.datasets import synthetic_av

    config = synthetic_av.make_config(num_train=num_samples, num_test=1, audio_seconds=3.0)
    builder = synthetic_av.SyntheticAv(config=config, data_dir=data_dir)
    builder.download_and_prepare()
    return f"synthetic_av/{config.name}"


def load_teacher(name: str, device: str, synthetic_weights: str | None):
    if name == "synthetic" and synthetic_weights:
        return extract.make_teacher(name, synthetic_weights, device=device)
    return extract.make_teacher(name, random_weights=True, device=device)


def time_teacher(builder, split, name, device, synthetic_weights, hints_dir):
    teacher = load_teacher(name, device, synthetic_weights)
    # One batch first, untimed: one-time kernel selection and allocation.
    shard = data.split_shards(builder, split)[0]
    first = next(data.shard_batches(builder, shard, teacher.batch_size, teacher.inputs))
    first["sample_rate"] = data.sample_rate(builder)
    teacher.compute(first)
    start = time.perf_counter()
    stats = extract.extract_split(
        builder,
        split,
        teacher.name,
        lambda: teacher,
        source=teacher.source,
        hints_dir=hints_dir,
        overwrite=True,
        progress=False,
    )
    seconds = time.perf_counter() - start
    shapes = ", ".join(f"{k} {list(v)}" for k, v in teacher.shapes.items())
    return teacher.name, shapes, teacher.batch_size, stats["computed"], seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", help="a TFDS data directory (default: build a small world)")
    p.add_argument("--dataset", help="name/config of a prepared dataset in --data_dir")
    p.add_argument("--split", default="train")
    p.add_argument("--num_samples", type=int, default=64, help="size of the built world")
    p.add_argument("--teachers", default="synthetic,panns,detr,detr_backbone")
    p.add_argument("--device", default="cpu")
    p.add_argument("--synthetic_weights", help="trained synthetic teachers (.pt)")
    args = p.parse_args(argv)

    scratch = tempfile.mkdtemp(prefix="extract_bench_")
    try:
        data_dir, dataset = args.data_dir, args.dataset
        if data_dir is None:
            data_dir = os.path.join(scratch, "data")
            dataset = build_world(data_dir, args.num_samples)
        builder = data.open_dataset(data_dir, dataset)
        common.use_all_cores()
        rows = []
        for name in args.teachers.split(","):
            hints_dir = os.path.join(scratch, "hints", name)
            rows.append(
                time_teacher(
                    builder, args.split, name, args.device, args.synthetic_weights, hints_dir
                )
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    import torch

    print(
        f"\n{dataset} {args.split}, device {args.device}, {common.available_cores()} CPU "
        f"threads, torch {torch.__version__}, {platform.processor() or platform.machine()}\n"
    )
    print("| teacher | hints | batch | samples | seconds | samples/s |")
    print("|---|---|---|---|---|---|")
    for name, shapes, batch, n, seconds in rows:
        print(f"| {name} | {shapes} | {batch} | {n} | {seconds:.1f} | {n / seconds:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
