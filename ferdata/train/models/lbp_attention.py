"""LBP + attention CNN (two VGG-16 streams, sigmoid mask branch, dense atrous reconstruction).

Source: seed 001 (Li, Jin, Zhou, Kubota, Ju, "Attention mechanism-based CNN for facial
expression recognition", Neurocomputing 2020) §3.1 (architecture, Fig. 4–5), §3.2
(attention, eqs. 1–2), §4 (256×256 input, BN after every conv layer, circle LBP best,
dilations 2, 3, 4, 5 best — Table 3), §4.2.5 (the two streams are fused by element-wise sum).
"""
from __future__ import annotations

import torch
from torch import nn

from . import register_model
from .blocks import FERModel, as_image_batch, conv_bn_relu, init_weights, vgg16_front

__all__ = ["LBPAttentionNet"]


class _Stream(nn.Module):
    """VGG-16 conv1_1…conv4_3 (10 conv layers, 3 max-pools, BN) → three 1×1 convs to ``reduce`` channels."""

    def __init__(self, in_channels: int, width_mult: float, reduce: int):
        super().__init__()
        self.front, ch = vgg16_front(in_channels, width_mult, batch_norm=True)
        self.reduce = nn.Sequential(conv_bn_relu(ch, reduce, 1), conv_bn_relu(reduce, reduce, 1),
                                    conv_bn_relu(reduce, reduce, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.front(x))


class _DenseAtrous(nn.Module):
    """Dense atrous reconstruction: 3×3 convs with dilations 2, 3, 4, 5; layer k sees the
    concatenation of the module input, F1 and the outputs of all layers before it; a 1×1
    transition maps the concatenation of everything back to ``channels``."""

    def __init__(self, channels: int, growth: int, dilations=(2, 3, 4, 5)):
        super().__init__()
        self.layers = nn.ModuleList()
        cin = 2 * channels
        for d in dilations:
            self.layers.append(conv_bn_relu(cin, growth, 3, dilation=d))
            cin += growth
        self.transition = conv_bn_relu(cin, channels, 1)

    def forward(self, x: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
        feats = [x, f1]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, dim=1)))
        return self.transition(torch.cat(feats, dim=1))


@register_model("lbp_attention")
class LBPAttentionNet(FERModel):
    """Two-stream (image, LBP) attention CNN of seed 001.

    ``forward(image, lbp)``: ``image`` ``(B, 3, 256, 256)`` float, ``lbp`` ``(B, 1, 256, 256)``
    float — the LBP code image as one channel (e.g. circle LBP P=8, R=1 codes / 255;
    ``(B, H, W)`` is accepted too). Output dict: ``logits`` ``(B, num_classes)`` and
    ``attention`` ``(B, 1, H/8, W/8)`` — the sigmoid mask F_m averaged over its channels
    (a heat map as in Fig. 6).

    Architecture and the choices made where the paper is vague:

    1. Feature extraction (§3.1): two streams, each the first 10 conv layers of VGG-16
       (conv1_1…conv4_3: 64,64,M,128,128,M,256,256,256,M,512,512,512; BN + ReLU after
       every conv — §4 "batch normalization after each convolutional layer") followed by
       the "three 1×1×64 convolutions" — *placed as a stack at the end of each stream*
       (512 → 64 → 64 → 64; the paper's Fig. 5 is not legible). F1 (image) and F2 (LBP)
       are 64 × H/8 × W/8; F3 = F1 + F2 (element-wise sum, §4.2.5).
    2. Attention (§3.2): trunk branch F_p = two conv3×3-BN-ReLU on F3; mask branch = two
       conv3×3-BN-ReLU on F3 (which carries the LBP features) then a 1×1 conv and a
       sigmoid (eq. 2) → F_m; F_refine = F_p ⊙ F_m (eq. 1); then F3 is added
       element-wise to the attention output (§3.1, last paragraph; residual attention).
    3. Reconstruction (§3.1): dense atrous convolutions, four 3×3 layers with dilations
       2, 3, 4, 5 (Table 3 E); each layer's input is the concatenation of all preceding
       layers' outputs and F1; growth 64 channels per layer (choice) and a 1×1
       transition back to 64 channels (choice).
    4. Classification ("fully connected layers with softmax"): adaptive average pool to
       4×4 (choice: keeps the FC size independent of the input size) → FC 1024 → 256 →
       ReLU → dropout 0.5 → FC → logits (softmax lives in the loss).

    Trained from scratch by default. ``create_model("lbp_attention", pretrained="vgg16")``
    (or ``"vgg16_bn"``, or a path to either file) initialises both streams' 10 convs from
    ImageNet VGG-16 (seed 001 builds on it): conv1_1 … conv4_3 into ``image_stream.front``
    and the same tensors into ``lbp_stream.front``, whose first conv gets the RGB kernels
    summed (one channel); conv biases folded into the BN running means
    (:mod:`ferdata.train.models.pretrained`). Needs ``width_mult=1``.

    Parameters
    ----------
    num_classes : int
    input_size : (H, W), default (256, 256) (§4: "the size of input data is 256 × 256").
    in_channels : int, default 3 (image); the LBP stream always has 1 channel.
    width_mult : float, default 1.0 — VGG width multiplier (< 1 only for quick tests).
    reduce_channels : int, default 64 — the 1×1 reduction width.
    growth : int, default 64 — channels per dense atrous layer.
    hidden : int, default 256; dropout : float, default 0.5 — classifier head.
    """

    inputs = ("image", "lbp")
    input_size = (256, 256)
    in_channels = 3
    extra_channels = {"lbp": 1}
    outputs = ("logits", "attention")
    source = "seed 001 §3.1–3.2, §4"

    def __init__(self, num_classes: int = 8, input_size=None, in_channels=None, width_mult: float = 1.0,
                 reduce_channels: int = 64, growth: int = 64, hidden: int = 256, dropout: float = 0.5):
        super().__init__(num_classes, input_size, in_channels)
        c = int(reduce_channels)
        self.image_stream = _Stream(self.in_channels, width_mult, c)
        self.lbp_stream = _Stream(1, width_mult, c)
        self.trunk = nn.Sequential(conv_bn_relu(c, c), conv_bn_relu(c, c))
        self.mask = nn.Sequential(conv_bn_relu(c, c), conv_bn_relu(c, c), nn.Conv2d(c, c, 1))
        self.reconstruction = _DenseAtrous(c, growth)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c * 16, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        init_weights(self)

    def forward(self, image: torch.Tensor, lbp: torch.Tensor) -> dict:
        x = as_image_batch(image, "image")
        l = as_image_batch(lbp, "lbp")
        if x.shape[-2:] != l.shape[-2:] or x.shape[0] != l.shape[0]:
            raise ValueError(f"image {tuple(x.shape)} and lbp {tuple(l.shape)} must have the same batch and size")
        f1 = self.image_stream(x)
        f2 = self.lbp_stream(l)
        f3 = f1 + f2
        fm = torch.sigmoid(self.mask(f3))
        refined = self.trunk(f3) * fm + f3
        rec = self.reconstruction(refined, f1)
        logits = self.classifier(self.pool(rec))
        return {"logits": logits, "attention": fm.mean(dim=1, keepdim=True)}

