"""The oneDNN convolution (avkd_jax/onednn_conv.py, csrc/onednn_conv.cc): values against
XLA's convolution at full precision, the students' gradients under both backends, and the
fallback when it cannot run. Its parity with torch is test_models.py's."""

import logging
import os
import platform
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.configs import random_batch, tiny_config
from helpers.paths import REPO

from avkd_jax import models, onednn_conv, train

X86_LINUX = sys.platform == "linux" and platform.machine() == "x86_64"


def test_available_where_the_wheels_exist():
    """On x86-64 Linux the dependencies install oneDNN and the machine has a compiler:
    there it must build and load, or every other test here would quietly test XLA."""
    if not X86_LINUX:
        pytest.skip("oneDNN wheels are x86-64 Linux only")
    assert onednn_conv.unavailable_reason() is None
    assert onednn_conv.enabled()


def _xla(x, kernel, strides, padding):
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        strides,
        padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )


@pytest.mark.parametrize(
    "shape, kernel_shape, strides, padding",
    [
        ((2, 11, 9, 5), (3, 2, 5, 7), (1, 1), ((1, 0), (0, 2))),  # Lopsided padding.
        ((1, 12, 13, 4), (3, 3, 4, 6), (2, 3), ((1, 1), (1, 1))),  # Unequal strides.
        ((3, 6, 7, 16), (1, 1, 16, 8), (1, 1), ((0, 0), (0, 0))),
        ((2, 10, 10, 2), (5, 5, 2, 3), (2, 2), ((0, 0), (0, 0))),  # Columns left over.
    ],
)
def test_values_and_gradients_match_xla(shape, kernel_shape, strides, padding):
    """Output, input gradient and kernel gradient of `onednn_conv.conv` equal XLA's
    convolution and autodiff at HIGHEST precision, to float32 round-off."""
    if onednn_conv.unavailable_reason():
        pytest.skip(onednn_conv.unavailable_reason())
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal(kernel_shape), jnp.float32)
    ours, ours_vjp = jax.vjp(lambda x, k: onednn_conv.conv(x, k, strides, padding), x, kernel)
    ref, ref_vjp = jax.vjp(lambda x, k: _xla(x, k, strides, padding), x, kernel)
    assert ours.shape == ref.shape
    g = jnp.asarray(rng.standard_normal(ref.shape), jnp.float32)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    close(ours, ref)
    for a, b in zip(ours_vjp(g), ref_vjp(g)):
        close(a, b)


def test_train_step_gradients_match_xla_backend(tmp_path):
    """The whole loss of the tiny config and its gradient for every parameter are the same
    with oneDNN's convolutions and with XLA's, to float32 round-off."""
    if onednn_conv.unavailable_reason():
        pytest.skip(onednn_conv.unavailable_reason())
    config = tiny_config(tmp_path)
    model = models.create_model(config)
    variables = jax.jit(lambda r: models.init_variables(model, config, r))(jax.random.key(0))
    batch = jax.tree.map(jnp.asarray, random_batch(config))

    def loss_and_grads(backend):
        loss = lambda p: train.loss_terms(
            p, variables["batch_stats"], batch, model=model, config=config
        )[0]
        with onednn_conv.backend(backend):
            fn = jax.jit(jax.value_and_grad(loss))
            text = fn.lower(variables["params"]).as_text()
        return fn(variables["params"]), text

    (loss, grads), text = loss_and_grads("onednn")
    (ref_loss, ref_grads), ref_text = loss_and_grads("xla")
    assert "avkd_conv_bwd_weights" in text and "avkd_conv" not in ref_text
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    flat, ref_flat = jax.tree.leaves_with_path(grads), jax.tree.leaves(ref_grads)
    for (path, a), b in zip(flat, ref_flat):
        scale = float(jnp.max(jnp.abs(b))) + 1e-12
        np.testing.assert_allclose(a / scale, b / scale, atol=2e-4, err_msg=str(path))


def test_falls_back_to_xla_where_it_cannot_run(monkeypatch, caplog):
    """Without oneDNN (or a compiler) the model keeps XLA's convolution, and says why."""
    monkeypatch.setattr(onednn_conv, "_load", lambda: "no C++ compiler (g++ or $CXX)")
    onednn_conv._log_once.cache_clear()
    x, kernel = jnp.ones((1, 8, 8, 16)), jnp.ones((3, 3, 16, 4))
    conv = lambda x, k: models.conv_nhwc(
        x, k, (1, 1), ((1, 1),) * 2, dimension_numbers=models._NHWC
    )
    with caplog.at_level(logging.WARNING):
        jaxpr = str(jax.make_jaxpr(conv)(x, kernel))
    assert "avkd_conv" not in jaxpr and "conv_general_dilated" in jaxpr
    assert "no C++ compiler" in caplog.text
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        onednn_conv.conv(x, kernel, (1, 1), ((1, 1),) * 2)
    onednn_conv._log_once.cache_clear()


def test_backend_choice(monkeypatch):
    """$AVKD_JAX_CONV=xla turns oneDNN off; `backend()` overrides it; typos are errors."""
    if onednn_conv.unavailable_reason():
        pytest.skip(onednn_conv.unavailable_reason())
    monkeypatch.setenv("AVKD_JAX_CONV", "xla")
    assert not onednn_conv.enabled()
    with onednn_conv.backend("onednn"):
        assert onednn_conv.enabled()
    monkeypatch.setenv("AVKD_JAX_CONV", "onedn")
    with pytest.raises(ValueError, match="AVKD_JAX_CONV='onedn'"):
        onednn_conv.enabled()
    with pytest.raises(ValueError, match="'cudnn'"):
        with onednn_conv.backend("cudnn"):
            pass


def test_bfloat16_rounds_only_the_results():
    """bfloat16 operands give bfloat16 results: XLA's float32 convolution of the same
    (already bfloat16) values, rounded once, for the output and both gradients."""
    if onednn_conv.unavailable_reason():
        pytest.skip(onednn_conv.unavailable_reason())
    rng = np.random.default_rng(1)
    strides, padding = (2, 2), ((1, 1), (1, 1))
    x = jnp.asarray(rng.standard_normal((2, 12, 11, 16)), jnp.bfloat16)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 16, 32)), jnp.bfloat16)
    ours, ours_vjp = jax.vjp(lambda x, k: onednn_conv.conv(x, k, strides, padding), x, kernel)
    f32 = lambda a: a.astype(jnp.float32)
    ref, ref_vjp = jax.vjp(lambda x, k: _xla(x, k, strides, padding), f32(x), f32(kernel))
    g = jnp.asarray(rng.standard_normal(ref.shape), jnp.bfloat16)
    pairs = [(ours, ref), *zip(ours_vjp(g), ref_vjp(f32(g)))]
    for got, want in pairs:
        assert got.dtype == jnp.bfloat16
        # One rounding to 8 bits of mantissa: within 2^-8 of each value's magnitude.
        np.testing.assert_allclose(f32(got), want, rtol=2**-8, atol=1e-6)
        # And not computed in bfloat16 throughout: most values are the nearest bfloat16.
        assert np.mean(np.asarray(f32(got) == f32(want.astype(jnp.bfloat16)))) > 0.9


def test_bfloat16_without_bfloat16_kernels_converts_around_float32_ones():
    """On a CPU whose oneDNN has no bfloat16 convolution (here: oneDNN limited to AVX2, as
    on CPUs before AVX-512), bfloat16 operands go through float32 kernels, not an error."""
    if onednn_conv.unavailable_reason():
        pytest.skip(onednn_conv.unavailable_reason())
    probe = """
import jax, jax.numpy as jnp, numpy as np
from avkd_jax import onednn_conv
rng = np.random.default_rng(0)
x = jnp.asarray(rng.standard_normal((2, 12, 11, 16)), jnp.bfloat16)
k = jnp.asarray(rng.standard_normal((3, 3, 16, 32)), jnp.bfloat16)
conv = lambda x, k: onednn_conv.conv(x, k, (2, 2), ((1, 1), (1, 1)))
y, vjp = jax.vjp(conv, x, k)
dx, dk = vjp(jnp.ones_like(y))
ref = jax.lax.conv_general_dilated(x.astype(jnp.float32), k.astype(jnp.float32), (2, 2),
    ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest")
np.testing.assert_allclose(y.astype(jnp.float32), ref, rtol=2**-8, atol=1e-6)
print(y.dtype, dx.dtype, dk.dtype)
"""
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", ONEDNN_VERBOSE="1")
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "bfloat16 bfloat16 bfloat16"
    # The kernels that ran were float32 ones, between bfloat16 → float32 conversions.
    kernels = [line for line in out.stdout.splitlines() if ",exec,cpu,convolution," in line]
    assert len(kernels) == 3 and all("src_f32" in line for line in kernels), kernels
    assert "src_bf16::blocked:acdb::f0 dst_f32" in out.stdout
