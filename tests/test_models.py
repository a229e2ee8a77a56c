"""Model structure: parameter counts against torchvision's ResNet18, output shapes; the
hand-written max-pool and convolution gradients against torch."""

import os

import jax
import numpy as np
import pytest

from avkd_jax import default_config, models, onednn_conv

# torchvision.models.resnet18(): 11,689,512 parameters, of which fc is 512·1000 + 1000.
TORCHVISION_RESNET18_TRUNK = 11_689_512 - 513_000
CONV1_RGB_MINUS_MONO = 64 * 7 * 7 * (3 - 1)
PROJ = 512 * 2048 + 2048  # Conv2d(512, 2048, 1) and Linear(512, 2048), with bias.


def paper_variables():
    config = default_config.base_config()
    model = models.create_model(config)
    return (
        config,
        model,
        jax.eval_shape(lambda rng: models.init_variables(model, config, rng), jax.random.key(0)),
    )


def test_paper_parameter_count_matches_torchvision_layout():
    _, _, variables = paper_variables()
    params = variables["params"]
    assert models.count_params(params["visual"]) == TORCHVISION_RESNET18_TRUNK + PROJ
    assert models.count_params(params["audio"]) == (
        TORCHVISION_RESNET18_TRUNK - CONV1_RGB_MINUS_MONO + PROJ
    )
    total = models.count_params(params)
    assert total == pytest.approx(24.5e6, abs=0.1e6)  # The paper's 24.5 M.
    # BatchNorm running statistics: mean and var per channel of 20 BN layers per trunk.
    bn_channels = 64 + 4 * 64 + 5 * 128 + 5 * 256 + 5 * 512
    assert models.count_params(variables["batch_stats"]) == 2 * 2 * bn_channels


def test_torchvision_names_and_shapes():
    _, _, variables = paper_variables()
    v = variables["params"]["visual"]["imgnet"]
    assert v["conv1"]["kernel"].shape == (7, 7, 3, 64)
    assert v["layer2_0"]["downsample_conv"]["kernel"].shape == (1, 1, 64, 128)
    assert "downsample_conv" not in v["layer2_1"]
    assert variables["params"]["audio"]["audnet"]["conv1"]["kernel"].shape == (7, 7, 1, 64)


def test_output_shapes_and_normalisation():
    config = default_config.base_config()
    config.model.width = 0.125
    config.model.embed_dim = 32
    config.model.dtype = "float32"  # Unit norm to 1e-5 (bfloat16 normalises to 2^-9).
    model = models.create_model(config)
    variables = models.init_variables(model, config, jax.random.key(0))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    pcm = rng.integers(-5000, 5000, (2, 66150), dtype=np.int16)
    a, v = model.apply(variables, image, pcm, train=False)
    assert a.shape == (2, 32) and v.shape == (2, 7, 7, 32)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(a), axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(v), axis=-1), 1.0, rtol=1e-5)


def test_image_input_is_torchvision_normalize():
    image = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3) * 3
    expected = (image / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(models.image_input(image), expected, atol=1e-6)


def test_summary_reports_counts_and_flops():
    text = models.summary(default_config.base_config())
    assert "24.448 M parameters" in text
    flops = float(text.split("cost analysis): ")[1].split(" G")[0])
    # Two ResNet18s: ~1.8 GMAC at 224² plus ~2.6 GMAC on 257×276: 8–9 GFLOP (MAC = 2 FLOP).
    assert 7.5 < flops < 9.5


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

    y, vjp = jax.vjp(models.max_pool_3x3_s2, jax.numpy.asarray(x))
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
    """`conv_nhwc` (the students' convolutions: oneDNN's, or XLA's with the hand-written
    weight gradient) against torch's conv2d: output and both gradients to float32
    round-off."""
    import torch

    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = rng.standard_normal((k, k, shape[-1], cout)).astype(np.float32)
    pad = ((k // 2, k // 2),) * 2
    conv = lambda x, w: models.conv_nhwc(
        x, w, (stride, stride), pad, dimension_numbers=models._NHWC
    )
    with onednn_conv.backend(backend):
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
    import subprocess
    import sys

    probe = """
import re, jax, jax.numpy as jnp
from avkd_jax import models, sharding, train
mesh = sharding.create_mesh()
S, P = jax.sharding.NamedSharding, jax.sharding.PartitionSpec
x = jax.device_put(jnp.ones((8, 10, 10, 16)), S(mesh, P("data")))
k = jax.device_put(jnp.ones((3, 3, 16, 16)), S(mesh, P()))
conv = lambda k, x: models.conv_nhwc(x, k, (1, 1), ((1, 1),) * 2, dimension_numbers=models._NHWC)
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
