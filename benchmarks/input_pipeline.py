"""Training input pipeline throughput (read, decode, augment, zip the hints, batch to
numpy), in samples/s and samples/s per tf.data thread.

    python benchmarks/input_pipeline.py                          # both sets, 1 and all cores
    python benchmarks/input_pipeline.py --sets=paper224 --num_samples=64 --batches=4

Sets: `synthetic` is configs/synthetic.py's world under --data_dir (prepared on first
use; its synthetic teachers' hints when they are there, else none, as the table says);
`paper224` is a synthetic world of --num_samples scenes written in a temporary directory
at the paper's shapes (256² JPEG frames → 246 resize → 224² crop, 3 s at 22,050 Hz) with
random hints of the real teachers' shapes (PANNs 2048-d, DETR 25×25). tf.data's threads
are limited with a private thread pool of the size asked; the first `--warmup` batches
(the shuffle buffer's fill) are not timed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from train_step import cpu_name, load_config

from avkd_jax import datasets, input_pipeline, teacher_hints
from avkd_jax.datasets import hint_shards

BENCH_TEACHER = "benchmark"


def write_random_hints(builder, split: str, embed_dim: int) -> None:
    """Random hint shards of the real teachers' shapes beside `split`'s data shards."""
    spec = hint_shards.HintSpec(
        BENCH_TEACHER,
        {hint_shards.AUDIO_HINT: (embed_dim,), hint_shards.VISUAL_HINT: (25, 25)},
        source="random",
        num_examples=builder.info.splits[split].num_examples,
    )
    rng = np.random.default_rng(0)
    files = input_pipeline.split_files(builder, split)
    for data_file in files:
        with tf.io.TFRecordWriter(hint_shards.hint_path(data_file, BENCH_TEACHER)) as w:
            for example_id in hint_shards.data_ids(data_file):
                hints = {n: rng.random(s, dtype=np.float32) for n, s in spec.shapes.items()}
                w.write(hint_shards.encode_example(example_id, hints, spec))
    hint_shards.write_spec(hint_shards.spec_path(files[0], BENCH_TEACHER), spec)


def paper_config(data_dir: str, num_samples: int, batch_size: int):
    """A synthetic world at the paper's image and audio shapes, with random hints."""
    config = load_config("flickr10k", batch_size)
    config.dataset = "synthetic_av"
    config.dataset_kwargs.num_train = num_samples
    config.dataset_kwargs.num_test = 1
    config.dataset_kwargs.world_seed = 0
    config.data_dir = data_dir
    config.teachers = (BENCH_TEACHER,)
    config.shuffle_buffer = num_samples
    builder = datasets.get_builder(config)
    builder.download_and_prepare()
    write_random_hints(builder, config.train_split, config.model.embed_dim)
    return config, builder, "random hints (2048-d, 25×25)"


def synthetic_config(data_dir: str, batch_size: int | None):
    config = load_config("synthetic", batch_size)
    config.data_dir = data_dir
    builder = datasets.get_builder(config)
    builder.download_and_prepare()
    missing = [
        t
        for t in config.teachers
        if teacher_hints.problem(builder, config.train_split, t, config.hints_dir)
    ]
    if missing:
        config.alpha_audio = config.alpha_visual = 0.0
        return config, builder, f"no hints ({', '.join(missing)} not extracted)"
    return config, builder, f"{', '.join(config.teachers)} hints"


def samples_per_second(builder, config, threads: int, warmup: int, batches: int) -> float:
    """Steady-state samples/s of epoch 0's training batches with `threads` tf.data threads."""
    sources = teacher_hints.hint_sources(builder, config, config.train_split)
    ds = input_pipeline.train_dataset(builder, config, 0, config.batch_size, sources).repeat()
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    ds = ds.with_options(options)
    files = input_pipeline.process_train_files(builder, config, sources)
    it = input_pipeline.numpy_batches(ds, files)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * config.batch_size / (time.perf_counter() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default="synthetic,paper224")
    p.add_argument("--data_dir", default=os.path.join(REPO, "data"), help="the synthetic world")
    p.add_argument("--num_samples", type=int, default=512, help="scenes of the paper224 set")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--threads", default="", help="tf.data threads to try (default: 1,cores)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batches", type=int, default=10)
    args = p.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    threads = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, cores})

    scratch = tempfile.mkdtemp(prefix="pipeline_bench_")
    rows = []
    try:
        for name in args.sets.split(","):
            if name == "synthetic":
                config, builder, hints = synthetic_config(args.data_dir, args.batch_size)
            elif name == "paper224":
                config, builder, hints = paper_config(
                    os.path.join(scratch, "data"), args.num_samples, args.batch_size
                )
            else:
                p.error(f"--sets: unknown set {name!r}")
            for n in threads:
                sps = samples_per_second(builder, config, n, args.warmup, args.batches)
                shape = f"{config.image_size}², {config.audio_seconds:g} s"
                rows.append((name, shape, hints, n, sps))
                print(f"# {name} {n} threads: {sps:.1f} samples/s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"\n{cpu_name()}, {cores} cores; tensorflow {tf.__version__}; batch {args.batch_size}\n")
    print("| set | input | hints | tf.data threads | samples/s | samples/s per thread |")
    print("|---|---|---|---|---|---|")
    for name, shape, hints, n, sps in rows:
        print(f"| {name} | {shape} | {hints} | {n} | {sps:.1f} | {sps / n:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
