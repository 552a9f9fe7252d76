"""Shared building blocks of the seed models (written here: no torchvision / timm).

Contents
--------
:class:`FERModel`
    Base class of every registered model: the input contract (``inputs``,
    ``input_size``, ``in_channels``, ``extra_channels``) and the output contract
    (``forward`` returns a ``dict`` with at least ``"logits"``).
:func:`conv_bn_relu`, :func:`vgg_stage`, :func:`vgg16_front`
    VGG blocks (Simonyan & Zisserman 2014): 3×3 convolutions, stride 1, padding
    preserving resolution, optional BatchNorm, ReLU, 2×2 max-pool.
:class:`PreActBlock`
    Pre-activation basic block (He et al., "Identity mappings in deep residual
    networks", ECCV 2016).
:class:`SpatialTransformer`
    Affine spatial transformer (Jaderberg et al. 2015) with a Deep-Emotion-style
    localisation network, initialised to the identity transform.
:class:`SelfAttention2d`, :class:`MultipleSelfAttention`
    SAGAN self-attention layer (Zhang et al. 2019) and the multiple-self-attention
    (MSA) module of seed 004 §III-C.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "FERModel", "conv_bn_relu", "vgg_stage", "vgg16_front", "VGG16_FRONT_CFG",
    "PreActBlock", "SpatialTransformer", "SelfAttention2d", "MultipleSelfAttention",
    "pool_out", "as_image_batch", "init_weights",
]


def pool_out(n: int, times: int = 1, ceil: bool = False) -> int:
    """Spatial size after ``times`` 2×2/stride-2 max-pools (floor or ceil mode)."""
    for _ in range(times):
        n = -(-n // 2) if ceil else n // 2
    return n


def as_image_batch(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Return ``x`` as a float ``(B, C, H, W)`` tensor; ``(B, H, W)`` gets a channel axis.

    uint8 input is *not* rescaled here (normalisation belongs to the data
    transform / the training loop, on the GPU): it is only cast to float.
    """
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a (B, C, H, W) or (B, H, W) tensor, got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        x = x.float()
    return x


class FERModel(nn.Module):
    """Base class of the registered FER models.

    Class attributes (the defaults; instances carry the values they were built with):

    ``inputs``
        The batch fields ``forward`` takes, in positional order: ``("image",)`` or
        ``("image", "lbp")``.
    ``input_size``
        ``(H, W)`` the model expects (the data transform must produce it).
    ``in_channels``
        Channels of the ``image`` input (1 gray, 3 RGB).
    ``extra_channels``
        Channels of every other input, e.g. ``{"lbp": 1}``.
    ``outputs``
        Keys of the output dict. ``"logits"`` ``(B, num_classes)`` is always there.
    ``source``
        Where the architecture comes from (seed and section).
    """

    inputs: Tuple[str, ...] = ("image",)
    input_size: Tuple[int, int] = (32, 32)
    in_channels: int = 3
    extra_channels: Dict[str, int] = {}
    outputs: Tuple[str, ...] = ("logits",)
    source: str = ""

    def __init__(self, num_classes: int, input_size: Sequence[int] | int | None = None,
                 in_channels: int | None = None):
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        if input_size is None:
            input_size = type(self).input_size
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        input_size = tuple(int(v) for v in input_size)
        if len(input_size) != 2 or min(input_size) < 1:
            raise ValueError(f"input_size must be (H, W) of positive ints, got {input_size}")
        self.input_size = input_size
        self.in_channels = int(type(self).in_channels if in_channels is None else in_channels)
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")

    @classmethod
    def output_keys(cls, **kwargs) -> Tuple[str, ...]:
        """Output-dict keys of a model built with ``kwargs`` (default: ``cls.outputs``)."""
        return tuple(cls.outputs)

    def num_parameters(self, trainable_only: bool = True) -> int:
        """Number of (trainable) parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def example_inputs(self, batch_size: int = 2, device=None) -> Tuple[torch.Tensor, ...]:
        """Random inputs of the right shapes, in ``forward``'s positional order."""
        h, w = self.input_size
        out = []
        for field in self.inputs:
            c = self.in_channels if field == "image" else self.extra_channels[field]
            out.append(torch.randn(batch_size, c, h, w, device=device))
        return tuple(out)


# --------------------------------------------------------------------------- VGG
def conv_bn_relu(cin: int, cout: int, kernel_size: int = 3, dilation: int = 1,
                 batch_norm: bool = True) -> nn.Sequential:
    """``Conv2d`` (padding preserving the size) → optional ``BatchNorm2d`` → ``ReLU``."""
    pad = dilation * (kernel_size - 1) // 2
    layers = [nn.Conv2d(cin, cout, kernel_size, padding=pad, dilation=dilation, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def vgg_stage(cin: int, cout: int, n_convs: int, pool: bool = True, batch_norm: bool = True) -> nn.Sequential:
    """``n_convs`` 3×3 conv(-BN)-ReLU layers, then a 2×2 max-pool (if ``pool``)."""
    layers = []
    for i in range(n_convs):
        layers.append(conv_bn_relu(cin if i == 0 else cout, cout, 3, batch_norm=batch_norm))
    if pool:
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


#: VGG-16 conv1_1 … conv4_3: the "first 10 layers of VGG-16" (as in CSRNet's front end):
#: (channels, convs, pool after the stage)
VGG16_FRONT_CFG = ((64, 2, True), (128, 2, True), (256, 3, True), (512, 3, False))


def vgg16_front(in_channels: int, width_mult: float = 1.0, batch_norm: bool = True) -> Tuple[nn.Sequential, int]:
    """The first 10 conv layers of VGG-16 (three max-pools: stride 8). Returns ``(module, out_channels)``."""
    stages, cin = [], in_channels
    for ch, n, pool in VGG16_FRONT_CFG:
        cout = max(1, int(round(ch * width_mult)))
        stages.append(vgg_stage(cin, cout, n, pool=pool, batch_norm=batch_norm))
        cin = cout
    return nn.Sequential(*stages), cin


# --------------------------------------------------------------------- PreAct
class PreActBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3×3-BN-ReLU-conv3×3 + shortcut.

    The projection shortcut (1×1 conv, when shape changes) takes the pre-activated
    input, as in He et al. 2016.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        short = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + short


# ------------------------------------------------------------------------ STN
class SpatialTransformer(nn.Module):
    """Affine spatial transformer applied to the input image.

    Localisation network (Deep-Emotion, seed 004 Fig. 2 / its reference [4]):
    conv 7×7 (8) → max-pool 2 → ReLU → conv 5×5 (10) → max-pool 2 → ReLU →
    adaptive average pool to 8×8 (the identity at 48×48 input, where the map is
    already 8×8, so FC sizes match Deep-Emotion's 640 → 32 → 6; it keeps the FC
    size fixed at other input sizes) → FC 32 → ReLU → FC 6 (θ, 2×3).
    The last FC starts at zero weight and identity bias, so the module starts as
    the identity transform (standard STN practice).

    ``forward`` returns ``(warped, theta)``.
    """

    def __init__(self, in_channels: int, hidden: int = 32):
        super().__init__()
        self.loc = nn.Sequential(
            nn.Conv2d(in_channels, 8, 7), nn.MaxPool2d(2, 2), nn.ReLU(inplace=True),
            nn.Conv2d(8, 10, 5), nn.MaxPool2d(2, 2), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(8),
        )
        self.fc = nn.Sequential(nn.Linear(10 * 8 * 8, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 6))
        nn.init.zeros_(self.fc[2].weight)
        with torch.no_grad():
            self.fc[2].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if min(x.shape[-2:]) < 22:
            raise ValueError(f"SpatialTransformer needs inputs of at least 22×22, got {tuple(x.shape[-2:])}")
        theta = self.fc(torch.flatten(self.loc(x), 1)).view(-1, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False), theta


# ----------------------------------------------------------------- attention
class SelfAttention2d(nn.Module):
    """SAGAN self-attention layer (seed 004 §III-C-a, eqs. 2–4).

    ``f`` (query), ``g`` (key): 1×1 convs C → ``qk_channels``; ``h`` (value): 1×1
    conv C → C; ``β_{j,i} = softmax_i(f(x_j)ᵀ g(x_i))`` (no 1/√d scaling, as in
    SAGAN); ``o_j = Conv1×1(Σ_i β_{j,i} h(x_i))``; ``y = γ·o + x`` with a learnable
    ``γ`` initialised to 0.

    ``qk_channels`` defaults to ``max(C // 8, min(C, 8))`` — SAGAN's C/8, but never
    fewer than 8 channels (or C when C < 8) so narrow maps (Deep-Emotion's 10
    channels) don't get a rank-1 attention.
    """

    def __init__(self, channels: int, qk_channels: int | None = None):
        super().__init__()
        if qk_channels is None:
            qk_channels = max(channels // 8, min(channels, 8))
        self.f = nn.Conv2d(channels, qk_channels, 1)
        self.g = nn.Conv2d(channels, qk_channels, 1)
        self.h = nn.Conv2d(channels, channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        q = self.f(x).flatten(2).transpose(1, 2)          # (B, N, Cq)
        k = self.g(x).flatten(2).transpose(1, 2)          # (B, N, Cq)
        v = self.h(x).flatten(2).transpose(1, 2)          # (B, N, C)
        o = F.scaled_dot_product_attention(q, k, v, scale=1.0)   # softmax over keys i
        o = o.transpose(1, 2).reshape(b, c, hh, ww)
        return self.gamma * self.out(o) + x


class MultipleSelfAttention(nn.Module):
    """Multiple self-attention (MSA) module of seed 004 §III-C-b (eqs. 5–6).

    ``y = Σ_i w_i · SelfAttention_i(x)`` over ``heads`` parallel SA layers; the
    weight-learning branch is Conv1×1 (C → C) → 2×2 max-pool ("halving the
    dimension"; ceil mode, so a 1×1 or odd map still gives ≥ 1 cell) → FC → sigmoid,
    then ``w = w̃ / Σ w̃`` — the seed's text says the weights "are normalized to sum
    up to 1"; its formula writes ``‖w̃‖``; with sigmoid outputs (positive) the L1
    norm is exactly the sum, which is what we use.

    ``spatial`` is the (H, W) of the incoming feature map (fixes the FC size).
    ``forward`` returns ``(y, w)`` with ``w`` of shape ``(B, heads)``.
    """

    def __init__(self, channels: int, spatial: Sequence[int], heads: int = 4, qk_channels: int | None = None):
        super().__init__()
        if heads < 1:
            raise ValueError(f"heads must be >= 1, got {heads}")
        self.heads = nn.ModuleList(SelfAttention2d(channels, qk_channels) for _ in range(heads))
        ph, pw = pool_out(int(spatial[0]), ceil=True), pool_out(int(spatial[1]), ceil=True)
        self.spatial = (int(spatial[0]), int(spatial[1]))
        self.weight_conv = nn.Conv2d(channels, channels, 1)
        self.weight_pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.weight_fc = nn.Linear(channels * ph * pw, heads)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if tuple(x.shape[-2:]) != self.spatial:
            raise ValueError(f"MultipleSelfAttention built for {self.spatial} maps, got {tuple(x.shape[-2:])}")
        wt = torch.sigmoid(self.weight_fc(torch.flatten(self.weight_pool(self.weight_conv(x)), 1)))
        w = wt / wt.sum(dim=1, keepdim=True)
        stacked = torch.stack([head(x) for head in self.heads], dim=1)      # (B, N, C, H, W)
        y = (w[:, :, None, None, None] * stacked).sum(dim=1)
        return y, w


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convs (fan_out, ReLU), unit/zero BatchNorm, default Linear."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

