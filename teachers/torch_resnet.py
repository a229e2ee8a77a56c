"""torchvision's ResNet18, written out so that torchvision is not needed.

The module tree, and so the `state_dict` keys and shapes, are exactly torchvision's
`resnet18()` (conv1, bn1, layer1.0.conv1, ..., layer2.0.downsample.0/1, fc; 11,689,512
parameters with 1000 classes), so torchvision checkpoints load into it with
`strict=True` and it stands in for torchvision as a reference. Layout is NCHW.
"""

from __future__ import annotations

import torch
from torch import nn

STAGE_SIZES = (2, 2, 2, 2)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + identity)


class ResNet18(nn.Module):
    """`[B, in_channels, H, W]` → logits `[B, num_classes]`; `trunk` gives layer4's map.

    `width` multiplies every stage's channels as `avkd_jax.models.ResNet18Trunk` does:
    `round(64 * width)` in the stem and layer1, doubling per stage.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, width: float = 1.0):
        super().__init__()
        base = round(64 * width)
        self.conv1 = nn.Conv2d(in_channels, base, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = base
        for i, blocks in enumerate(STAGE_SIZES):
            stride, cout = (1 if i == 0 else 2), base * 2**i
            layers = [BasicBlock(cin, cout, stride)]
            layers += [BasicBlock(cout, cout) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)
        # torchvision's initialisation, so a fresh model is a plausible stand-in.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """`[B, C, H, W]` → layer4 output `[B, 512·width, H/32, W/32]` (no avgpool, no fc)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.trunk(x)), 1))


def resnet18(in_channels: int = 3, num_classes: int = 1000, width: float = 1.0) -> ResNet18:
    return ResNet18(in_channels, num_classes, width)
