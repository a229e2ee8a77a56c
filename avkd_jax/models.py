"""The AVC student: a visual and an audio ResNet18 mapped into one embedding space.

Layer structure, padding and parameter names follow torchvision's `resnet18` so that
torchvision (ImageNet) weights and the authors' PyTorch checkpoint map onto ours one to
one (`teachers/convert_resnet.py`). Data layout is NHWC.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from avkd_jax import audio as audio_lib
from avkd_jax import onednn_conv

# torchvision's BatchNorm2d defaults, in Flax's convention (momentum = 1 - torch momentum).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# Initialisation of everything that is not pretrained, as the authors' code does it.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
dense_init = nn.initializers.truncated_normal(stddev=0.01)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_input(image):
    """uint8 `[B, H, W, 3]` → ImageNet-normalised float32 (ToTensor + Normalize)."""
    x = image.astype(jnp.float32) / 255.0
    return (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def bn_scale_init(key, shape, dtype=jnp.float32):
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def l2_normalize(x, axis=-1, eps=1e-12):
    """x / max(||x||, eps), as torch.nn.functional.normalize."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=axis, keepdims=True))
    return (x / jnp.maximum(norm, eps)).astype(x.dtype)


def spatial_max(x):
    """Max over the spatial axes, `[B, H, W, C]` → `[B, C]`, by argmax and gather.

    `jnp.max`'s gradient finds the maximum again by comparing the input with the output for
    equality; when XLA recomputes the input in the backward pass with a different fusion,
    the comparison can fail and the gradient goes to no position or the wrong one (we saw
    the audio tower's gradient change by 20% between compilations). The gather sends it to
    the position the forward pass chose, always.
    """
    b, h, w, c = x.shape
    flat = x.reshape(b, h * w, c)
    idx = jax.lax.stop_gradient(jnp.argmax(flat, axis=1))
    return jnp.take_along_axis(flat, idx[:, None, :], axis=1)[:, 0, :]


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

    Written as two separable passes with a hand-written gradient because XLA:CPU expands
    reduce-window's gradient (select-and-scatter) into iotas, a variadic reduce-window and
    a scatter: forward + backward at 16×112×112×64 took 269 ms that way, 55 ms this way
    (`benchmarks/max_pool.py`, BENCHMARKS.md). The gradient goes to the window's first
    maximum in row-major order, as torch's max_pool2d sends it (the rows are pooled last,
    so their choice comes first); the choices are made once, in the forward pass.
    """
    return _max_pool(x.shape[1], x.shape[2], x)


_NHWC = jax.lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), ("NHWC", "HWIO", "NHWC"))


def _channels_first_batch_last(x):
    """`[N, H, W, C]` → `[C, H, W, N]`, the layout XLA:CPU's weight-gradient convolution
    reads its input in (batch = C, features = N).

    Left to XLA, this transpose is fused into the elementwise op that produces `x` and
    walks `x` with stride H·W·C along each N-long output row, fetching every cache line of
    `x` once for each of the 16 channels it holds: 0.9 s of op time in a paper-shape step
    (batch 16). Here in two passes that read whole lines: a matmul with the N×N identity
    (exact for finite values: one product by 1 per element, the rest zeros), whose
    `[H·W·C, N]` output XLA must write row-major, then a transpose that moves N-long rows.
    """
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
def _conv(x, kernel, strides, padding):
    return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_NHWC)


def _conv_fwd(x, kernel, strides, padding):
    return _conv(x, kernel, strides, padding), (x, kernel)


def _conv_bwd(strides, padding, residuals, g):
    x, kernel = residuals
    _, x_vjp = jax.vjp(
        lambda x: jax.lax.conv_general_dilated(
            x, kernel, strides, padding, dimension_numbers=_NHWC
        ),
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
        dimension_numbers=_NHWC,
    )
    return x_vjp(g)[0], jnp.transpose(dk, (1, 2, 0, 3)).astype(kernel.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_nhwc(
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
    value, computed where it is fastest.

    On one CPU device, the plain NHWC convolutions of a ResNet (float32 or bfloat16) go to
    oneDNN (`onednn_conv`, the library PyTorch uses): the paper-shape float32 train step
    about 14 % faster, the synthetic one about 23 % (BENCHMARKS.md). Where oneDNN cannot
    run (not installed, no compiler, $AVKD_JAX_CONV=xla), those with 16 or more input
    channels keep XLA's convolution with a hand-written gradient whose weight part
    XLA:CPU computes without its strided transpose (`_channels_first_batch_last`), and the
    stems (1 or 3 channels, where that transpose is cheap and the identity matmul is not)
    XLA's own gradient. Everything else is XLA's own convolution and gradient: on several
    devices (with the batch sharded, the custom call and the identity matmul would both
    need the activation gathered), on GPUs and TPUs, for dilated, grouped, string- or
    negatively padded convolutions.
    """
    plain = (
        jax.default_backend() == "cpu"
        and jax.device_count() == 1
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
        and feature_group_count == 1
        and dimension_numbers == _NHWC
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
        and onednn_conv.enabled()
    ):
        return onednn_conv.conv(x, kernel, window_strides, padding)
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
    return _conv(x, kernel, window_strides, padding)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3×3 convs with explicit (1, 1) padding."""

    features: int
    strides: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        conv = lambda f, k, s, p, name: nn.Conv(
            f,
            (k, k),
            (s, s),
            padding=((p, p), (p, p)),
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
            conv_general_dilated=conv_nhwc,
            name=name,
        )
        norm = lambda name: nn.BatchNorm(
            use_running_average=not train,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            scale_init=bn_scale_init,
            dtype=self.dtype,
            name=name,
        )
        residual = x
        y = nn.relu(norm("bn1")(conv(self.features, 3, self.strides, 1, "conv1")(x)))
        y = norm("bn2")(conv(self.features, 3, 1, 1, "conv2")(y))
        if self.strides != 1 or x.shape[-1] != self.features:
            residual = norm("downsample_bn")(
                conv(self.features, 1, self.strides, 0, "downsample_conv")(x)
            )
        return nn.relu(y + residual)


class ResNet18Trunk(nn.Module):
    """ResNet18 without avgpool and fc: `[B, H, W, C_in]` → `[B, H/32, W/32, 512·width]`."""

    width: float = 1.0
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        base = int(round(64 * self.width))
        x = x.astype(self.dtype)
        x = nn.Conv(
            base,
            (7, 7),
            (2, 2),
            padding=((3, 3), (3, 3)),
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
            conv_general_dilated=conv_nhwc,
            name="conv1",
        )(x)
        x = nn.BatchNorm(
            use_running_average=not train,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            scale_init=bn_scale_init,
            dtype=self.dtype,
            name="bn1",
        )(x)
        x = nn.relu(x)
        x = max_pool_3x3_s2(x)
        for stage, num_blocks in enumerate(self.stage_sizes):
            for block in range(num_blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(
                    base * 2**stage, strides, self.dtype, name=f"layer{stage + 1}_{block}"
                )(x, train)
        return x


class VisualStudent(nn.Module):
    """`[B, H, W, 3]` normalised image → L2-normalised map `[B, H/32, W/32, embed_dim]`."""

    width: float = 1.0
    embed_dim: int = 2048
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, image, train: bool):
        x = ResNet18Trunk(self.width, dtype=self.dtype, name="imgnet")(image, train)
        x = nn.Conv(
            self.embed_dim, (1, 1), kernel_init=conv_init, dtype=self.dtype, name="img_proj"
        )(x)
        return l2_normalize(x)


class AudioStudent(nn.Module):
    """`[B, F, T, 1]` scaled log-spectrogram → L2-normalised embedding `[B, embed_dim]`."""

    width: float = 1.0
    embed_dim: int = 2048
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, spec, train: bool):
        x = ResNet18Trunk(self.width, dtype=self.dtype, name="audnet")(spec, train)
        x = spatial_max(x)  # The paper's global max pool (not torchvision's avgpool).
        x = nn.Dense(self.embed_dim, kernel_init=dense_init, dtype=self.dtype, name="aud_proj")(x)
        return l2_normalize(x)


class AVC(nn.Module):
    """Audio-visual correspondence model.

    Takes raw inputs, a uint8 image `[B, H, W, 3]` and int16 PCM `[B, N]`, so that image
    normalisation and the log-spectrogram run on the device, inside whatever jitted
    function calls the model.

    Returns `(audio_emb [B, D], visual_map [B, h, w, D])`, both L2-normalised, float32.
    """

    width: float = 1.0
    embed_dim: int = 2048
    sample_rate: int = 22050
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, image, pcm, train: bool):
        spec = audio_lib.spectrogram_input(pcm, self.sample_rate)
        a = AudioStudent(self.width, self.embed_dim, self.dtype, name="audio")(spec, train)
        v = VisualStudent(self.width, self.embed_dim, self.dtype, name="visual")(
            image_input(image), train
        )
        return a.astype(jnp.float32), v.astype(jnp.float32)


def create_model(config) -> AVC:
    """The AVC model a config describes."""
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.model.dtype]
    return AVC(
        width=config.model.width,
        embed_dim=config.model.embed_dim,
        sample_rate=config.sample_rate,
        dtype=dtype,
    )


def dummy_inputs(config, batch: int = 1):
    """Zero inputs of the shapes a config feeds the model: uint8 image, int16 PCM."""
    image = jnp.zeros([batch, config.image_size, config.image_size, 3], jnp.uint8)
    pcm = jnp.zeros([batch, int(round(config.sample_rate * config.audio_seconds))], jnp.int16)
    return image, pcm


def init_variables(model: AVC, config, rng) -> dict:
    """Fresh `{'params', 'batch_stats'}` for `model` at the config's input shapes."""
    return model.init(rng, *dummy_inputs(config, 2), train=False)


def count_params(tree) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(tree))


def summary(config) -> str:
    """Parameters per tower and forward FLOPs per sample (XLA's cost analysis, eval mode)."""
    model = create_model(config)
    variables = jax.eval_shape(lambda rng: init_variables(model, config, rng), jax.random.key(0))
    params = variables["params"]
    towers = {"audio student": params["audio"], "visual student": params["visual"]}
    image, pcm = dummy_inputs(config, 1)
    with onednn_conv.backend("xla"):  # XLA's cost analysis does not see into custom calls.
        lowered = jax.jit(lambda v, i, a: model.apply(v, i, a, train=False)).lower(
            variables, image, pcm
        )
    cost = lowered.compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", float("nan")))
    spec_t = (int(round(config.sample_rate * config.audio_seconds)) - 274) // 238
    lines = [
        f"AVC model: image {config.image_size}², audio {config.audio_seconds:g} s at "
        f"{config.sample_rate} Hz (log-spectrogram 257×{spec_t}), width "
        f"{config.model.width:g}, embedding {config.model.embed_dim}, "
        f"{config.model.dtype}"
    ]
    for name, tree in towers.items():
        lines.append(f"  {name:15s} {count_params(tree) / 1e6:8.3f} M parameters")
    lines.append(
        f"  {'total':15s} {count_params(params) / 1e6:8.3f} M parameters "
        f"(+ {count_params(variables['batch_stats']) / 1e3:.1f} k BatchNorm statistics)"
    )
    lines.append(f"  forward FLOPs per sample (XLA cost analysis): {flops / 1e9:.2f} G")
    return "\n".join(lines)
