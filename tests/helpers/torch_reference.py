"""PyTorch reference models for the tests with random weights: torchvision's ResNet18
(`teachers/torch_resnet.py`) and the authors' AVC (`teachers/torch_avc.py`)."""

import torch
from torch import nn

from teachers import convert_avc, convert_resnet, torch_avc, torch_resnet


def randomise_batch_norms(net: nn.Module) -> None:
    """Random BatchNorm affine parameters and statistics: eval-mode BatchNorm is then not
    the identity, so a mix-up of scale / bias / mean / var shows."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)


def random_resnet(width: float, seed: int = 0) -> nn.Module:
    """torchvision's ResNet18 at `width`, random weights, eval mode."""
    torch.manual_seed(seed)
    net = torch_resnet.resnet18(3, 10, width)
    randomise_batch_norms(net)
    return net.eval()


def write_resnet_npz(net: nn.Module, path) -> str:
    """`net`'s trunk as the `.npz` of `teachers.convert_resnet`."""
    convert_resnet.save_npz(str(path), convert_resnet.torchvision_to_flax(net.state_dict()))
    return str(path)


class TorchAVC(torch_avc.AVCStudent):
    """The authors' AVC (`teachers.torch_avc.AVCStudent`: `imgnet`, `img_proj`, `audnet`
    with a 1-channel conv1, `aud_proj`) returning the map <v[h, w], a> of an image (NCHW,
    ImageNet-normalised) and a spectrogram [B, 1, F, T]."""

    def forward(self, image, spec):
        a, v = super().forward(image, spec)
        return torch.einsum("bchw,bc->bhw", v, a)


def random_avc(width: float, dim: int, seed: int = 0) -> TorchAVC:
    torch.manual_seed(seed)
    net = TorchAVC(width, dim)
    randomise_batch_norms(net)
    with torch.no_grad():
        net.img_proj.bias.normal_(0, 0.1)
        net.aud_proj.bias.normal_(0, 0.1)
    return net.eval()


def save_as_released(net: TorchAVC, path) -> str:
    """As a training script saves it: under 'model', with DataParallel's 'module.'."""
    torch.save({"model": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    return str(path)


def write_avc_npz(net: TorchAVC, path) -> str:
    """`net` converted by `teachers.convert_avc`, as `--mode=import` reads it."""
    convert_avc.save_npz(str(path), convert_avc.avc_to_flax(net.state_dict()))
    return str(path)
