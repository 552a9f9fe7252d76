"""FERAtt: attention encoder-decoder + feature extractor + reconstruction + PreActResNet18.

Source: seed 000 (Marrero Fernandez et al., "FERAtt: Facial Expression Recognition with
Attention Net", CVPRW 2019) §3.1 (architecture, Fig. 2–3), §3.2–3.3 (losses), §4.2
(d = 64, 32×32 classifier input); seed 003 (a reproduction: reconstruction filters 32,
feature-map size 32 as the defaults).

Data flow (Fig. 2)::

    I (B,3,128,128) ──G_att (U-Net)──▶ g_att (B,1,128,128) ──σ──┐
                    └─G_ft (4 ResBlocks, no pooling)──▶ g_ft (B,32,128,128)
                                                   σ(g_att) ⊙ g_ft ──G_rec──▶ I_att (B,3,128,128)
    I_att ──avg-pool ×4──▶ (B,3,32,32) ──PreActResNet18──▶ z (512) [──linear──▶ ẑ (64)] ──▶ logits

The attention loss compares ``I_att`` with ``I ⊗ I_mask`` (eq. 1, pixel-wise MSE);
the representation loss (eq. 5) takes ``ẑ``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from . import register_model
from .blocks import FERModel, as_image_batch, conv_bn_relu, init_weights
from .preact import PreActResNetTrunk
from .resnet import ResNet34Encoder

__all__ = ["AttentionUNet", "FeatureExtractor", "FERAttCls", "FERAttRepCls"]


class AttentionUNet(nn.Module):
    """G_att: U-Net-style encoder-decoder giving one attention-logit channel.

    Seed 000 §3.1: "a variation of the fully convolutional model [U-Net] … four layers
    in the coder with skip connections and dilation of 2x"; the paper initialises it
    from an ImageNet ResNet34. Choices where the paper is vague:

    * ``encoder="unet"`` (the default; trained from scratch, Kaiming init; input sides
      divisible by 16): four encoder levels of widths ``width·(1, 2, 4, 8)``, each
      conv3×3-BN-ReLU then a *dilated* (rate 2) conv3×3-BN-ReLU — our reading of "dilation of 2x" — and a
      2×2 max-pool; a bottleneck of two conv3×3-BN-ReLU at 1/16 resolution;
    * decoder: bilinear ×2 upsampling, concatenation with the skip, two conv3×3-BN-ReLU;
    * a final 1×1 conv to one channel, as the paper's Fig. 3 shows. The released code's
      final version differs: its attention map has one channel *per class*
      (``AttentionResNet(out_channels=num_classes)``), the feature module as many channels,
      and the reconstruction reads ``[σ(A)⊙F, I, A]``; only an early version had one channel;
    * ``encoder="resnet34"`` is the paper's reading: a ResNet34 encoder in torchvision's
      key layout (:class:`~ferdata.train.models.resnet.ResNet34Encoder`, so ImageNet's
      ``resnet34-b627a593.pth`` loads by name — ``create_model(..., pretrained="resnet34")``)
      whose five features (1/2 … 1/32) are the skips of a U-Net decoder: five blocks, each
      bilinear upsampling to the skip's size, concatenation with it, two conv3×3-BN-ReLU,
      of widths ``width·(8, 4, 2, 2, 1)`` (the last one upsamples to the input size and has
      no skip), then the 1×1 conv to one channel. The released code's ``AttentionResNet``
      (TernausNet-style, ``DecoderBlockV2``: upsample ×2, two conv-ReLU, widths 256 … 32;
      ``torchlib/models/ferattentionnet.py``) does not run as released (its ``super()``
      call names another class, its centre block upsamples before the concatenation
      with layer4); the widths follow it, the BN is ours. Input sides divisible by 32.
    """

    def __init__(self, in_channels: int = 3, width: int = 32, levels: int = 4, encoder: str = "unet"):
        super().__init__()
        if encoder not in ("unet", "resnet34"):
            raise ValueError(f"AttentionUNet encoder must be 'unet' or 'resnet34', got {encoder!r}")
        self.encoder_kind = encoder
        if encoder == "resnet34":
            self._build_resnet34(in_channels, width)
            return
        widths = [width * 2 ** i for i in range(levels)]
        self.enc = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.enc.append(nn.Sequential(conv_bn_relu(cin, w), conv_bn_relu(w, w, dilation=2)))
            cin = w
        self.pool = nn.MaxPool2d(2, 2)
        self.center = nn.Sequential(conv_bn_relu(cin, cin), conv_bn_relu(cin, cin))
        self.dec = nn.ModuleList()
        for w in reversed(widths):
            self.dec.append(nn.Sequential(conv_bn_relu(cin + w, w), conv_bn_relu(w, w)))
            cin = w
        self.head = nn.Conv2d(cin, 1, 1)
        self.factor = 2 ** levels

    def _build_resnet34(self, in_channels: int, width: int) -> None:
        self.encoder = ResNet34Encoder(in_channels)
        skips = ResNet34Encoder.channels[-2::-1]            # 256, 128, 64, 64 (layer3 … conv1)
        cin = ResNet34Encoder.channels[-1]
        self.dec = nn.ModuleList()
        for w, skip in zip((width * 8, width * 4, width * 2, width * 2), skips):
            self.dec.append(nn.Sequential(conv_bn_relu(cin + skip, w), conv_bn_relu(w, w)))
            cin = w
        self.dec.append(nn.Sequential(conv_bn_relu(cin, width), conv_bn_relu(width, width)))
        self.head = nn.Conv2d(width, 1, 1)
        self.factor = ResNet34Encoder.reduction

    def _forward_resnet34(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        y = feats[-1]
        for block, skip in zip(self.dec[:-1], reversed(feats[:-1])):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.dec[-1](y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoder_kind == "resnet34":
            return self._forward_resnet34(x)
        skips = []
        for block in self.enc:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.center(x)
        for block, skip in zip(self.dec, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


class _ResBlock(nn.Module):
    """EDSR-style residual block (no BatchNorm): conv3×3 → LeakyReLU(0.2) → conv3×3, + identity."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.2))


class FeatureExtractor(nn.Module):
    """G_ft: input conv, four ResBlocks [EDSR, Lim et al. 2017], conv + global skip.

    Seed 000 §3.1: "Four ResBlocks … no pooling or strided convolutional layers".
    Choices: a 9×9 input conv (as in FERAtt's released code and SRResNet), ``filters``
    = 32 channels, LeakyReLU(0.2) inside the blocks, a 3×3 conv after the blocks added
    to the input conv's output (EDSR's global residual).
    """

    def __init__(self, in_channels: int = 3, filters: int = 32, blocks: int = 4):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, filters, 9, padding=4)
        self.blocks = nn.Sequential(*[_ResBlock(filters) for _ in range(blocks)])
        self.conv_mid = nn.Conv2d(filters, filters, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.conv_in(x)
        return head + self.conv_mid(self.blocks(head))


@register_model("feratt_cls")
class FERAttCls(FERModel):
    """FERAtt+Cls: attention module + PreActResNet18 classifier (seed 000 §3.1, §4.2).

    Input ``image`` ``(B, 3, 128, 128)`` (FERAtt renders are 128 px). Output dict:

    ``logits`` ``(B, num_classes)``; ``reconstruction`` I_att ``(B, 3, 128, 128)`` (the
    attention image *before* reduction, Fig. 3d — the MSE target is ``image * mask``);
    ``reconstruction_small`` ``(B, 3, 32, 32)`` (I_att average-pooled, the classifier's
    input); ``attention`` σ(G_att) ``(B, 1, 128, 128)``.

    Reconstruction module G_rec (§3.1: "two convolutional layers, a ReLU layer, and an
    Average Pooling layer … 128×128 to 32×32"): conv3×3 (32 → ``rec_filters``=32) →
    ReLU → conv3×3 (→ C), linear output (no final activation, no skip from the input —
    choices), then ``adaptive_avg_pool2d`` to ``rep_size``=32 (= average pooling by 4 at
    128 px). The product is σ(G_att) ⊙ G_ft with the one-channel map broadcast over the
    feature channels.

    Parameters
    ----------
    num_classes : int
    input_size : (H, W), default (128, 128); sides divisible by 16 (32 with ``att_encoder="resnet34"``).
    in_channels : int, default 3
    rep_size : int, default 32 — side of the classifier input.
    att_width : int, default 32 — base width of the attention U-Net.
    att_encoder : {"unet", "resnet34"}, default "unet" — the attention U-Net's encoder
        (:class:`AttentionUNet`); ``"resnet34"`` takes ImageNet weights
        (``create_model(..., pretrained="resnet34")``, seed 000 §3.1).
    ft_filters : int, default 32 — feature-extractor channels.
    rec_filters : int, default 32 — hidden channels of the reconstruction module.
    width : int, default 64 — PreActResNet18 base width.
    """

    input_size = (128, 128)
    in_channels = 3
    outputs = ("logits", "reconstruction", "reconstruction_small", "attention")
    source = "seed 000 §3.1, §4.2 (FERAtt+Cls)"

    def __init__(self, num_classes: int = 8, input_size=None, in_channels=None, rep_size: int = 32,
                 att_width: int = 32, ft_filters: int = 32, rec_filters: int = 32, width: int = 64,
                 att_encoder: str = "unet"):
        super().__init__(num_classes, input_size, in_channels)
        h, w = self.input_size
        factor = 32 if att_encoder == "resnet34" else 16
        if h % factor or w % factor:
            raise ValueError(f"FERAtt input sides must be divisible by {factor} (attention encoder "
                             f"{att_encoder!r}), got {self.input_size}")
        self.rep_size = int(rep_size)
        c = self.in_channels
        self.attention_net = AttentionUNet(c, att_width, encoder=att_encoder)
        self.features = FeatureExtractor(c, ft_filters)
        self.reconstruct = nn.Sequential(
            nn.Conv2d(ft_filters, rec_filters, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(rec_filters, c, 3, padding=1),
        )
        self.trunk = PreActResNetTrunk(c, width)
        self._build_head(num_classes)
        # Kaiming (fan-out) init for the BN nets only; G_ft / G_rec (no BN, residual) keep
        # PyTorch's default init — with Kaiming their output started at std ≈ 11 (I_att
        # MSE in the hundreds), with the default at ≈ 0.1.
        init_weights(self.attention_net)
        init_weights(self.trunk)

    def _build_head(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.trunk.out_features, num_classes)

    def attend(self, image: torch.Tensor) -> dict:
        """The attention part: returns I_att (full size and pooled) and σ(G_att)."""
        x = as_image_batch(image, "image")
        f = self.attention_net.factor
        if x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(f"FERAtt input sides must be divisible by {f}, got {tuple(x.shape[-2:])}")
        att = torch.sigmoid(self.attention_net(x))
        rec = self.reconstruct(att * self.features(x))
        small = F.adaptive_avg_pool2d(rec, self.rep_size)
        return {"reconstruction": rec, "reconstruction_small": small, "attention": att}

    def forward(self, image: torch.Tensor) -> dict:
        out = self.attend(image)
        out["logits"] = self.fc(self.trunk(out["reconstruction_small"]))
        return out


@register_model("feratt_rep_cls")
class FERAttRepCls(FERAttCls):
    """FERAtt+Rep+Cls: FERAttCls + a d=64 representation (seed 000 §3.1, §3.3, §4.2).

    The PreActResNet18 trunk output z (512) goes through a linear layer to ẑ ∈ R^d
    (d = ``embedding_dim`` = 64, §4.2) — returned as ``embedding`` for the structured
    Gaussian manifold loss (:func:`ferdata.train.losses.gaussian_manifold_loss`) — and
    ẑ through a linear "regression layer" to the class scores (``logits``). No
    non-linearity between (as in the paper: "the last convolutional layer of
    PreActResNet is evaluated by a linear layer").

    Output keys: ``logits``, ``embedding`` ``(B, 64)``, ``reconstruction``,
    ``reconstruction_small``, ``attention`` (see :class:`FERAttCls`).
    """

    outputs = ("logits", "embedding", "reconstruction", "reconstruction_small", "attention")
    source = "seed 000 §3.1–3.3, §4.2 (FERAtt+Rep+Cls)"

    def __init__(self, num_classes: int = 8, input_size=None, in_channels=None, embedding_dim: int = 64, **kw):
        self._embedding_dim = int(embedding_dim)
        super().__init__(num_classes, input_size, in_channels, **kw)
        self.embedding_dim = self._embedding_dim

    def _build_head(self, num_classes: int) -> None:
        self.embed = nn.Linear(self.trunk.out_features, self._embedding_dim)
        self.fc = nn.Linear(self._embedding_dim, num_classes)

    def forward(self, image: torch.Tensor) -> dict:
        out = self.attend(image)
        z = self.embed(self.trunk(out["reconstruction_small"]))
        out["embedding"] = z
        out["logits"] = self.fc(z)
        return out
