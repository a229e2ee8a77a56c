"""The GPU check (docs/gpu_check.md): the GPU-worthy tests, one train step's loss and
gradients on the GPU against the CPU's in float32, and the paper-shape speeds, as one table.

    bash benchmarks/gpu_check.sh                      # installs .venv-gpu, then runs this
    python benchmarks/gpu_check.py                    # in an environment that has it all
    python benchmarks/gpu_check.py --parity_only --devices=cpu:0,cpu:1 --parity_size=tiny

`--detect` and `--cuda_requirement` are the wrapper's: they import no JAX. Exit codes:
0 the parity check and the tests passed, 1 one of them failed, 2 bad usage, 3 no NVIDIA
GPU (nothing measured), 4 the install failed (gpu_check.sh).
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_GPU, EXIT_INSTALL = 0, 1, 2, 3, 4
# float32 on both sides; only the reduction order and the convolution algorithms differ
# (~1e-6 relative per op, amplified ×33 by 1/τ in the logits and summed over deep nets).
LOSS_RTOL, GRAD_RTOL = 1e-4, 1e-3
# Device-generic tests: models, losses, spectrogram, bfloat16, train step, the evaluation
# protocol. Not the oneDNN CPU kernels, the CPU-only multi-device probe, nor the slow tier.
TEST_FILES = (
    "tests/test_models.py",
    "tests/test_losses.py",
    "tests/test_audio.py",
    "tests/test_bf16.py",
    "tests/test_train.py",
    "tests/test_evaluate_protocol.py",
    "tests/test_eval_registry.py",
    "tests/test_fusion.py",
)
TEST_DESELECT = ("tests/test_train.py::test_four_devices_give_the_single_device_losses",)


class NoGpu(Exception):
    """No NVIDIA GPU to check: the message says why."""


# --- Detection and the CUDA plugin: standard library only. -------------------------------


def parse_nvidia_smi(text: str) -> dict:
    """{'driver': '570.86.15', 'cuda': (12, 8)} from `nvidia-smi`'s banner."""
    driver = re.search(r"Driver Version:\s*([\d.]+)", text)
    cuda = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", text)
    if not (driver and cuda):
        raise NoGpu("nvidia-smi: no 'Driver Version' / 'CUDA Version' in its output")
    return {"driver": driver.group(1), "cuda": (int(cuda.group(1)), int(cuda.group(2)))}


def detect_gpu(environ=os.environ) -> dict:
    """`parse_nvidia_smi` of `$NVIDIA_SMI` (default: `nvidia-smi` on PATH); NoGpu if it is
    missing, fails or names no driver."""
    exe = environ.get("NVIDIA_SMI") or shutil.which("nvidia-smi", path=environ.get("PATH"))
    if not exe or not os.path.exists(exe):
        raise NoGpu("nvidia-smi: not found")
    try:
        out = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NoGpu(f"nvidia-smi: {e}") from None
    if out.returncode:
        first = (out.stderr or out.stdout).strip().splitlines()[:1] or [""]
        raise NoGpu(f"nvidia-smi: exit {out.returncode}: {first[0]}".rstrip(": "))
    return parse_nvidia_smi(out.stdout)


def cuda_extra(cuda: tuple, override: str | None = None) -> str:
    """jax's extra for a driver that supports CUDA `cuda` (major, minor): the newest CUDA
    major it runs, or `override` ($JAX_CUDA_EXTRA)."""
    if override:
        if override not in ("cuda12", "cuda13"):
            raise ValueError(f"$JAX_CUDA_EXTRA={override!r}: expected cuda12 or cuda13")
        return override
    if cuda[0] >= 13:
        return "cuda13"
    if cuda[0] == 12:
        return "cuda12"
    raise NoGpu(f"the driver supports CUDA {cuda[0]}.{cuda[1]}; JAX's plugins need 12 or later")


def jax_pin() -> str:
    """The installed jax's `==version`, else setup.py's jax specifier."""
    try:
        return "==" + importlib.metadata.version("jax")
    except importlib.metadata.PackageNotFoundError:
        with open(os.path.join(REPO, "setup.py")) as f:
            return re.search(r'"jax([<>=!~][^"]*)"', f.read()).group(1)


def cuda_requirement(environ=os.environ) -> str:
    """The pip requirement of the CUDA plugin for this jax and driver: `jax[cuda12]==0.10.2`."""
    extra = cuda_extra(detect_gpu(environ)["cuda"], environ.get("JAX_CUDA_EXTRA"))
    return f"jax[{extra}]{jax_pin()}"


def format_table(rows) -> str:
    """A Markdown table of (check, value, result) rows."""
    lines = ["| check | value | result |", "|---|---|---|"]
    lines += [f"| {c} | {v} | {r} |" for c, v, r in rows]
    return "\n".join(lines)


# --- Parity: JAX from here on. ------------------------------------------------------------


@functools.cache
def _bench(name: str):
    """benchmarks/<name>.py as a module (they import each other by bare name)."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    sys.path.insert(0, REPO)
    spec = importlib.util.spec_from_file_location(f"bench_{name}", f"{REPO}/benchmarks/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parity_config(size: str = "small"):
    """configs/synthetic.py in float32 with XLA's convolution (oneDNN is CPU-only) and both
    hint losses at the paper's weights; `small`: 112² images (a 4×4 map), 1 s of audio,
    quarter-width nets, batch 8; `tiny`: 64², 0.5 s, 1/8 width, batch 4."""
    config = _bench("train_step").load_config("synthetic", 8 if size == "small" else 4)
    config.image_size, config.audio_seconds = (112, 1.0) if size == "small" else (64, 0.5)
    config.model.width = 0.25 if size == "small" else 0.125
    config.model.embed_dim = 64 if size == "small" else 16
    config.model.dtype = "float32"
    config.model.conv_impl = "xla"
    config.alpha_audio, config.alpha_visual = 1000.0, 100_000.0
    return config


def parity_inputs(config, seed: int = 0):
    """(model, variables, batch) on the host: the weights of key `seed` and
    `random_batch(config, seed)`."""
    import jax
    import numpy as np

    from avkd_jax import models

    model = models.create_model(config)
    with jax.default_device(jax.devices("cpu")[0]):
        init = jax.jit(lambda r: models.init_variables(model, config, r))
        variables = jax.tree.map(np.asarray, init(jax.random.key(seed)))
    return model, variables, _bench("train_step").random_batch(config, seed)


def loss_and_grads_fn(model, config):
    """f(params, batch_stats, batch) → (loss, grads) of `train.loss_terms`, jitted; it runs
    where its arguments are."""
    import jax

    from avkd_jax import train

    def loss(params, batch_stats, batch):
        return train.loss_terms(params, batch_stats, batch, model=model, config=config)[0]

    return jax.jit(jax.value_and_grad(loss))


def loss_and_grads(fn, variables, batch, device):
    """(loss, grads) of `fn` with its inputs on `device`, at full float32 matmul precision
    (no TF32 in cuBLAS / cuDNN)."""
    import jax
    import numpy as np

    args = jax.device_put((variables["params"], variables["batch_stats"], batch), device)
    with jax.default_matmul_precision("highest"):
        value, grads = fn(*args)
    return float(value), jax.tree.map(np.asarray, grads)


def compare(ref_loss, ref_grads, loss, grads, loss_rtol=LOSS_RTOL, grad_rtol=GRAD_RTOL) -> dict:
    """Relative errors of (loss, grads) against (ref_loss, ref_grads): the loss's, each
    leaf's ‖g − g_ref‖ / ‖g_ref‖, the global one over all leaves, and `failures` (a list of
    'what: error' strings; empty when within the tolerances)."""
    import jax
    import numpy as np

    if jax.tree.structure(ref_grads) != jax.tree.structure(grads):
        return {"failures": ["gradient trees differ in structure"]}
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(ref_grads)]
    pairs = [
        (np.asarray(a, np.float64), np.asarray(b, np.float64))
        for a, b in zip(jax.tree.leaves(ref_grads), jax.tree.leaves(grads))
    ]
    leaf = {
        p: np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-30) for p, (a, b) in zip(paths, pairs)
    }
    num = np.sqrt(sum(np.sum((b - a) ** 2) for a, b in pairs))
    den = np.sqrt(sum(np.sum(a**2) for a, _ in pairs))
    out = {
        "loss_rel": abs(loss - ref_loss) / max(abs(ref_loss), 1e-30),
        "global_rel": float(num / max(den, 1e-30)),
        "worst_leaf": max(leaf, key=leaf.get),
    }
    out["worst_rel"] = float(leaf[out["worst_leaf"]])
    failures = [] if np.isfinite(loss) and np.isfinite(ref_loss) else ["loss: not finite"]
    if not out["loss_rel"] <= loss_rtol:
        failures.append(f"loss: {out['loss_rel']:.2e} > {loss_rtol:g}")
    if not out["global_rel"] <= grad_rtol:
        failures.append(f"gradients (global): {out['global_rel']:.2e} > {grad_rtol:g}")
    failures += [f"{p}: {e:.2e} > {grad_rtol:g}" for p, e in leaf.items() if not e <= grad_rtol]
    out["failures"] = failures
    return out


def parity_rows(config, ref_device, device) -> tuple[list, bool]:
    """The parity check's table rows and whether it passed."""
    model, variables, batch = parity_inputs(config)
    fn = loss_and_grads_fn(model, config)
    ref_loss, ref_grads = loss_and_grads(fn, variables, batch, ref_device)
    loss, grads = loss_and_grads(fn, variables, batch, device)
    result = compare(ref_loss, ref_grads, loss, grads)
    ok = not result["failures"]
    what = f"{device.platform}:{device.id} vs {ref_device.platform}:{ref_device.id}"
    if "loss_rel" not in result:
        return [(f"parity {what}", result["failures"][0], "FAIL")], False
    rows = [
        (
            f"parity {what}: loss",
            f"{loss:.6g} vs {ref_loss:.6g}, rel {result['loss_rel']:.1e}",
            "pass" if result["loss_rel"] <= LOSS_RTOL else "FAIL",
        ),
        (
            "parity: gradients, global rel L2",
            f"{result['global_rel']:.1e} (≤ {GRAD_RTOL:g})",
            "pass" if result["global_rel"] <= GRAD_RTOL else "FAIL",
        ),
        (
            "parity: worst gradient leaf",
            f"{result['worst_leaf']} {result['worst_rel']:.1e}",
            "pass" if result["worst_rel"] <= GRAD_RTOL else "FAIL",
        ),
    ]
    for failure in result["failures"][:5]:
        print(f"gpu_check: parity: {failure}", file=sys.stderr)
    return rows, ok


# --- The tests and the speeds. ------------------------------------------------------------


def run_tests(python: str, timeout_s: int) -> tuple[str, bool]:
    """(pytest's summary line, passed) of TEST_FILES, full float32 matmuls (the tests
    compare against float32 references; TF32 would be the GPU's default)."""
    env = dict(os.environ, JAX_DEFAULT_MATMUL_PRECISION="highest")
    cmd = [python, "-m", "pytest", "-q", "-m", "not slow", *TEST_FILES]
    cmd += [f"--deselect={t}" for t in TEST_DESELECT]
    try:
        out = subprocess.run(
            cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout_s} s", False
    lines = out.stdout.strip().splitlines() or [out.stderr.strip()[-200:]]
    if out.returncode:
        print(out.stdout[-6000:], out.stderr[-2000:], sep="\n", file=sys.stderr)
    return lines[-1].strip("= "), out.returncode == 0


def train_step_rows(steps: int) -> list:
    """Paper-shape (flickr10k, batch 128) train steps/s in bfloat16 and float32."""
    bench = _bench("train_step")
    rows = []
    for dtype in ("bfloat16", "float32"):
        config = bench.load_config("flickr10k", 128)
        config.model.dtype = dtype
        step, flops, compile_s = bench.jax_step(config, bench.random_batch(config))
        seconds = bench.median_seconds(step, 2, steps)
        rows.append(
            (
                f"train step, batch 128, {dtype}",
                f"{128 / seconds:.0f} ({flops / seconds / 1e12:.1f} TFLOP/s, "
                f"compile {compile_s:.0f} s)",
                "samples/s",
            )
        )
    return rows


def input_pipeline_rows(samples: int) -> list:
    """The input pipeline's samples/s at the paper's shapes, on every host core."""
    bench = _bench("input_pipeline")
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        config, builder, _ = bench.paper_config(os.path.join(scratch, "data"), samples, 32)
        sps = bench.samples_per_second(builder, config, cores, 2, 8)
    return [(f"input pipeline, 224², 3 s, {cores} threads", f"{sps:.0f}", "samples/s")]


def eval_rows(batches: int) -> list:
    """The paper-shape model maps per second."""
    bench = _bench("eval")
    config = bench.load_config("flickr10k")
    sps = bench.model_maps_per_second(config, batches)
    return [(f"eval model maps, batch {config.eval_batch_size}", f"{sps:.0f}", "maps/s")]


def measured(fn, *args) -> list:
    """fn's rows, or one row naming its error (a speed that fails fails no check)."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001  (reported in the table)
        return [(fn.__name__.replace("_rows", ""), f"{type(e).__name__}: {e}"[:120], "ERROR")]


def device_of(name: str):
    """'gpu:0' → jax.devices('gpu')[0]."""
    import jax

    platform, _, index = name.partition(":")
    return jax.devices(platform)[int(index or 0)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--detect", action="store_true", help="find nvidia-smi's GPU, nothing else")
    p.add_argument("--cuda_requirement", action="store_true", help="print jax[cudaNN]==version")
    p.add_argument("--parity_only", action="store_true", help="no tests, no speeds")
    p.add_argument("--devices", default="cpu:0,gpu:0", help="parity: reference,checked")
    p.add_argument("--parity_size", default="small", choices=("small", "tiny"))
    p.add_argument("--tests", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--tests_timeout", type=int, default=240, help="seconds for pytest")
    p.add_argument("--steps", type=int, default=10, help="timed train steps per dtype")
    p.add_argument("--pipeline_samples", type=int, default=128, help="scenes at 224², 3 s")
    args = p.parse_args(argv)
    if args.pipeline_samples < 32:
        p.error("--pipeline_samples: at least one batch of 32")
    try:
        if args.cuda_requirement:
            print(cuda_requirement())
            return EXIT_OK
        if args.detect or "gpu" in args.devices:
            gpu = detect_gpu()
            if args.detect:
                major, minor = gpu["cuda"]
                print(
                    f"gpu_check: NVIDIA driver {gpu['driver']}, CUDA {major}.{minor}",
                    file=sys.stderr,
                )
                return EXIT_OK
        # On demand, not 75 % of the GPU up front: the tests' process shares it.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        import jax

        try:
            ref, checked = [device_of(d) for d in args.devices.split(",")]
        except RuntimeError as e:
            raise NoGpu(f"JAX sees no such device ({str(e).splitlines()[0]})") from None
        except (IndexError, ValueError):
            raise ValueError(
                f"--devices={args.devices!r}: two of this machine's devices, as cpu:0,gpu:0"
            ) from None
    except NoGpu as e:
        print(f"gpu_check: no NVIDIA GPU found ({e}); nothing measured.", file=sys.stderr)
        return EXIT_NO_GPU
    except ValueError as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        return EXIT_USAGE

    start = time.perf_counter()
    rows, ok = parity_rows(parity_config(args.parity_size), ref, checked)
    if not args.parity_only:
        if args.tests:
            summary, passed = run_tests(sys.executable, args.tests_timeout)
            rows.append(("tests (GPU subset)", summary, "pass" if passed else "FAIL"))
            ok &= passed
        rows += measured(train_step_rows, args.steps)
        rows += measured(input_pipeline_rows, args.pipeline_samples)
        rows += measured(eval_rows, 3)
    print(f"\n{checked.device_kind}; jax {jax.__version__}; {time.perf_counter() - start:.0f} s\n")
    print(format_table(rows))
    return EXIT_OK if ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
