"""Which convolution and stem max-pool the students use (`config.model.conv_impl`).

"auto": the CPU kernels of `avkd_jax.cpu_kernels` on a single CPU device, where they
import; XLA's own ops anywhere else. "xla": XLA's own ops always. ($AVKD_JAX_CONV=xla
keeps the kernels but turns their oneDNN part off, `cpu_kernels.onednn.enabled`.) The
choice changes no parameter, only how the same values are computed.
"""

import contextlib
import functools
import logging
import sys

import jax

DEFAULT = "auto"
CHOICES = ("auto", "xla")


def layers(conv_impl: str = DEFAULT) -> dict:
    """Keyword arguments `conv` (an `nn.Conv`-like ModuleDef) and `max_pool`
    (`[B, H, W, C]` → `[B, ceil(H/2), ceil(W/2), C]`) for `models.AVC`, the students and
    `ResNet18Trunk`; `{}` keeps their defaults, XLA's own ops."""
    if conv_impl not in CHOICES:
        raise ValueError(f"model.conv_impl={conv_impl!r}: expected one of {CHOICES}")
    if conv_impl == "xla":
        return {}
    why = _why_not_cpu_kernels()
    if why is not None:
        _log_once(why)
        return {}
    from avkd_jax import cpu_kernels  # Only here: the model itself never needs them.

    return {"conv": cpu_kernels.Conv, "max_pool": cpu_kernels.max_pool}


@contextlib.contextmanager
def without_custom_calls():
    """Within: models are traced with the CPU kernels' convolutions in XLA, for XLA's cost
    analysis, which does not see into custom calls. Imports no kernel of its own."""
    onednn = sys.modules.get("avkd_jax.cpu_kernels.onednn")
    if onednn is None:  # No model here uses the kernels: nothing to switch.
        yield
        return
    with onednn.backend("xla"):
        yield


def _why_not_cpu_kernels() -> str | None:
    if jax.default_backend() != "cpu":
        return f"the backend is {jax.default_backend()}"
    if jax.device_count() != 1:
        return f"{jax.device_count()} devices (the kernels are for one CPU device)"
    try:
        import avkd_jax.cpu_kernels  # noqa: F401
    except ImportError as e:
        return f"avkd_jax.cpu_kernels does not import: {e}"
    return None


@functools.cache
def _log_once(why: str) -> None:
    logging.info("model.conv_impl=auto: XLA's own convolution and max-pool (%s)", why)
