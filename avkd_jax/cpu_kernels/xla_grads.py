"""XLA's own max-pool and convolution with hand-written gradients: the stem's 3×3/s2
max-pool as two separable passes, and the NHWC convolution whose weight gradient reads its
input without XLA:CPU's strided transpose. Same values as the plain ops; faster on the CPU."""

import functools

import jax
import jax.numpy as jnp


def _max3(lo, mid, hi):
    """Elementwise max of three arrays, and which one holds it (0, 1, 2: the first on ties).

    `which` compares the inputs with each other, not with the max: should XLA recompute
    them in another fusion with other round-off, it still names one of the largest.
    """
    which = jnp.where(lo >= mid, jnp.where(lo >= hi, 0, 2), jnp.where(mid >= hi, 1, 2))
    return jnp.maximum(jnp.maximum(lo, mid), hi), which.astype(jnp.int8)


def _pad_axis(x, axis, lo, hi, value):
    pad = [(0, 0)] * x.ndim
    pad[axis] = (lo, hi)
    return jnp.pad(x, pad, constant_values=value)


def _pool_axis(x, axis):
    """Window 3, stride 2, padding 1 along `axis` (length n → (n + 1) // 2):
    out[i] = max(x[2i - 1], x[2i], x[2i + 1]), and which of the three it was."""
    n = x.shape[axis]
    m = (n + 1) // 2
    even = jax.lax.slice_in_dim(x, 0, n, 2, axis=axis)  # x[2i], m of them
    odd = jax.lax.slice_in_dim(x, 1, n, 2, axis=axis)  # x[2i + 1], n // 2 of them
    before = jax.lax.slice_in_dim(_pad_axis(odd, axis, 1, 0, -jnp.inf), 0, m, axis=axis)
    return _max3(before, even, _pad_axis(odd, axis, 0, m - n // 2, -jnp.inf))


def _unpool_axis(g, which, axis, n):
    """The transpose of `_pool_axis` (input length n): g[i] goes to the chosen one of
    x[2i - 1], x[2i], x[2i + 1]."""
    m = g.shape[axis]
    zero = jnp.zeros_like(g)
    to_even = jnp.where(which == 1, g, zero)
    to_odd = jnp.where(which == 2, g, zero)
    to_before = jnp.where(which == 0, g, zero)  # x[2i - 1] is the odd one of i - 1.
    to_odd += jax.lax.slice_in_dim(_pad_axis(to_before, axis, 0, 1, 0), 1, m + 1, axis=axis)
    interleaved = jnp.stack([to_even, to_odd], axis=axis + 1)
    interleaved = interleaved.reshape(g.shape[:axis] + (2 * m,) + g.shape[axis + 1 :])
    return jax.lax.slice_in_dim(interleaved, 0, n, axis=axis)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _max_pool(h, w, x):
    return _max_pool_fwd(h, w, x)[0]


def _max_pool_fwd(h, w, x):
    cols, which_col = _pool_axis(x, 2)
    out, which_row = _pool_axis(cols, 1)
    return out, (which_row, which_col)


def _max_pool_bwd(h, w, residuals, g):
    which_row, which_col = residuals
    return (_unpool_axis(_unpool_axis(g, which_row, 1, h), which_col, 2, w),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool_3x3_s2(x):
    """ResNet's stem max-pool (3×3, stride 2, padding 1): `[B, H, W, C]` →
    `[B, ceil(H/2), ceil(W/2), C]`, equal to
    `nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))`.

    The gradient goes to the window's first maximum in row-major order, as torch's
    max_pool2d sends it (the rows are pooled last, so their choice comes first); the
    choices are made once, in the forward pass.
    """
    # XLA:CPU expands reduce-window's gradient into iotas, a variadic reduce-window and a
    # scatter; two separable passes are several times faster (benchmarks/max_pool.py).
    return _max_pool(x.shape[1], x.shape[2], x)


NHWC = jax.lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), ("NHWC", "HWIO", "NHWC"))


def _channels_first_batch_last(x):
    """`[N, H, W, C]` → `[C, H, W, N]`, the layout XLA:CPU's weight-gradient convolution
    reads its input in (batch = C, features = N).

    In two passes that read whole cache lines: a matmul with the N×N identity (exact for
    finite values: one product by 1 per element, the rest zeros), whose `[H·W·C, N]`
    output XLA must write row-major, then a transpose that moves N-long rows.
    """
    # Left to XLA, the transpose is fused into the op that produces `x` and walks it with
    # stride H·W·C, fetching each cache line once per channel it holds.
    n, h, w, c = x.shape
    eye = jnp.eye(n, dtype=x.dtype)
    rows = jax.lax.dot_general(
        x.reshape(n, h * w * c),
        eye,
        (((0,), (0,)), ((), ())),
        precision=jax.lax.Precision.HIGHEST,
        preferred_element_type=x.dtype,
    )
    return jnp.transpose(rows.reshape(h * w, c, n), (1, 0, 2)).reshape(c, h, w, n)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv(x, kernel, strides, padding):
    """`lax.conv_general_dilated(x, kernel, strides, padding)` in NHWC/HWIO, `x [N, H, W, C]`,
    `kernel [KH, KW, C, O]` → `[N, Ho, Wo, O]`, with the weight gradient computed from
    `_channels_first_batch_last(x)`."""
    return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=NHWC)


def _conv_fwd(x, kernel, strides, padding):
    return conv(x, kernel, strides, padding), (x, kernel)


def _conv_bwd(strides, padding, residuals, g):
    x, kernel = residuals
    _, x_vjp = jax.vjp(
        lambda x: jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=NHWC),
        x,
    )
    # dK[i, j, c, o] = Σ_{n,y,x} x_pad[n, s·y + i, s·x + j, c] · g[n, y, x, o]: a stride-1
    # convolution of x (batch c, features n) with g dilated by the stride (in n, out o),
    # its high padding cut so that exactly kh × kw outputs remain.
    kh, kw = kernel.shape[:2]
    (h, w), (ho, wo) = x.shape[1:3], g.shape[1:3]
    pad = [
        (padding[0][0], kh + (ho - 1) * strides[0] - h - padding[0][0]),
        (padding[1][0], kw + (wo - 1) * strides[1] - w - padding[1][0]),
    ]
    dk = jax.lax.conv_general_dilated(
        _channels_first_batch_last(x),
        jnp.transpose(g, (1, 2, 0, 3)),  # [Ho, Wo, N, O]: whole O-long rows move.
        (1, 1),
        pad,
        rhs_dilation=strides,
        dimension_numbers=NHWC,
    )
    return x_vjp(g)[0], jnp.transpose(dk, (1, 2, 0, 3)).astype(kernel.dtype)


conv.defvjp(_conv_fwd, _conv_bwd)
