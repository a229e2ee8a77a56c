"""The authors' PyTorch AVC checkpoint → our parameters (`teachers.convert_avc`, --mode=import).

The reference is a PyTorch AVC built here to the checkpoint's key layout (docs/design.md, Model and losses) from
`teachers/torch_resnet.py` (torchvision's ResNet18) with random weights and BatchNorm
statistics, run as the authors' code runs it: 1×1 conv projection and L2 norm of the image
map, global max pool, linear projection and L2 norm of the audio embedding, and the map
<v[h, w], a>. Its audio input is our own spectrogram of the PCM.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers.configs import load_config, tiny_config
from helpers.paths import REPO
from helpers.torch_reference import TorchAVC, random_avc, save_as_released

from avkd_jax import audio, localize, models, pretrained
from avkd_jax import state as train_state
from avkd_jax.eval import fusion
from teachers import convert_avc
from teachers.convert_resnet import ConversionError


def small_config(tmp_path):
    c = tiny_config(tmp_path / "data")
    c.image_size = 96  # a 3 × 3 map
    c.model.width = 0.25
    c.model.embed_dim = 32
    return c


def test_imported_checkpoint_gives_the_reference_maps(tmp_path):
    config = small_config(tmp_path)
    net = random_avc(config.model.width, config.model.embed_dim)
    pth = save_as_released(net, tmp_path / "avc.pth")
    npz = str(tmp_path / "avc.npz")
    assert convert_avc.main([f"--pth={pth}", f"--out={npz}"]) == 0

    # The CLI a user runs: a workdir with config.json and a step-0 checkpoint.
    workdir = tmp_path / "authors"
    overrides = [
        f"--config.data_dir={config.data_dir}",
        "--config.image_size=96",
        "--config.audio_seconds=0.5",
        "--config.model.width=0.25",
        "--config.model.embed_dim=32",
    ]
    out = subprocess.run(
        [sys.executable, "-m", "avkd_jax.main", "--config=configs/synthetic.py"]
        + [f"--workdir={workdir}", "--mode=import", f"--npz={npz}"]
        + overrides,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = localize.load_run(str(workdir))
    assert run.step == 0
    # Imported into float32 though the config trains in bfloat16: the authors' arithmetic.
    assert run.model.dtype == np.float32

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, [2, 96, 96, 3], dtype=np.uint8)
    t = np.arange(int(config.sample_rate * config.audio_seconds)) / config.sample_rate
    pcm = np.stack([8000 * np.sin(2 * np.pi * f * t) for f in (440.0, 1700.0)])
    pcm = (pcm + rng.normal(0, 500, pcm.shape)).astype(np.int16)

    ours = np.asarray(fusion.model_maps(run.model, run.variables, image, pcm))
    x = (image / 255.0 - np.array(models.IMAGENET_MEAN)) / np.array(models.IMAGENET_STD)
    spec = np.asarray(audio.spectrogram_input(pcm, config.sample_rate))  # [B, F, T, 1]
    with torch.no_grad():
        reference = net(
            torch.from_numpy(x.transpose(0, 3, 1, 2)).float(),
            torch.from_numpy(spec.transpose(0, 3, 1, 2).copy()).float(),
        ).numpy()
    assert ours.shape == reference.shape == (2, 3, 3)
    assert np.abs(reference).max() > 0.05  # Not a degenerate all-zero comparison.
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)

    # A second import into the same workdir would overwrite a run: refused.
    with pytest.raises(FileExistsError, match="already holds a checkpoint"):
        train_state.import_npz(config, str(workdir), npz)


def test_paper_sized_checkpoint_fits_the_paper_config(tmp_path):
    net = TorchAVC(1.0, 2048)
    arrays = convert_avc.avc_to_flax({"state_dict": net.state_dict()})
    assert "width=1, model.embed_dim=2048" in convert_avc.describe(arrays)
    npz = str(tmp_path / "avc.npz")
    convert_avc.save_npz(npz, arrays)
    config = load_config("flickr10k")
    variables = pretrained.load_avc_npz(npz, models.create_model(config), config)
    kernel = variables["params"]["audio"]["audnet"]["conv1"]["kernel"]
    np.testing.assert_array_equal(
        kernel, net.audnet.conv1.weight.detach().numpy().transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        variables["params"]["audio"]["aud_proj"]["kernel"],
        net.aud_proj.weight.detach().numpy().T,
    )
    # The wrong config is named: another width or embedding size.
    config.model.width = 0.5
    with pytest.raises(pretrained.PretrainedError, match=r"has shape .*model\.width=0\.5"):
        pretrained.load_avc_npz(npz, models.create_model(config), config)


def test_layout_errors_name_the_key(tmp_path, capsys):
    sd = random_avc(0.125, 8).state_dict()
    with pytest.raises(ConversionError, match="missing key 'aud_proj.bias'"):
        convert_avc.avc_to_flax({k: v for k, v in sd.items() if k != "aud_proj.bias"})
    with pytest.raises(ConversionError, match="unexpected key 'classifier.weight'"):
        convert_avc.avc_to_flax({**sd, "classifier.weight": torch.zeros(3)})
    with pytest.raises(ConversionError, match="missing key 'imgnet.layer3.0.conv1.weight'"):
        convert_avc.avc_to_flax(
            {k: v for k, v in sd.items() if k != "imgnet.layer3.0.conv1.weight"}
        )
    three = dict(sd, **{"audnet.conv1.weight": torch.zeros(8, 3, 7, 7)})
    with pytest.raises(ConversionError, match="audnet.conv1.weight takes 3 input channels"):
        convert_avc.avc_to_flax(three)
    wrong = dict(sd, **{"aud_proj.weight": torch.zeros(16, 64)})
    with pytest.raises(ConversionError, match=r"'aud_proj.weight' has shape \(16, 64\)"):
        convert_avc.avc_to_flax(wrong)

    # The CLI says what is wrong with which file, and exits 1.
    bad = tmp_path / "bad.pth"
    torch.save({"model": {k: v for k, v in sd.items() if k != "img_proj.weight"}}, bad)
    assert convert_avc.main([f"--pth={bad}", f"--out={tmp_path / 'x.npz'}"]) == 1
    assert "bad.pth: missing key 'img_proj.weight'" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x.npz")
