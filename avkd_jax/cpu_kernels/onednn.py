"""The students' convolutions on the CPU through oneDNN (`csrc/onednn_conv.cc`), compiled on
first use and called as XLA FFI custom calls, with their gradient.

XLA:CPU computes a convolution as Eigen's im2col + GEMM, and has no fast bfloat16 one;
oneDNN, which PyTorch calls for the same work, has direct kernels in float32 and bfloat16.
The library comes from the `onednn-cpu-gomp` wheels of the `cpu` extra
(`pip install -e '.[cpu]'`, x86-64 Linux); the 200-line C++ file is compiled with the
machine's C++ compiler into a cache folder (`$AVKD_JAX_CACHE`, else `~/.cache/avkd_jax`),
once per source, JAX version and environment. Where any of that is missing,
`unavailable_reason()` says why (logged once) and the model keeps XLA's own convolution.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sysconfig
import tempfile

import jax
import numpy as np

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "onednn_conv.cc")
NOT_INSTALLED = "oneDNN is not installed (the cpu extra: pip install -e '.[cpu]')"
_TARGETS = {
    "avkd_conv_fwd": "AvkdConvFwd",
    "avkd_conv_bwd_data": "AvkdConvBwdData",
    "avkd_conv_bwd_weights": "AvkdConvBwdWeights",
}


def _onednn_prefix() -> str | None:
    """Where the oneDNN wheels put `include/oneapi/dnnl` and `lib/libdnnl.so`: this
    environment's data prefix (sys.prefix in a venv), or the user's (pip install --user)."""
    for scheme in (sysconfig.get_default_scheme(), f"{os.name}_user"):
        prefix = sysconfig.get_paths(scheme)["data"]
        header = os.path.join(prefix, "include", "oneapi", "dnnl", "dnnl.hpp")
        if os.path.exists(header) and os.path.exists(os.path.join(prefix, "lib", "libdnnl.so")):
            return prefix
    return None


def _cache_dir() -> str:
    return os.environ.get("AVKD_JAX_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "avkd_jax"
    )


def _build(prefix: str) -> str:
    """Compiles the FFI library unless built already for this source, JAX version and oneDNN
    prefix; returns its path. Written under a temporary name and renamed, so that processes
    starting at once (tests, several hosts) never load a half-written file."""
    with open(_SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read() + jax.__version__.encode() + prefix.encode())
    path = os.path.join(_cache_dir(), f"onednn_conv-{digest.hexdigest()[:16]}.so")
    if os.path.exists(path):
        return path
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError("no C++ compiler (g++ or $CXX) to build it")
    os.makedirs(_cache_dir(), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=_cache_dir())
    os.close(fd)
    cmd = [
        compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-w",
        f"-I{jax.ffi.include_dir()}", f"-I{os.path.join(prefix, 'include')}",
        _SOURCE, "-o", tmp,
        f"-L{os.path.join(prefix, 'lib')}", "-ldnnl",
        f"-Wl,-rpath,{os.path.join(prefix, 'lib')}",
    ]  # fmt: skip
    logging.info("Compiling the oneDNN convolutions into %s (once)", path)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        os.unlink(tmp)
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    os.replace(tmp, path)
    return path


@functools.cache
def _load() -> str | None:
    """Builds, loads and registers the targets; None when ready, else why not."""
    if jax.default_backend() != "cpu":
        return f"the backend is {jax.default_backend()}"
    prefix = _onednn_prefix()
    if prefix is None:
        return NOT_INSTALLED
    try:
        library = ctypes.cdll.LoadLibrary(_build(prefix))
    except (OSError, RuntimeError) as e:
        return f"could not build or load {_SOURCE}: {e}"
    for target, symbol in _TARGETS.items():
        jax.ffi.register_ffi_target(
            target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu"
        )
    return None


_BACKENDS = ("onednn", "xla")
_backend = contextvars.ContextVar("avkd_jax_conv_backend", default=None)


@contextlib.contextmanager
def backend(name: str):
    """Within: steps traced with the students' convolutions in `name` (`onednn`, or `xla`
    for XLA's own), whatever $AVKD_JAX_CONV says. For benchmarks and tests."""
    if name not in _BACKENDS:
        raise ValueError(f"convolution backend {name!r}: expected one of {_BACKENDS}")
    token = _backend.set(name)
    try:
        yield
    finally:
        _backend.reset(token)


def enabled() -> bool:
    """Whether the students' convolutions go through oneDNN, decided when a step is traced:
    where it can run here, unless `backend('xla')` or $AVKD_JAX_CONV=xla says otherwise."""
    name = _backend.get() or os.environ.get("AVKD_JAX_CONV") or "onednn"
    if name not in _BACKENDS:
        raise ValueError(f"$AVKD_JAX_CONV={name!r}: expected one of {_BACKENDS}")
    return name == "onednn" and unavailable_reason() is None


def unavailable_reason() -> str | None:
    """None where the oneDNN convolution can run here, else why it cannot (logged once)."""
    reason = _load()
    if reason is not None:
        _log_once(reason)
    return reason


@functools.cache
def _log_once(reason: str) -> None:
    # The extra left out is a choice (INFO); installed but unusable is a surprise (WARNING).
    level = logging.INFO if reason == NOT_INSTALLED else logging.WARNING
    logging.log(level, "oneDNN convolution unavailable, XLA's is used: %s", reason)


def _call(target, out_shape, a, b, strides, padding):
    """One custom call; its result has the operands' dtype."""
    reason = _load()
    if reason is not None:
        raise RuntimeError(f"oneDNN convolution unavailable: {reason}")
    return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(out_shape, a.dtype))(
        a,
        b,
        strides=np.asarray(strides, np.int64),
        padding=np.asarray([p for pair in padding for p in pair], np.int64),
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv(x, kernel, strides, padding):
    """NHWC × HWIO convolution, both float32 or both bfloat16 (then accumulated in float32
    and rounded once): `x [N, H, W, C]`, `kernel [KH, KW, C, O]`,
    `strides (sh, sw)`, `padding ((top, bottom), (left, right))`, all non-negative →
    `[N, Ho, Wo, O]`, the value of `lax.conv_general_dilated` with the same arguments."""
    n, h, w, _ = x.shape
    kh, kw, _, o = kernel.shape
    ho = (h + sum(padding[0]) - kh) // strides[0] + 1
    wo = (w + sum(padding[1]) - kw) // strides[1] + 1
    return _call("avkd_conv_fwd", (n, ho, wo, o), x, kernel, strides, padding)


def _conv_fwd(x, kernel, strides, padding):
    return conv(x, kernel, strides, padding), (x, kernel)


def _conv_bwd(strides, padding, residuals, g):
    x, kernel = residuals
    dx = _call("avkd_conv_bwd_data", x.shape, g, kernel, strides, padding)
    dk = _call("avkd_conv_bwd_weights", kernel.shape, x, g, strides, padding)
    return dx, dk


conv.defvjp(_conv_fwd, _conv_bwd)
