"""The students' convolution on the CPU: oneDNN's, XLA's with a hand-written weight
gradient, or XLA's own, whichever runs the case given fastest here."""

import jax
import jax.numpy as jnp

from avkd_jax.cpu_kernels import onednn, xla_grads


def conv(
    x,
    kernel,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    precision=None,
):
    """`jax.lax.conv_general_dilated` for `nn.Conv(conv_general_dilated=...)`: the same
    value, `x [N, H, W, C]`, `kernel [KH, KW, C, O]` → `[N, Ho, Wo, O]` for NHWC/HWIO.

    On one CPU device, the plain NHWC convolutions of a ResNet (float32 or bfloat16) go to
    oneDNN (`onednn.conv`). Where oneDNN cannot run (not installed, no compiler,
    $AVKD_JAX_CONV=xla), those with 16 or more input channels keep XLA's convolution with
    the hand-written gradient (`xla_grads.conv`), and the stems (1 or 3 channels) XLA's
    own gradient. Everything else is XLA's own convolution and gradient: on several
    devices, on GPUs and TPUs, for dilated, grouped, string- or negatively padded
    convolutions.
    """
    # With the batch sharded, the custom call and the identity matmul would both need the
    # activation gathered; in a stem the transpose is cheap and the identity matmul is not.
    plain = (
        jax.default_backend() == "cpu"
        and jax.device_count() == 1
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
        and feature_group_count == 1
        and dimension_numbers == xla_grads.NHWC
        and not isinstance(padding, str)
        and precision is None
    )
    if plain:
        window_strides = tuple(window_strides)
        padding = tuple(tuple(int(p) for p in pair) for pair in padding)
    if (
        plain
        and x.dtype == kernel.dtype
        and x.dtype in (jnp.float32, jnp.bfloat16)
        and min(min(pair) for pair in padding) >= 0
        and onednn.enabled()
    ):
        return onednn.conv(x, kernel, window_strides, padding)
    if not plain or kernel.shape[2] < 16:
        return jax.lax.conv_general_dilated(
            x,
            kernel,
            window_strides,
            padding,
            lhs_dilation,
            rhs_dilation,
            dimension_numbers,
            feature_group_count,
            precision=precision,
        )
    return xla_grads.conv(x, kernel, window_strides, padding)
