"""AVC train-step throughput: our jitted JAX step against the PyTorch peer-code way.

    python benchmarks/train_step.py                          # paper16, paper32, synthetic
    python benchmarks/train_step.py --shapes=synthetic --steps=3 --warmup=1
    python benchmarks/train_step.py --xla_flags=     # XLA's defaults, not the configs'
    python benchmarks/train_step.py --xla_flags=--xla_cpu_prefer_vector_width=512

One step = log-spectrogram of the int16 PCM, both ResNet18 students, the contrastive loss
and both hint losses at the paper's weights, gradients and one Adam update, on one fixed
random batch already on the device (the input pipeline is `input_pipeline.py`'s business).
JAX runs `train.compile_train_step` (donated state) under `jax.transfer_guard('disallow')`,
so a host round-trip inside the loop would fail the run; PyTorch runs
`teachers/torch_avc.py` eagerly with `torch.set_num_threads(cores)`. The steps are
interleaved (a round is one PyTorch step, then one step of each JAX dtype) so that the
drift of a shared machine's speed, which moves within minutes, falls on both alike;
warm-up rounds are not timed. Reported:
each one's median samples/s and the median, over rounds, of the round's speed ratio.
FLOPs are XLA's cost analysis of the compiled executables (a multiply-add counts 2), set
against the matmul peak measured here. `--xla_flags` must be seen before JAX is imported,
so it is read from argv first.
"""

from __future__ import annotations

import os
import sys


def _xla_flags_from_argv(argv) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--xla_flags="):
            return arg.split("=", 1)[1]
        if arg == "--xla_flags" and i + 1 < len(argv):
            return argv[i + 1]
    return None


if __name__ == "__main__":
    # As `python -m avkd_jax.main` does: the configs' XLA flags unless --xla_flags is given
    # (--xla_flags= for XLA's own defaults); a flag already in $XLA_FLAGS wins.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from avkd_jax import default_config, runtime

    _flags = _xla_flags_from_argv(sys.argv[1:])
    if _flags is None:
        _flags = default_config.base_config().xla_flags
    runtime.add_xla_flags(_flags)

import argparse
import functools
import importlib.util
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from avkd_jax import models, sharding, train
from avkd_jax import state as train_state
from avkd_jax.cpu_kernels import onednn
from teachers import torch_avc

P = jax.sharding.PartitionSpec
# name → (config file, batch size; None: the config's own).
SHAPES = {
    "paper16": ("flickr10k", 16),
    "paper32": ("flickr10k", 32),
    "synthetic": ("synthetic", None),
}
# The released code's audio (docs/design.md, Paper text and released code: 257×554 spectrograms), the length the paper's
# 7.2 G was most likely counted at: N = 554·238 + 274 samples at 22,050 Hz.
RELEASED_CODE_SECONDS = (554 * 238 + 274) / 22050


def load_config(name: str, batch_size: int | None = None):
    """`configs/<name>.py`'s get_config(), with `batch_size` when given."""
    path = os.path.join(REPO, "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    if batch_size:
        config.batch_size = batch_size
    return config


def random_batch(config, seed: int = 0) -> dict:
    """A train batch as the input pipeline delivers it: uint8 images `[B, S, S, 3]`, int16
    PCM `[B, N]`, float16 hints `audio_hint [B, D]` and `visual_hint [B, 25, 25]` (row 1
    all-NaN: DETR found nothing)."""
    rng = np.random.default_rng(seed)
    b, s = config.batch_size, config.image_size
    n = round(config.sample_rate * config.audio_seconds)
    visual_hint = rng.uniform(0, 2 / 625, [b, 25, 25]).astype(np.float16)
    visual_hint[1 % b] = np.nan
    return {
        "image": rng.integers(0, 256, [b, s, s, 3], dtype=np.uint8),
        "audio": rng.normal(0, 3000, [b, n]).astype(np.int16),
        "audio_hint": np.abs(rng.normal(0, 0.02, [b, config.model.embed_dim])).astype(np.float16),
        "visual_hint": visual_hint,
    }


def median_seconds(fn, warmup: int, steps: int) -> float:
    """Median wall time of `steps` calls of `fn` after `warmup` untimed ones."""
    return statistics.median(interleaved_seconds({"fn": fn}, warmup, steps)["fn"])


def xla_flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))


def forward_flops(config) -> float:
    """XLA's FLOPs of one sample's forward pass in eval mode (what the paper counts)."""
    model = models.create_model(config)
    variables = jax.eval_shape(lambda r: models.init_variables(model, config, r), jax.random.key(0))
    image, pcm = models.dummy_inputs(config, 1)
    forward = jax.jit(lambda v, i, a: model.apply(v, i, a, train=False))
    with onednn.backend("xla"):  # Cost analysis does not see into custom calls.
        return xla_flops(forward.lower(variables, image, pcm).compile())


def jax_step(config, batch: dict):
    """Our compiled train step as a no-argument callable, its XLA FLOPs per step and its
    compile seconds."""
    model = models.create_model(config)
    mesh = sharding.create_mesh()
    replicated = jax.sharding.NamedSharding(mesh, P())
    state = jax.jit(
        functools.partial(train_state.init_state, model, config), out_shardings=replicated
    )(jax.random.key(0))
    batch = jax.device_put(batch, jax.sharding.NamedSharding(mesh, P("data")))
    start = time.perf_counter()
    # A run's length only sets the cosine schedule's values, not the step's cost.
    compiled = (
        train.compile_train_step(model, config, mesh, total_steps=1000)
        .lower(state, batch)
        .compile()
    )
    compile_s = time.perf_counter() - start
    holder = {"state": state}

    def step():
        with jax.transfer_guard("disallow"):
            holder["state"], metrics = compiled(holder["state"], batch)
            jax.block_until_ready((holder["state"], metrics))

    return step, xla_flops(compiled), compile_s


def xla_conv_flops(config, batch: dict, variant, info: dict) -> float:
    """FLOPs of `variant`'s step counted with XLA's convolutions (compiled here unless that
    variant is in `info` already)."""
    twin = (variant[0], "xla")
    if twin in info:
        return info[twin]["flops"]
    with onednn.backend("xla"):
        return jax_step(config, batch)[1]


def torch_step(config, batch: dict, autocast: bool):
    """The PyTorch reference step as a no-argument callable."""
    net = torch_avc.create_model(config)
    step = torch_avc.make_train_step(net, config, autocast=autocast)
    batch = torch_avc.torch_batch(batch)
    return lambda: step(batch)


def interleaved_seconds(steps: dict, warmup: int, rounds: int) -> dict:
    """{name: [seconds of each timed round]}: each round calls every step once, in order."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


def matmul_peak(n: int, reps: int = 5) -> dict:
    """FLOP/s of an n×n by n×n matmul: {('jax' | 'torch', dtype name): FLOP/s}."""
    flops = 2.0 * n**3
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal([2, n, n]).astype(np.float32)
    out = {}
    dot = jax.jit(jnp.dot)
    for name, dtype in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16)):
        x, y = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
        seconds = median_seconds(lambda x=x, y=y: dot(x, y).block_until_ready(), 1, reps)
        out[("jax", name)] = flops / seconds
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        x, y = torch.from_numpy(a).to(dtype), torch.from_numpy(b).to(dtype)
        out[("torch", name)] = flops / median_seconds(lambda x=x, y=y: torch.mm(x, y), 1, reps)
    return out


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="paper16,paper32,synthetic", help=", ".join(SHAPES))
    p.add_argument("--dtypes", default="float32,bfloat16", help="JAX model.dtype values")
    p.add_argument(
        "--convs",
        default="onednn,xla",
        help="the students' convolutions: onednn (the default where it runs), xla (XLA's)",
    )
    p.add_argument("--steps", type=int, default=5, help="timed rounds (medians over them)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    p.add_argument(
        "--xla_flags",
        default=None,
        help="added to XLA_FLAGS (default: the configs' `xla_flags`; empty: none)",
    )
    p.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--torch_autocast",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="PyTorch under torch.autocast(bfloat16) (the peer code runs float32)",
    )
    p.add_argument("--matmul_n", type=int, default=2048, help="0: no peak measurement")
    p.add_argument(
        "--paper_flops",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also count the forward at the released code's 257×554 spectrogram",
    )
    args = p.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    variants = [(d, c) for d in args.dtypes.split(",") for c in args.convs.split(",")]
    for conv in {c for _, c in variants} - {"onednn", "xla"}:
        p.error(f"--convs: unknown {conv!r}; known: onednn, xla")
    if any(c == "onednn" for _, c in variants) and onednn.unavailable_reason():
        p.error(f"--convs=onednn: {onednn.unavailable_reason()}")

    peak = matmul_peak(args.matmul_n) if args.matmul_n else {}
    rows, notes = [], []
    for shape in args.shapes.split(","):
        if shape not in SHAPES:
            p.error(f"--shapes: unknown shape {shape!r}; known: {', '.join(SHAPES)}")
        config = load_config(*SHAPES[shape])
        batch = random_batch(config)
        b = config.batch_size
        fwd = forward_flops(config) / 1.0
        if args.paper_flops and shape.startswith("paper") and not notes:
            released = load_config(SHAPES[shape][0], 1)
            released.audio_seconds = RELEASED_CODE_SECONDS
            f = forward_flops(released)
            notes.append(
                f"Forward at the released code's 257×554 spectrogram: {f / 1e9:.2f} GFLOP = "
                f"{f / 2e9:.2f} G multiply-adds per sample (paper: 7.2 G)."
            )
        steps, info = {}, {}
        if args.torch:
            steps["torch"] = torch_step(config, batch, args.torch_autocast)
        for variant in variants:
            config.model.dtype, conv = variant
            with onednn.backend(conv):
                steps[variant], flops, compile_s = jax_step(config, batch)
            info[variant] = {"flops": flops, "compile_s": compile_s}
        for variant in variants:
            # XLA's cost analysis does not see into oneDNN's custom calls: count the same
            # step's FLOPs with XLA's convolutions.
            if variant[1] == "onednn":
                info[variant]["flops"] = xla_conv_flops(config, batch, variant, info)
        times = interleaved_seconds(steps, args.warmup, args.steps)
        for variant in variants:
            dtype = variant[0]
            seconds = statistics.median(times[variant])
            achieved = info[variant]["flops"] / seconds
            ratios = [t / j for t, j in zip(times["torch"], times[variant])] if args.torch else []
            rows.append(
                {
                    "shape": shape,
                    "batch": b,
                    "dtype": dtype,
                    "conv": variant[1],
                    "jax": b / seconds,
                    "torch": b / statistics.median(times["torch"]) if args.torch else None,
                    "ratio": statistics.median(ratios) if ratios else None,
                    "ratio_range": (min(ratios), max(ratios)) if ratios else None,
                    "train_gflop": info[variant]["flops"] / b / 1e9,
                    "fwd_gflop": fwd / 1e9,
                    "achieved": achieved,
                    "peak_frac": achieved / peak[("jax", dtype)] if peak else float("nan"),
                    "compile_s": info[variant]["compile_s"],
                }
            )
            print(
                f"# {shape} {dtype} {variant[1]} convolutions: JAX {b / seconds:.2f} samples/s",
                file=sys.stderr,
                flush=True,
            )

    print(
        f"\n{cpu_name()}, {cores} cores; jax {jax.__version__}, torch {torch.__version__} "
        f"({cores} threads{', autocast bfloat16' if args.torch_autocast else ''}); "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; {args.steps} interleaved rounds after "
        f"{args.warmup} warm-up.\n"
    )
    print(
        "| shape | batch | JAX dtype | JAX convs | JAX samples/s | torch samples/s | "
        "ratio [range] | train GFLOP/sample | fwd GFLOP/sample | achieved GFLOP/s | of peak | "
        "compile s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t = f"{r['torch']:.2f}" if r["torch"] else "–"
        ratio = (
            f"{r['ratio']:.2f} [{r['ratio_range'][0]:.2f}, {r['ratio_range'][1]:.2f}]"
            if r["torch"]
            else "–"
        )
        print(
            f"| {r['shape']} | {r['batch']} | {r['dtype']} | {r['conv']} | {r['jax']:.2f} | {t} | "
            f"{ratio} | "
            f"{r['train_gflop']:.2f} | {r['fwd_gflop']:.2f} | {r['achieved'] / 1e9:.1f} | "
            f"{100 * r['peak_frac']:.0f}% | {r['compile_s']:.0f} |"
        )
    if peak:
        print(f"\nMatmul peak ({args.matmul_n}² × {args.matmul_n}², GFLOP/s):\n")
        print("| | float32 | bfloat16 |\n|---|---|---|")
        for lib in ("jax", "torch"):
            print(
                f"| {lib} | {peak[(lib, 'float32')] / 1e9:.1f} | "
                f"{peak[(lib, 'bfloat16')] / 1e9:.1f} |"
            )
    for note in notes:
        print(f"\n{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
