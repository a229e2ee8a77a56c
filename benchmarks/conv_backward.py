"""Where the JAX train step loses to PyTorch on CPU: each ResNet18 convolution's forward,
input gradient (dX) and weight gradient (dW), timed alone in XLA and in torch.

    python benchmarks/conv_backward.py                 # the model's conv: oneDNN's
    python benchmarks/conv_backward.py --conv=xla      # XLA's, with the model's gradient
    python benchmarks/conv_backward.py --xla_gradient  # XLA's own gradient for every layer
    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=dot python benchmarks/conv_backward.py
    python benchmarks/conv_backward.py --batch=16 --repeats=5

The shapes are the visual student's at 224² (batch 16, NHWC in JAX, NCHW in torch, as each
framework's ResNet runs) plus the audio student's widest layer (a 257×276 spectrogram
gives 65×69 maps after the stem). JAX runs `cpu_kernels.dispatch.conv`, the students'
convolution (oneDNN's; with `--conv=xla` XLA's, with the model's hand-written weight
gradient where the model uses it), under the configs'
`xla_flags` as `python -m avkd_jax.main` sets them (a flag already in $XLA_FLAGS wins).
A layer's six calls (forward, dX, dW in each framework) are interleaved, one of each per
round, so that the machine's drift falls on both; each cell is the median of `--repeats`
rounds after two warm-ups. GFLOP/s counts a multiply-add as 2. Read with the step's
profile (BENCHMARKS.md): alone, the input is a parameter and XLA's own weight gradient
transposes it in a plain copy, so `--xla_gradient` looks faster here than in the step,
where XLA fuses that transpose into the op producing the input.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from avkd_jax import default_config, runtime

runtime.add_xla_flags(default_config.base_config().xla_flags)  # Before JAX starts.

import jax
import jax.numpy as jnp
import numpy as np
import torch
import train_step  # This folder's: its timing helper.

from avkd_jax.cpu_kernels import dispatch, onednn

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


def jax_calls(b, h, w, cin, cout, k, s, xla_gradient=False, conv_backend="onednn") -> list:
    """Forward, dX and dW of one NHWC convolution in JAX, each a call that waits for its
    result: the model's `dispatch.conv` with `conv_backend`'s convolutions (`onednn`, or
    `xla`: XLA's with the model's weight gradient), or with `xla_gradient`
    `lax.conv_general_dilated` and XLA's gradient."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((b, h, w, cin), np.float32))
    kernel = jnp.asarray(rng.standard_normal((k, k, cin, cout), np.float32))
    pad = [(k // 2, k // 2)] * 2

    conv_general_dilated = jax.lax.conv_general_dilated if xla_gradient else dispatch.conv
    # As `nn.Conv` passes them: `dispatch.conv` takes its own path only for these.
    dimension_numbers = jax.lax.conv_dimension_numbers(
        x.shape, kernel.shape, ("NHWC", "HWIO", "NHWC")
    )

    def conv(x, kernel):
        return conv_general_dilated(x, kernel, (s, s), pad, dimension_numbers=dimension_numbers)

    with onednn.backend(conv_backend):  # Decided when traced: compile here.
        g = jnp.ones_like(conv(x, kernel))
        fwd = jax.jit(conv).lower(x, kernel).compile()
        dx = jax.jit(lambda x, kernel, g: jax.vjp(lambda x: conv(x, kernel), x)[1](g)[0])
        dx = dx.lower(x, kernel, g).compile()
        dw = jax.jit(lambda x, kernel, g: jax.vjp(lambda k: conv(x, k), kernel)[1](g)[0])
        dw = dw.lower(x, kernel, g).compile()
    return [
        lambda: fwd(x, kernel).block_until_ready(),
        lambda: dx(x, kernel, g).block_until_ready(),
        lambda: dw(x, kernel, g).block_until_ready(),
    ]


def torch_calls(b, h, w, cin, cout, k, s) -> list:
    """Forward, dX and dW of one NCHW convolution in eager PyTorch (no autograd graph:
    nothing requires a gradient)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, cin, h, w, generator=gen)
    kernel = torch.randn(cout, cin, k, k, generator=gen)
    conv = torch.nn.functional.conv2d
    g = torch.ones_like(conv(x, kernel, stride=s, padding=k // 2))
    return [
        lambda: conv(x, kernel, stride=s, padding=k // 2),
        lambda: torch.nn.grad.conv2d_input(x.shape, kernel, g, stride=s, padding=k // 2),
        lambda: torch.nn.grad.conv2d_weight(x, kernel.shape, g, stride=s, padding=k // 2),
    ]


def layer_times(shape, repeats: int, xla_gradient: bool, conv_backend: str) -> tuple[list, list]:
    """Median seconds of ([JAX fwd, dX, dW], [torch fwd, dX, dW]), the six calls
    interleaved (one of each per round) so that the machine's drift falls on both."""
    calls = {("jax", i): f for i, f in enumerate(jax_calls(*shape, xla_gradient, conv_backend))}
    calls |= {("torch", i): f for i, f in enumerate(torch_calls(*shape))}
    times = train_step.interleaved_seconds(calls, warmup=2, rounds=repeats)
    median = {key: statistics.median(t) for key, t in times.items()}
    return [median["jax", i] for i in range(3)], [median["torch", i] for i in range(3)]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--xla_gradient",
        action="store_true",
        help="XLA's own gradient in every layer instead of the model's dispatch.conv",
    )
    p.add_argument(
        "--conv",
        choices=["onednn", "xla"],
        default="onednn",
        help="the model's convolutions: oneDNN's (the default on x86-64 Linux) or XLA's",
    )
    args = p.parse_args(argv)
    if args.conv == "onednn" and onednn.unavailable_reason():
        p.error(f"--conv=onednn: {onednn.unavailable_reason()}")
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
        ours, theirs = layer_times(shape, args.repeats, args.xla_gradient, args.conv)
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
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; "
        f"{'XLA gradient' if args.xla_gradient else f'dispatch.conv ({args.conv})'}; "
        f"batch {args.batch}, "
        f"median of {args.repeats}."
    )


if __name__ == "__main__":
    main()
