"""The CPU kernels (avkd_jax/cpu_kernels): the oneDNN convolution (onednn.py,
csrc/onednn.cc) against XLA's convolution at full precision, the students' gradients
under both backends, and the fallback when it cannot run; the hand-written max-pool and
convolution gradients (xla_grads.py, dispatch.py) against torch."""

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

from avkd_jax import models, train
from avkd_jax.cpu_kernels import dispatch, onednn, xla_grads

X86_LINUX = sys.platform == "linux" and platform.machine() == "x86_64"


def test_available_where_the_wheels_exist():
    """On x86-64 Linux the dependencies install oneDNN and the machine has a compiler:
    there it must build and load, or every other test here would quietly test XLA."""
    if not X86_LINUX:
        pytest.skip("oneDNN wheels are x86-64 Linux only")
    assert onednn.unavailable_reason() is None
    assert onednn.enabled()


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
    """Output, input gradient and kernel gradient of `onednn.conv` equal XLA's
    convolution and autodiff at HIGHEST precision, to float32 round-off."""
    if onednn.unavailable_reason():
        pytest.skip(onednn.unavailable_reason())
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal(kernel_shape), jnp.float32)
    ours, ours_vjp = jax.vjp(lambda x, k: onednn.conv(x, k, strides, padding), x, kernel)
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
    if onednn.unavailable_reason():
        pytest.skip(onednn.unavailable_reason())
    config = tiny_config(tmp_path)
    model = models.create_model(config)
    variables = jax.jit(lambda r: models.init_variables(model, config, r))(jax.random.key(0))
    batch = jax.tree.map(jnp.asarray, random_batch(config))

    def loss_and_grads(backend):
        loss = lambda p: train.loss_terms(
            p, variables["batch_stats"], batch, model=model, config=config
        )[0]
        with onednn.backend(backend):
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
    monkeypatch.setattr(onednn, "_load", lambda: "no C++ compiler (g++ or $CXX)")
    onednn._log_once.cache_clear()
    x, kernel = jnp.ones((1, 8, 8, 16)), jnp.ones((3, 3, 16, 4))
    conv = lambda x, k: dispatch.conv(x, k, (1, 1), ((1, 1),) * 2, dimension_numbers=xla_grads.NHWC)
    with caplog.at_level(logging.WARNING):
        jaxpr = str(jax.make_jaxpr(conv)(x, kernel))
    assert "avkd_conv" not in jaxpr and "conv_general_dilated" in jaxpr
    assert "no C++ compiler" in caplog.text
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        onednn.conv(x, kernel, (1, 1), ((1, 1),) * 2)
    onednn._log_once.cache_clear()


def test_without_the_cpu_extra_says_why_at_info(monkeypatch, caplog):
    """oneDNN not installed (the `cpu` extra left out) is a choice: XLA's convolution, and
    one INFO line saying why, no warning."""
    monkeypatch.setattr(onednn, "_load", lambda: onednn.NOT_INSTALLED)
    onednn._log_once.cache_clear()
    x, kernel = jnp.ones((1, 8, 8, 16)), jnp.ones((3, 3, 16, 4))
    conv = lambda x, k: dispatch.conv(x, k, (1, 1), ((1, 1),) * 2, dimension_numbers=xla_grads.NHWC)
    with caplog.at_level(logging.INFO):
        jaxpr = str(jax.make_jaxpr(conv)(x, kernel))
        jax.make_jaxpr(conv)(x, kernel)
    assert "avkd_conv" not in jaxpr and "conv_general_dilated" in jaxpr
    said = [r for r in caplog.records if "cpu extra" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO], caplog.text
    onednn._log_once.cache_clear()


def test_backend_choice(monkeypatch):
    """$AVKD_JAX_CONV=xla turns oneDNN off; `backend()` overrides it; typos are errors."""
    if onednn.unavailable_reason():
        pytest.skip(onednn.unavailable_reason())
    monkeypatch.setenv("AVKD_JAX_CONV", "xla")
    assert not onednn.enabled()
    with onednn.backend("onednn"):
        assert onednn.enabled()
    monkeypatch.setenv("AVKD_JAX_CONV", "onedn")
    with pytest.raises(ValueError, match="AVKD_JAX_CONV='onedn'"):
        onednn.enabled()
    with pytest.raises(ValueError, match="'cudnn'"):
        with onednn.backend("cudnn"):
            pass


def test_bfloat16_rounds_only_the_results():
    """bfloat16 operands give bfloat16 results: XLA's float32 convolution of the same
    (already bfloat16) values, rounded once, for the output and both gradients."""
    if onednn.unavailable_reason():
        pytest.skip(onednn.unavailable_reason())
    rng = np.random.default_rng(1)
    strides, padding = (2, 2), ((1, 1), (1, 1))
    x = jnp.asarray(rng.standard_normal((2, 12, 11, 16)), jnp.bfloat16)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 16, 32)), jnp.bfloat16)
    ours, ours_vjp = jax.vjp(lambda x, k: onednn.conv(x, k, strides, padding), x, kernel)
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
    if onednn.unavailable_reason():
        pytest.skip(onednn.unavailable_reason())
    probe = """
import jax, jax.numpy as jnp, numpy as np
from avkd_jax.cpu_kernels import onednn
rng = np.random.default_rng(0)
x = jnp.asarray(rng.standard_normal((2, 12, 11, 16)), jnp.bfloat16)
k = jnp.asarray(rng.standard_normal((3, 3, 16, 32)), jnp.bfloat16)
conv = lambda x, k: onednn.conv(x, k, (2, 2), ((1, 1), (1, 1)))
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


@pytest.mark.parametrize("shape", [(2, 8, 10, 3), (2, 7, 9, 3), (1, 129, 138, 4)])
@pytest.mark.parametrize("ties", [False, True])
def test_stem_max_pool_matches_torch_value_and_gradient(shape, ties):
    """The separable max-pool against torch's max_pool2d(3, 2, 1): outputs bit for bit,
    input gradients to float32 round-off (an input in two windows sums two terms in
    another order); with ties (small integers) the gradient goes to the same element."""
    import torch

    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, shape) if ties else rng.standard_normal(shape)
    x = x.astype(np.float32)
    b, h, w, c = shape
    g = rng.standard_normal((b, (h + 1) // 2, (w + 1) // 2, c)).astype(np.float32)

    y, vjp = jax.vjp(xla_grads.max_pool_3x3_s2, jax.numpy.asarray(x))
    (dx,) = vjp(jax.numpy.asarray(g))

    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, 3, 2, 1)
    yt.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    np.testing.assert_array_equal(np.asarray(y), yt.detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_allclose(
        np.asarray(dx), xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-6, atol=1e-6
    )
    if ties:  # Ties are common here: the comparison above is meaningful.
        assert np.mean(x == 2) > 0.3


@pytest.mark.parametrize(
    "shape, cout, k, stride",
    [
        ((2, 23, 20, 16), 8, 7, 2),  # A stem's shape, odd and even sides.
        ((2, 23, 20, 3), 8, 7, 2),  # The visual stem.
        ((2, 21, 24, 1), 8, 7, 2),  # The audio stem.
        ((3, 9, 10, 16), 16, 3, 1),
        ((3, 9, 10, 16), 32, 3, 2),  # The stride-2 block's first conv: a row is cut.
        ((2, 8, 7, 16), 32, 1, 2),  # The downsampling 1×1 (no padding).
    ],
)
@pytest.mark.parametrize("backend", ["onednn", "xla"])
def test_conv_gradients_match_torch(shape, cout, k, stride, backend):
    """`dispatch.conv` (the students' convolutions: oneDNN's, or XLA's with the hand-written
    weight gradient) against torch's conv2d: output and both gradients to float32
    round-off."""
    import torch

    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = rng.standard_normal((k, k, shape[-1], cout)).astype(np.float32)
    pad = ((k // 2, k // 2),) * 2
    conv = lambda x, w: dispatch.conv(x, w, (stride, stride), pad, dimension_numbers=xla_grads.NHWC)
    with onednn.backend(backend):
        y, vjp = jax.vjp(jax.jit(conv), jax.numpy.asarray(x), jax.numpy.asarray(kernel))
        jaxpr = str(jax.make_jaxpr(conv)(x, kernel))
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx, dk = vjp(jax.numpy.asarray(g))

    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    kt = torch.tensor(kernel.transpose(3, 2, 0, 1), requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, kt, stride=stride, padding=k // 2)
    yt.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    close(np.asarray(y), yt.detach().numpy().transpose(0, 2, 3, 1))
    close(np.asarray(dx), xt.grad.numpy().transpose(0, 2, 3, 1))
    close(np.asarray(dk), kt.grad.numpy().transpose(2, 3, 1, 0))
    # The path under test is the one taken: oneDNN's custom call, or the custom rule
    # (which XLA's path uses from 16 input channels on).
    assert ("avkd_conv_fwd" in jaxpr) == (backend == "onednn"), jaxpr
    assert ("custom_vjp" in jaxpr) == (backend == "onednn" or shape[-1] >= 16), jaxpr


def test_conv_gradient_on_several_devices_reduces_only_the_kernel():
    """With the batch sharded over devices the convolutions keep XLA's gradient: the one
    collective of a convolution's backward is the kernel gradient's all-reduce (the
    identity matmul would add one over the whole activation)."""
    probe = """
import re, jax, jax.numpy as jnp
from avkd_jax import sharding
from avkd_jax.cpu_kernels import dispatch, xla_grads
mesh = sharding.create_mesh()
S, P = jax.sharding.NamedSharding, jax.sharding.PartitionSpec
x = jax.device_put(jnp.ones((8, 10, 10, 16)), S(mesh, P("data")))
k = jax.device_put(jnp.ones((3, 3, 16, 16)), S(mesh, P()))
conv = lambda k, x: dispatch.conv(x, k, (1, 1), ((1, 1),) * 2, dimension_numbers=xla_grads.NHWC)
grad = jax.jit(jax.grad(lambda k, x: jnp.sum(conv(k, x) ** 2)))
print(re.findall(r"= (\\S+) all-reduce\\(", grad.lower(k, x).compile().as_text()))
"""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "['f32[3,3,16,16]{3,2,1,0}']", out.stdout + out.stderr
