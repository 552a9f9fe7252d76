"""A ResNet34 encoder in torchvision's state-dict layout (written here: torchvision is not a dependency).

He et al., "Deep residual learning for image recognition" (CVPR 2016), Table 1, 34-layer:
a 7×7/2 conv (64) → BN → ReLU → 3×3/2 max-pool, then four stages of BasicBlocks
``[3, 4, 6, 3]`` with widths 64, 128, 256, 512 (stages 2–4 start with stride 2 and a 1×1
projection ``downsample``). The module and attribute names are torchvision's
(``conv1``, ``bn1``, ``layer1``…``layer4``, ``layerN.i.conv1/bn1/conv2/bn2``,
``layerN.0.downsample.0/1``), so torchvision's ImageNet file ``resnet34-b627a593.pth``
loads into it by name (:mod:`ferdata.train.models.pretrained`); its ``fc`` is not here.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

__all__ = ["BasicBlock", "ResNet34Encoder", "RESNET34_LAYERS"]

#: BasicBlocks per stage of ResNet34 and the stage widths.
RESNET34_LAYERS = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: conv3×3(stride)-BN-ReLU-conv3×3-BN + shortcut, ReLU."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet34Encoder(nn.Module):
    """ResNet34 without its pooling/fc head; ``forward`` returns the five skip features.

    ``forward(x)`` → ``[s0, s1, s2, s3, s4]``: after conv1-bn1-relu (64 ch, 1/2), layer1
    (64, 1/4, after the max-pool), layer2 (128, 1/8), layer3 (256, 1/16), layer4 (512, 1/32).
    ``channels`` lists their widths. ``in_channels`` other than 3 changes only ``conv1``.
    """

    channels = (64, 64, 128, 256, 512)
    reduction = 32

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (width, blocks, stride) in enumerate(RESNET34_LAYERS, start=1):
            layer = [BasicBlock(cin, width, stride)] + [BasicBlock(width, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*layer))
            cin = width

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        s0 = self.relu(self.bn1(self.conv1(x)))
        s1 = self.layer1(self.maxpool(s0))
        s2 = self.layer2(s1)
        s3 = self.layer3(s2)
        return [s0, s1, s2, s3, self.layer4(s3)]
