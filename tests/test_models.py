"""Model structure: parameter counts against torchvision's ResNet18, output shapes, the
plain max-pool against torch; the model apart from the CPU kernels, and `model.conv_impl`
changing no value and no parameter. The kernels themselves: test_cpu_kernels.py."""

import ast
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.configs import random_batch, tiny_config
from helpers.paths import REPO

from avkd_jax import conv_impl, default_config, models, train

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
def test_plain_max_pool_matches_torch_value(shape):
    """The model's own stem max-pool (XLA's reduce-window) is torch's max_pool2d(3, 2, 1)."""
    import torch

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y = models.max_pool_3x3_s2(jnp.asarray(x))
    yt = torch.nn.functional.max_pool2d(torch.tensor(x.transpose(0, 3, 1, 2)), 3, 2, 1)
    np.testing.assert_array_equal(np.asarray(y), yt.numpy().transpose(0, 2, 3, 1))


def test_models_imports_no_cpu_kernel():
    """`avkd_jax.models` is the plain model: importing it loads none of the CPU kernels."""
    probe = "import avkd_jax.models, sys; print([m for m in sys.modules if 'cpu_kernels' in m])"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def _setup_kwargs() -> dict:
    """setup()'s requirements and package data, as literals read from setup.py's source."""
    tree = ast.parse((REPO / "setup.py").read_text())
    call = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "setup"
    )
    keys = ("install_requires", "extras_require", "package_data")
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in keys}


def test_onednn_is_the_cpu_extra_only():
    """A bare install brings no oneDNN; the `cpu` extra brings both of its wheels."""
    kwargs = _setup_kwargs()
    assert not [r for r in kwargs["install_requires"] if "onednn" in r.lower()]
    cpu = [r.split("==")[0] for r in kwargs["extras_require"]["cpu"]]
    assert cpu == ["onednn-cpu-gomp", "onednn-devel-cpu-gomp"]
    assert kwargs["package_data"] == {"avkd_jax.cpu_kernels": ["csrc/*.cc"]}
    assert (REPO / "avkd_jax" / "cpu_kernels" / "csrc" / "onednn_conv.cc").is_file()


def test_conv_impl_choices():
    """conv_impl "xla" keeps the modules' defaults; on one CPU device "auto" takes the kernels;
    anything else is an error."""
    assert conv_impl.layers("xla") == {}
    if jax.default_backend() == "cpu" and jax.device_count() == 1:
        from avkd_jax import cpu_kernels

        assert conv_impl.layers("auto") == {
            "conv": cpu_kernels.Conv,
            "max_pool": cpu_kernels.max_pool,
        }
    with pytest.raises(ValueError, match="'onednn'"):
        conv_impl.layers("onednn")
    assert default_config.base_config().model.conv_impl == "auto"


def test_conv_impl_changes_no_parameter_and_no_value(tmp_path):
    """The tiny config's model under conv_impl="xla" and "auto": the same parameter tree
    from the same key, and the same outputs, loss and gradients, to float32 round-off."""
    config = tiny_config(tmp_path)
    config.model.dtype = "float32"
    batch = jax.tree.map(jnp.asarray, random_batch(config))
    results = {}
    for impl in ("auto", "xla"):
        config.model.conv_impl = impl
        model = models.create_model(config)
        variables = jax.jit(lambda r: models.init_variables(model, config, r))(jax.random.key(0))
        outputs = jax.jit(lambda v: model.apply(v, batch["image"], batch["audio"], train=False))(
            variables
        )
        loss = lambda p: train.loss_terms(
            p, variables["batch_stats"], batch, model=model, config=config
        )[0]
        results[impl] = variables, outputs, jax.jit(jax.value_and_grad(loss))(variables["params"])
    (variables, outputs, (loss, grads)), (ref_vars, ref_outputs, (ref_loss, ref_grads)) = (
        results["auto"],
        results["xla"],
    )
    assert jax.tree.structure(variables) == jax.tree.structure(ref_vars)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(ref_vars)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    for a, b in zip(outputs, ref_outputs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    flat, ref_flat = jax.tree.leaves_with_path(grads), jax.tree.leaves(ref_grads)
    assert jax.tree.structure(grads) == jax.tree.structure(ref_grads)
    for (path, a), b in zip(flat, ref_flat):
        scale = float(jnp.max(jnp.abs(b))) + 1e-12
        np.testing.assert_allclose(a / scale, b / scale, atol=2e-4, err_msg=str(path))
