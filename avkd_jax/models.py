"""The AVC student: a visual and an audio ResNet18 mapped into one embedding space.

Layer structure, padding and parameter names follow torchvision's `resnet18` so that
torchvision (ImageNet) weights and the authors' PyTorch checkpoint map onto ours one to
one (`teachers/convert_resnet.py`). Data layout is NHWC.
"""

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from avkd_jax import audio as audio_lib
from avkd_jax import conv_impl as conv_impl_lib

# torchvision's BatchNorm2d defaults, in Flax's convention (momentum = 1 - torch momentum).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# Initialisation of everything that is not pretrained, as the authors' code does it.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
dense_init = nn.initializers.truncated_normal(stddev=0.01)


ModuleDef = Any

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
    the comparison can fail and the gradient goes to no position or the wrong one (the
    audio tower's gradient then changes between compilations). The gather sends it to
    the position the forward pass chose, always.
    """
    b, h, w, c = x.shape
    flat = x.reshape(b, h * w, c)
    idx = jax.lax.stop_gradient(jnp.argmax(flat, axis=1))
    return jnp.take_along_axis(flat, idx[:, None, :], axis=1)[:, 0, :]


def max_pool_3x3_s2(x):
    """ResNet's stem max-pool, torchvision's `MaxPool2d(3, 2, padding=1)`: `[B, H, W, C]` →
    `[B, ceil(H/2), ceil(W/2), C]`."""
    return nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3×3 convs with explicit (1, 1) padding."""

    features: int
    strides: int = 1
    dtype: Any = jnp.float32
    conv: ModuleDef = nn.Conv

    @nn.compact
    def __call__(self, x, train: bool):
        conv = lambda f, k, s, p, name: self.conv(
            f,
            (k, k),
            (s, s),
            padding=((p, p), (p, p)),
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
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
    conv: ModuleDef = nn.Conv
    max_pool: Callable = max_pool_3x3_s2

    @nn.compact
    def __call__(self, x, train: bool):
        base = int(round(64 * self.width))
        x = x.astype(self.dtype)
        x = self.conv(
            base,
            (7, 7),
            (2, 2),
            padding=((3, 3), (3, 3)),
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
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
        x = self.max_pool(x)
        for stage, num_blocks in enumerate(self.stage_sizes):
            for block in range(num_blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(
                    base * 2**stage,
                    strides,
                    self.dtype,
                    self.conv,
                    name=f"layer{stage + 1}_{block}",
                )(x, train)
        return x


class VisualStudent(nn.Module):
    """`[B, H, W, 3]` normalised image → L2-normalised map `[B, H/32, W/32, embed_dim]`."""

    width: float = 1.0
    embed_dim: int = 2048
    dtype: Any = jnp.float32
    conv: ModuleDef = nn.Conv
    max_pool: Callable = max_pool_3x3_s2

    @nn.compact
    def __call__(self, image, train: bool):
        x = ResNet18Trunk(
            self.width, dtype=self.dtype, conv=self.conv, max_pool=self.max_pool, name="imgnet"
        )(image, train)
        # A 1×1 projection with bias: XLA's own convolution, whatever `conv` is.
        x = nn.Conv(
            self.embed_dim, (1, 1), kernel_init=conv_init, dtype=self.dtype, name="img_proj"
        )(x)
        return l2_normalize(x)


class AudioStudent(nn.Module):
    """`[B, F, T, 1]` scaled log-spectrogram → L2-normalised embedding `[B, embed_dim]`."""

    width: float = 1.0
    embed_dim: int = 2048
    dtype: Any = jnp.float32
    conv: ModuleDef = nn.Conv
    max_pool: Callable = max_pool_3x3_s2

    @nn.compact
    def __call__(self, spec, train: bool):
        x = ResNet18Trunk(
            self.width, dtype=self.dtype, conv=self.conv, max_pool=self.max_pool, name="audnet"
        )(spec, train)
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
    conv: ModuleDef = nn.Conv
    max_pool: Callable = max_pool_3x3_s2

    @nn.compact
    def __call__(self, image, pcm, train: bool):
        spec = audio_lib.spectrogram_input(pcm, self.sample_rate)
        layers = dict(conv=self.conv, max_pool=self.max_pool)
        a = AudioStudent(self.width, self.embed_dim, self.dtype, **layers, name="audio")(
            spec, train
        )
        v = VisualStudent(self.width, self.embed_dim, self.dtype, **layers, name="visual")(
            image_input(image), train
        )
        return a.astype(jnp.float32), v.astype(jnp.float32)


def create_model(config, conv_impl: str | None = None) -> AVC:
    """The AVC model a config describes, its layers from `conv_impl` (default:
    `config.model.conv_impl`, see `avkd_jax.conv_impl`)."""
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.model.dtype]
    if conv_impl is None:
        conv_impl = config.model.get("conv_impl", conv_impl_lib.DEFAULT)
    return AVC(
        width=config.model.width,
        embed_dim=config.model.embed_dim,
        sample_rate=config.sample_rate,
        dtype=dtype,
        **conv_impl_lib.layers(conv_impl),
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
    with conv_impl_lib.without_custom_calls():
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
