"""PreActResNet18 — the FERAtt baseline and its representation/classification trunk.

Source: seed 000 (FERAtt) §3.1 "Representation and classification module" and §4.2
("PreActResNet18 … face images rescaled to 32×32"); architecture from He et al.,
"Identity mappings in deep residual networks" (ECCV 2016), CIFAR-style stem.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from . import register_model
from .blocks import FERModel, PreActBlock, as_image_batch, init_weights

__all__ = ["PreActResNetTrunk", "PreActResNet18"]


class PreActResNetTrunk(nn.Module):
    """Pre-activation ResNet feature trunk: ``(B, C, H, W)`` → ``(B, 8·width)`` pooled features.

    CIFAR-style stem (3×3 conv, stride 1, no max-pool — the 32×32 inputs of FERAtt),
    four stages of ``blocks`` pre-activation basic blocks with widths ``width·(1, 2, 4, 8)``
    and strides (1, 2, 2, 2), a final BN-ReLU (as in He et al. 2016's pre-activation
    nets; FERAtt's released code omits it — choice: keep it, the last block's sum is
    otherwise un-normalised), global average pooling.
    """

    def __init__(self, in_channels: int = 3, width: int = 64, blocks: Sequence[int] = (2, 2, 2, 2)):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        stages, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2 ** i
            layers = []
            for j in range(n):
                layers.append(PreActBlock(cin, cout, stride=(2 if (i > 0 and j == 0) else 1)))
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(cin)
        self.out_features = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(self.stem(x))
        out = F.relu(self.bn(out))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


@register_model("preactresnet18")
class PreActResNet18(FERModel):
    """PreActResNet18 classifier, the FERAtt baseline (seed 000 §4.2, Table 1 "Baseline").

    Input ``image`` ``(B, 3, 32, 32)``; output ``{"logits": (B, num_classes)}``.
    Trunk: :class:`PreActResNetTrunk` (blocks 2-2-2-2, widths 64-128-256-512), then
    one linear layer 512 → num_classes. 11.17 M parameters at 8 classes.

    Parameters
    ----------
    num_classes : int
    input_size : (H, W), default (32, 32) — any size works (global average pooling).
    in_channels : int, default 3
    width : int, default 64 — base width (smaller only for quick tests).
    """

    input_size = (32, 32)
    in_channels = 3
    outputs = ("logits",)
    source = "seed 000 §4.2 (baseline); He et al. 2016"

    def __init__(self, num_classes: int = 8, input_size=None, in_channels=None, width: int = 64):
        super().__init__(num_classes, input_size, in_channels)
        self.trunk = PreActResNetTrunk(self.in_channels, width)
        self.fc = nn.Linear(self.trunk.out_features, num_classes)
        init_weights(self)

    def forward(self, image: torch.Tensor) -> dict:
        return {"logits": self.fc(self.trunk(as_image_batch(image, "image")))}
