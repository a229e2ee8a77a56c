"""Where the JAX train step loses to PyTorch on CPU: each ResNet18 convolution's forward,
input gradient (dX) and weight gradient (dW), timed alone in XLA and in torch.

    python benchmarks/conv_backward.py                       # XLA_FLAGS as set
    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=dot,reduce python benchmarks/conv_backward.py
    python benchmarks/conv_backward.py --batch=16 --repeats=5

The shapes are the visual student's at 224² (batch 16, NHWC in JAX, NCHW in torch, as each
framework's ResNet runs) plus the audio student's widest layer (a 257×276 spectrogram
gives 65×69 maps after the stem). Each cell is the median of `--repeats` calls after two
warm-ups; GFLOP/s counts a multiply-add as 2. Read with the step's profile
(BENCHMARKS.md): the backward convolutions take most of the step.
"""

from __future__ import annotations

import argparse
import os
import platform

import jax
import jax.numpy as jnp
import numpy as np
import torch
import train_step  # This folder's: its timing helper.

# name, H, W, C_in, C_out, kernel, stride.
LAYERS = [
    ("stem 7×7/2", 224, 224, 3, 64, 7, 2),
    ("layer1 3×3", 56, 56, 64, 64, 3, 1),
    ("layer2 3×3/2", 56, 56, 64, 128, 3, 2),
    ("layer2 3×3", 28, 28, 128, 128, 3, 1),
    ("layer2 1×1/2", 56, 56, 64, 128, 1, 2),
    ("layer3 3×3", 14, 14, 256, 256, 3, 1),
    ("layer4 3×3", 7, 7, 512, 512, 3, 1),
    ("audio layer1 3×3", 65, 69, 64, 64, 3, 1),
]


def median_seconds(fn, repeats: int) -> float:
    return train_step.median_seconds(fn, warmup=2, steps=repeats)


def jax_times(b, h, w, cin, cout, k, s, repeats) -> list[float]:
    """Seconds of forward, dX and dW of one NHWC convolution under XLA."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((b, h, w, cin), np.float32))
    kernel = jnp.asarray(rng.standard_normal((k, k, cin, cout), np.float32))
    pad = [(k // 2, k // 2)] * 2

    def conv(x, kernel):
        return jax.lax.conv_general_dilated(
            x, kernel, (s, s), pad, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    g = jnp.ones_like(conv(x, kernel))
    fwd = jax.jit(conv)
    dx = jax.jit(lambda x, kernel, g: jax.vjp(lambda x: conv(x, kernel), x)[1](g)[0])
    dw = jax.jit(lambda x, kernel, g: jax.vjp(lambda k: conv(x, k), kernel)[1](g)[0])
    return [
        median_seconds(lambda: fwd(x, kernel).block_until_ready(), repeats),
        median_seconds(lambda: dx(x, kernel, g).block_until_ready(), repeats),
        median_seconds(lambda: dw(x, kernel, g).block_until_ready(), repeats),
    ]


def torch_times(b, h, w, cin, cout, k, s, repeats) -> list[float]:
    """Seconds of forward, dX and dW of one NCHW convolution in eager PyTorch."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, cin, h, w, generator=gen)
    kernel = torch.randn(cout, cin, k, k, generator=gen)
    conv = torch.nn.functional.conv2d
    with torch.no_grad():
        g = torch.ones_like(conv(x, kernel, stride=s, padding=k // 2))
        fwd = median_seconds(lambda: conv(x, kernel, stride=s, padding=k // 2), repeats)
        dx = median_seconds(
            lambda: torch.nn.grad.conv2d_input(x.shape, kernel, g, stride=s, padding=k // 2),
            repeats,
        )
        dw = median_seconds(
            lambda: torch.nn.grad.conv2d_weight(x, kernel.shape, g, stride=s, padding=k // 2),
            repeats,
        )
    return [fwd, dx, dw]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    cores = len(os.sched_getaffinity(0))  # As train_step.py: the cores this process may use.
    torch.set_num_threads(cores)
    header = "| layer | output | " + " | ".join(
        f"{f} {part}" for part in ("fwd", "dX", "dW") for f in ("JAX", "torch")
    )
    print(header + " | JAX/torch time, whole layer |")
    print("|---" * 9 + "|")
    totals = np.zeros(2)
    for name, h, w, cin, cout, k, s in LAYERS:
        shape = (args.batch, h, w, cin, cout, k, s)
        ho, wo = -(-h // s), -(-w // s)
        flops = 2 * args.batch * ho * wo * cin * cout * k * k
        ours, theirs = jax_times(*shape, args.repeats), torch_times(*shape, args.repeats)
        cells = [
            f"{t * 1e3:.1f} ms ({flops / t / 1e9:.0f})"
            for part in range(3)
            for t in (ours[part], theirs[part])
        ]
        totals += [sum(ours), sum(theirs)]
        print(
            f"| {name} | {ho}×{wo}×{cout} | "
            + " | ".join(cells)
            + f" | {sum(ours) / sum(theirs):.2f} |"
        )
    print(
        f"\nAll layers: JAX {totals[0] * 1e3:.0f} ms, torch {totals[1] * 1e3:.0f} ms "
        f"(JAX/torch {totals[0] / totals[1]:.2f}). Cells: ms (GFLOP/s)."
    )
    print(
        f"{platform.processor() or platform.machine()}, {cores} cores; jax {jax.__version__}, "
        f"torch {torch.__version__} ({cores} threads); "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; batch {args.batch}, "
        f"median of {args.repeats}."
    )


if __name__ == "__main__":
    main()
