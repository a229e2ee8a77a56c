"""ResNet's stem max-pool (3×3, stride 2, padding 1), forward + input gradient: XLA's
reduce-window (`flax.linen.max_pool`, whose gradient XLA expands into a select-and-scatter),
our separable pool with its hand-written gradient
(`cpu_kernels.xla_grads.max_pool_3x3_s2`), and torch's `max_pool2d`.

    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=dot,reduce python benchmarks/max_pool.py

The shapes are the two students' stem outputs at the paper's inputs (224² images; a
257×276 spectrogram) at batch 16 and 32. Each cell is the median of `--repeats` calls after
two warm-ups.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import torch
import train_step  # This folder's: its timing helper.

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from avkd_jax.cpu_kernels import xla_grads  # noqa: E402

# name, H, W, C: the stem's output, the pool's input.
SHAPES = [("visual, 224² image", 112, 112, 64), ("audio, 257×276 spectrogram", 129, 138, 64)]


def xla_pool(x):
    return nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))


def jax_seconds(pool, x, g, repeats) -> float:
    fwd_bwd = jax.jit(lambda x, g: jax.vjp(pool, x)[1](g)[0])
    return train_step.median_seconds(
        lambda: fwd_bwd(x, g).block_until_ready(), warmup=2, steps=repeats
    )


def torch_seconds(x, g, repeats) -> float:
    xt = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2), requires_grad=True)
    gt = torch.tensor(np.asarray(g).transpose(0, 3, 1, 2))

    def fwd_bwd():
        xt.grad = None
        torch.nn.functional.max_pool2d(xt, 3, 2, 1).backward(gt)

    return train_step.median_seconds(fwd_bwd, warmup=2, steps=repeats)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="16,32")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    print("| input | batch | XLA reduce-window | ours (separable) | torch | XLA / ours |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for batch in (int(b) for b in args.batches.split(",")):
        for name, h, w, c in SHAPES:
            x = jnp.asarray(rng.standard_normal((batch, h, w, c), np.float32))
            g = jnp.asarray(rng.standard_normal(xla_pool(x).shape, np.float32))
            xla = jax_seconds(xla_pool, x, g, args.repeats)
            ours = jax_seconds(xla_grads.max_pool_3x3_s2, x, g, args.repeats)
            theirs = torch_seconds(x, g, args.repeats)
            print(
                f"| {name} | {batch} | {xla * 1e3:.1f} ms | {ours * 1e3:.1f} ms | "
                f"{theirs * 1e3:.1f} ms | {xla / ours:.1f}× |"
            )
    print(
        f"\n{platform.processor() or platform.machine()}, {cores} cores; jax {jax.__version__}, "
        f"torch {torch.__version__} ({cores} threads); "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; forward + input gradient, median of "
        f"{args.repeats}."
    )


if __name__ == "__main__":
    main()
