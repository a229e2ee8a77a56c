"""torchvision ResNet18 → .npz → Flax ResNet18Trunk: same numbers as PyTorch."""

import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from avkd_jax import models, pretrained
from teachers import common, convert_resnet, torch_resnet


def torchvision_resnet18_shapes():
    """torchvision.models.resnet18()'s state_dict, key → shape, written out by hand from
    torchvision/models/resnet.py (BasicBlock, layers [2, 2, 2, 2])."""
    bn = lambda name, c: {
        f"{name}.weight": (c,),
        f"{name}.bias": (c,),
        f"{name}.running_mean": (c,),
        f"{name}.running_var": (c,),
        f"{name}.num_batches_tracked": (),
    }
    shapes = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}
    cin = 64
    for stage, width in enumerate([64, 128, 256, 512], start=1):
        for block in range(2):
            p = f"layer{stage}.{block}"
            shapes[f"{p}.conv1.weight"] = (width, cin, 3, 3)
            shapes.update(bn(f"{p}.bn1", width))
            shapes[f"{p}.conv2.weight"] = (width, width, 3, 3)
            shapes.update(bn(f"{p}.bn2", width))
            if stage > 1 and block == 0:
                shapes[f"{p}.downsample.0.weight"] = (width, cin, 1, 1)
                shapes.update(bn(f"{p}.downsample.1", width))
            cin = width
    shapes["fc.weight"] = (1000, 512)
    shapes["fc.bias"] = (1000,)
    return shapes


def random_resnet18(seed=0, width=1.0):
    """A torch ResNet18 whose BatchNorm affine parameters and running stats are random too,
    so a swapped mean/var or scale/bias would show."""
    torch.manual_seed(seed)
    model = torch_resnet.resnet18(width=width)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_torch_resnet18_has_torchvision_keys_shapes_and_count():
    model = torch_resnet.resnet18()
    sd = model.state_dict()
    expected = torchvision_resnet18_shapes()
    assert list(sd) == list(expected)  # Same keys, same order.
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert len(sd) == 122
    assert sum(p.numel() for p in model.parameters()) == 11_689_512
    mono = torch_resnet.resnet18(in_channels=1, num_classes=10)
    assert mono.conv1.weight.shape == (64, 1, 7, 7) and mono.fc.weight.shape == (10, 512)
    x = torch.zeros(2, 3, 64, 64)
    assert model.trunk(x).shape == (2, 512, 2, 2) and model(x).shape == (2, 1000)


def test_converted_weights_match_torch_in_eval_mode(tmp_path):
    model = random_resnet18()
    pth = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), pth)
    out = tmp_path / "resnet18.npz"
    assert convert_resnet.main([f"--torchvision_pth={pth}", f"--out={out}"]) == 0
    variables = pretrained.load_resnet18_npz(out)

    x = np.random.default_rng(0).standard_normal((2, 3, 96, 80)).astype(np.float32)
    with torch.no_grad():
        expected = model.trunk(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    got = models.ResNet18Trunk().apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False)
    assert got.shape == expected.shape == (2, 3, 3, 512)
    assert np.abs(expected).max() > 0.1  # Not a degenerate all-zero comparison.
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-4, rtol=0)
    # Mean and var land in batch_stats, scale and bias in params, untouched.
    bn = model.layer3[0].downsample[1]
    np.testing.assert_array_equal(
        variables["batch_stats"]["layer3_0"]["downsample_bn"]["var"], bn.running_var.numpy()
    )
    np.testing.assert_array_equal(
        variables["params"]["layer3_0"]["downsample_bn"]["scale"], bn.weight.detach().numpy()
    )
    assert not [p for p in os.listdir(tmp_path) if ".tmp." in p]


def test_quarter_width_resnet18_converts_and_matches_flax(tmp_path):
    model = random_resnet18(2, width=0.25)
    # Channels 16, 32, 64, 128 (the student's `round(64 * width)`, doubling per stage).
    assert model.conv1.weight.shape == (16, 3, 7, 7) and model.fc.weight.shape == (1000, 128)
    assert model.layer4[0].downsample[0].weight.shape == (128, 64, 1, 1)
    torch.save(model.state_dict(), tmp_path / "quarter.pth")
    convert_resnet.convert(str(tmp_path / "quarter.pth"), str(tmp_path / "quarter.npz"))
    variables = pretrained.load_resnet18_npz(tmp_path / "quarter.npz", width=0.25)
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 96)).astype(np.float32)
    with torch.no_grad():
        expected = model.trunk(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    got = models.ResNet18Trunk(0.25).apply(
        variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False
    )
    assert got.shape == expected.shape == (2, 2, 3, 128)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-4, rtol=0)
    # The trunk has every parameter but fc's; the full-width file does not load as width 0.25.
    params = sum(v.size for k, v in np.load(tmp_path / "quarter.npz").items() if "params/" in k)
    fc = sum(p.numel() for p in model.fc.parameters())
    assert params == sum(p.numel() for p in model.parameters()) - fc
    full = tmp_path / "full.npz"
    convert_resnet.save_npz(
        str(full), convert_resnet.torchvision_to_flax(random_resnet18().state_dict())
    )
    with pytest.raises(pretrained.PretrainedError, match="width 0.25"):
        pretrained.load_resnet18_npz(full, width=0.25)


def test_wrapped_and_prefixed_checkpoints(tmp_path):
    sd = random_resnet18(1).state_dict()
    plain = convert_resnet.torchvision_to_flax(sd)
    wrapped = {"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "wrapped.pth")
    arrays = convert_resnet.convert(str(tmp_path / "wrapped.pth"), str(tmp_path / "w.npz"))
    assert arrays.keys() == plain.keys()
    for k in plain:
        np.testing.assert_array_equal(arrays[k], plain[k])
    # The authors' checkpoint layout: a trunk under 'imgnet.', other modules beside it.
    authors = {f"imgnet.{k}": v for k, v in sd.items() if not k.startswith("fc.")}
    authors["img_proj.weight"] = torch.zeros(2048, 512, 1, 1)
    prefixed = convert_resnet.torchvision_to_flax(authors, prefix="imgnet.")
    np.testing.assert_array_equal(prefixed["params/conv1/kernel"], plain["params/conv1/kernel"])
    assert plain["params/conv1/kernel"].shape == (7, 7, 3, 64)
    assert plain["params/layer2_0/downsample_conv/kernel"].shape == (1, 1, 64, 128)
    assert "params/layer1_0/downsample_conv/kernel" not in plain


def test_conversion_errors_name_the_key():
    sd = torch_resnet.resnet18().state_dict()
    broken = dict(sd)
    del broken["layer3.1.bn2.running_var"]
    with pytest.raises(convert_resnet.ConversionError, match=r"'layer3\.1\.bn2\.running_var'"):
        convert_resnet.torchvision_to_flax(broken)
    extra = dict(sd, **{"layer5.0.conv1.weight": torch.zeros(1, 1, 3, 3)})
    with pytest.raises(convert_resnet.ConversionError, match=r"unexpected key 'layer5"):
        convert_resnet.torchvision_to_flax(extra)


class _Payload:
    """Unpickling this calls os.system: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_whose_pickle_runs_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    pth = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": _Payload(marker)}, pth)
    # The payload is real: an unsafe load would run it.
    torch.load(pth, weights_only=False)
    assert marker.exists()
    marker.unlink()

    with pytest.raises(common.CheckpointError, match="refused"):
        convert_resnet.convert(str(pth), str(tmp_path / "out.npz"))
    assert convert_resnet.main([f"--torchvision_pth={pth}", f"--out={tmp_path / 'o.npz'}"]) == 1
    assert "evil.pth: refused" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out.npz").exists()
    with pytest.raises(common.CheckpointError, match="does not exist"):
        common.load_checkpoint(tmp_path / "missing.pth")


def test_npz_loader_errors_name_the_key(tmp_path):
    arrays = convert_resnet.torchvision_to_flax(torch_resnet.resnet18().state_dict())
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        pretrained.load_resnet18_npz(tmp_path / "nothing.npz")

    def saved(name, d):
        convert_resnet.save_npz(str(tmp_path / name), d)
        return tmp_path / name

    missing = {k: v for k, v in arrays.items() if k != "batch_stats/layer4_1/bn2/mean"}
    with pytest.raises(pretrained.PretrainedError, match="missing key 'batch_stats/layer4_1/bn2"):
        pretrained.load_resnet18_npz(saved("missing.npz", missing))
    extra = dict(arrays, **{"params/fc/kernel": np.zeros((512, 10), np.float32)})
    with pytest.raises(pretrained.PretrainedError, match="unexpected key 'params/fc/kernel'"):
        pretrained.load_resnet18_npz(saved("extra.npz", extra))
    with pytest.raises(pretrained.PretrainedError, match=r"'params/conv1/kernel' has shape"):
        pretrained.load_resnet18_npz(saved("rgb.npz", arrays), in_channels=1)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(pretrained.PretrainedError, match="junk.npz: not a readable"):
        pretrained.load_resnet18_npz(tmp_path / "junk.npz")
