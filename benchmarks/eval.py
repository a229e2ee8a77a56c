"""Evaluation throughput in maps/s: the model's localisation maps alone, and the whole
protocol on the synthetic world's test split (read, decode, resize, maps, upsample,
threshold, cIoU).

    python benchmarks/eval.py                          # synthetic and paper shapes
    python benchmarks/eval.py --shapes=synthetic --batches=2 --no-protocol

Model maps: `fusion.model_maps` jitted, on a fixed random batch of `eval_batch_size`
already on the device, median of `--batches` calls after one untimed. Protocol:
`eval.evaluator.evaluate_split` of an untrained student on configs/synthetic.py's test split
(under --data_dir, prepared on first use), one variant, no baselines, timed end to end
after one untimed run that compiles. Runs with the configs' `xla_flags`, as
`python -m avkd_jax.main --mode=eval` does (a flag already in $XLA_FLAGS wins).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from avkd_jax import default_config, runtime

runtime.add_xla_flags(default_config.base_config().xla_flags)  # Before JAX starts.

import jax
import jax.numpy as jnp
from train_step import cpu_name, load_config, median_seconds, random_batch

from avkd_jax import datasets, models, sharding
from avkd_jax.eval import evaluator, fusion

SHAPES = {"synthetic": "synthetic", "paper": "flickr10k"}


def untrained(model, config, mesh):
    replicated = sharding.replicated(mesh)
    init = jax.jit(lambda r: models.init_variables(model, config, r), out_shardings=replicated)
    return init(jax.random.key(0))


def model_maps_per_second(config, batches: int) -> float:
    model = models.create_model(config)
    mesh = sharding.create_mesh()
    variables = untrained(model, config, mesh)
    config.batch_size = config.eval_batch_size
    batch = random_batch(config)
    data = sharding.batch_sharded(mesh)
    image, pcm = (jax.device_put(jnp.asarray(batch[k]), data) for k in ("image", "audio"))
    maps = jax.jit(lambda v, i, a: fusion.model_maps(model, v, i, a))
    seconds = median_seconds(lambda: maps(variables, image, pcm).block_until_ready(), 1, batches)
    return config.eval_batch_size / seconds


def protocol_maps_per_second(config) -> tuple[float, int]:
    """(maps/s, maps) of one `evaluate_split` over the config's test split."""
    builder = datasets.get_builder(config)
    builder.download_and_prepare()
    model = models.create_model(config)
    mesh = sharding.create_mesh()
    variants = {fusion.STUDENT: untrained(model, config, mesh)}
    results = evaluator.evaluate_split(model, variants, builder, config, mesh)  # Compiles.
    start = time.perf_counter()
    results = evaluator.evaluate_split(model, variants, builder, config, mesh)
    n = results[fusion.STUDENT]["n"]
    return n / (time.perf_counter() - start), n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="synthetic,paper", help=", ".join(SHAPES))
    p.add_argument("--dtype", default=None, help="model.dtype (default: the config's)")
    p.add_argument("--batches", type=int, default=3, help="timed model-map batches")
    p.add_argument("--protocol", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--data_dir", default=os.path.join(REPO, "data"), help="the synthetic world")
    args = p.parse_args(argv)

    rows = []
    for shape in args.shapes.split(","):
        if shape not in SHAPES:
            p.error(f"--shapes: unknown shape {shape!r}; known: {', '.join(SHAPES)}")
        config = load_config(SHAPES[shape])
        config.model.dtype = args.dtype or config.model.dtype
        batch = config.eval_batch_size
        sps = model_maps_per_second(config, args.batches)
        rows.append((shape, f"model maps, batch {batch}", sps))
        if args.protocol and shape == "synthetic":
            config = load_config(SHAPES[shape])
            config.model.dtype = args.dtype or config.model.dtype
            config.data_dir = args.data_dir
            sps, n = protocol_maps_per_second(config)
            rows.append((shape, f"whole protocol, {n} test scenes", sps))

    cores = len(os.sched_getaffinity(0))
    xla_flags = os.environ.get("XLA_FLAGS", "")
    print(f"\n{cpu_name()}, {cores} cores; jax {jax.__version__}; XLA_FLAGS={xla_flags!r}\n")
    print(f"| shape | what ({config.model.dtype}) | maps/s |\n|---|---|---|")
    for shape, what, sps in rows:
        print(f"| {shape} | {what} | {sps:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
