"""Deep-Emotion (CNN + spatial transformer), + multiple self-attention, and a VGG-Face-style variant.

Source: seed 004 (Caciolai, "Facial Emotion Recognition", seminar report): §III-A
(baseline CNN), §III-B (STN, Deep-Emotion [Minaee et al., Sensors 2021]), §III-C
(SA layer eqs. 2–4, MSA module eqs. 5–6), §III-D (custom VGGFace backbone), §IV
(FER2013 / FER+ 48×48 gray, SGD nesterov 1e-2, wd 1e-4, ReduceLROnPlateau, early
stopping, weighted sampling).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from . import register_model
from .blocks import (FERModel, MultipleSelfAttention, SpatialTransformer, as_image_batch, conv_bn_relu,
                     init_weights, pool_out)

__all__ = ["DeepEmotion", "VGGFaceSTNMSA", "VGG_CONFIGS"]


def _stn_msa_forward(model, x: torch.Tensor) -> Tuple[dict, torch.Tensor]:
    out = {}
    x = as_image_batch(x, "image")
    if model.stn is not None:
        x, theta = model.stn(x)
        out["theta"] = theta
    f = model.features(x)
    if model.msa is not None:
        f, w = model.msa(f)
        out["msa_weights"] = w
    return out, f


@register_model("deep_emotion")
@register_model("deep_emotion_msa", msa=True)
class DeepEmotion(FERModel):
    """Deep-Emotion: a small CNN behind a spatial transformer (seed 004 §III-A/B, Fig. 1–2).

    Input ``image`` ``(B, 1, 48, 48)`` (FER2013). ``deep_emotion`` = CNN + STN (the
    reproduced Deep-Emotion); ``deep_emotion_msa`` = + the MSA module (``msa=True``);
    ``stn=False`` gives the seed's baseline CNN.

    * STN (:class:`~ferdata.train.models.blocks.SpatialTransformer`) warps the input
      image: localisation conv7×7(8)-pool-ReLU-conv5×5(10)-pool-ReLU, FC 640 → 32 → 6,
      identity-initialised.
    * CNN (seed 004 §III-A: "four convolutional layers, with every two followed by a
      max-pooling layer and a ReLU … followed by a dropout layer and two fully-connected
      layers"): 3×3 convs without padding, 10 filters each (the widths and the BN after
      the 4th conv follow Deep-Emotion [4]; the seed names none), a ReLU after the 1st and
      3rd conv too (choice): 48 → 46 → 44 → pool 22 → 20 → 18 → pool 9; dropout 0.5;
      FC 810 → 50 → ReLU → FC → logits.
    * MSA (seed 004 §III-C; :class:`~ferdata.train.models.blocks.MultipleSelfAttention`)
      on the 10×9×9 conv features, before dropout/FC — the seed's Fig. 4 placement is
      not legible; *after the conv features* is our choice. ``heads`` = 4 (the seed
      gives no number).

    Output dict: ``logits``; ``theta`` ``(B, 2, 3)`` with the STN; ``msa_weights``
    ``(B, heads)`` with MSA.

    Parameters
    ----------
    num_classes : int
    input_size : (H, W), default (48, 48); at least 22×22 with the STN.
    in_channels : int, default 1
    stn : bool, default True
    msa : bool, default False (True for ``deep_emotion_msa``)
    heads : int, default 4 — MSA heads.
    filters : int, default 10; hidden : int, default 50; dropout : float, default 0.5.
    """

    input_size = (48, 48)
    in_channels = 1
    outputs = ("logits", "theta")
    source = "seed 004 §III-A/B (Deep-Emotion), §III-C (MSA)"

    def __init__(self, num_classes: int = 8, input_size=None, in_channels=None, stn: bool = True,
                 msa: bool = False, heads: int = 4, filters: int = 10, hidden: int = 50, dropout: float = 0.5):
        super().__init__(num_classes, input_size, in_channels)
        c, k = self.in_channels, int(filters)
        self.features = nn.Sequential(
            nn.Conv2d(c, k, 3), nn.ReLU(inplace=True), nn.Conv2d(k, k, 3), nn.MaxPool2d(2, 2), nn.ReLU(inplace=True),
            nn.Conv2d(k, k, 3), nn.ReLU(inplace=True), nn.Conv2d(k, k, 3), nn.BatchNorm2d(k), nn.MaxPool2d(2, 2),
            nn.ReLU(inplace=True),
        )
        h, w = ((self.input_size[0] - 4) // 2 - 4) // 2, ((self.input_size[1] - 4) // 2 - 4) // 2
        if h < 1 or w < 1:
            raise ValueError(f"input_size {self.input_size} too small for Deep-Emotion (needs >= 14)")
        self.feature_size = (h, w)
        self.stn = SpatialTransformer(c) if stn else None
        self.msa = MultipleSelfAttention(k, (h, w), heads=heads) if msa else None
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Flatten(), nn.Linear(k * h * w, hidden),
                                        nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))
        self.outputs = self.output_keys(stn=stn, msa=msa)

    @classmethod
    def output_keys(cls, stn: bool = True, msa: bool = False, **kwargs) -> Tuple[str, ...]:
        return ("logits",) + (("theta",) if stn else ()) + (("msa_weights",) if msa else ())

    def forward(self, image: torch.Tensor) -> dict:
        out, f = _stn_msa_forward(self, image)
        out["logits"] = self.classifier(f)
        return out


#: VGG-style backbones: ((channels, convs), …), every stage ends with a 2×2 max-pool.
VGG_CONFIGS = {
    # seed 004 §III-D: 4 stacks of two 3×3 conv-BN-ReLU, 64 → 512, for 48×48 inputs.
    "seed": ((64, 2), (128, 2), (256, 2), (512, 2)),
    # VGG-16 / VGG-Face conv part (13 convs), for 224×224 inputs.
    "vgg16": ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),
}


@register_model("vggface_stn_msa")
class VGGFaceSTNMSA(FERModel):
    """Custom VGG-Face backbone + STN + MSA (seed 004 §III-D, Fig. 5–6, Table II).

    Input ``image`` ``(B, 1, 48, 48)`` — the seed trains it on FER2013/FER+ 48×48 faces
    ("my architecture is not as deep since the network receives smaller sized images").

    * STN on the input image, as in :class:`DeepEmotion`.
    * Backbone ``config="seed"``: 4 stacks, each two 3×3 conv (stride 1, padding 1) –
      BatchNorm – ReLU then a 2×2/2 max-pool, widths 64, 128, 256, 512 → 512×3×3 at
      48 px. ``config="vgg16"`` gives the full VGG-16/VGG-Face conv part (2-2-3-3-3,
      64…512) for 224×224 inputs (pass ``input_size=224``); with it,
      ``create_model(..., config="vgg16", pretrained="vgg_face")`` (or ``"vgg16"``,
      ``"vgg16_bn"``, or a path) copies the 13 published convs into ``features`` (the
      gray input's first conv: RGB kernels summed; :mod:`ferdata.train.models.pretrained`).
      Trained from scratch by default.
    * MSA (4 heads, choice) on the last feature map.
    * Head (the seed's Fig. 6 is not legible; choice, mirroring Deep-Emotion's two FC
      layers): dropout 0.5 → FC (512·h·w → 512) → ReLU → dropout 0.5 → FC → logits.

    ``stn=False`` / ``msa=False`` give the seed's ablations (Table II).

    Output dict: ``logits``, ``theta`` ``(B, 2, 3)``, ``msa_weights`` ``(B, heads)``.

    Parameters
    ----------
    num_classes : int
    input_size : (H, W), default (48, 48).
    in_channels : int, default 1
    config : {"seed", "vgg16"} or a sequence of (channels, convs)
    width_mult : float, default 1.0 — channel multiplier (< 1 only for quick tests).
    stn, msa : bool, default True; heads : int, default 4.
    hidden : int, default 512; dropout : float, default 0.5.
    """

    input_size = (48, 48)
    in_channels = 1
    outputs = ("logits", "theta", "msa_weights")
    source = "seed 004 §III-D (custom VGGFace + STN + MSA)"

    def __init__(self, num_classes: int = 8, input_size=None, in_channels=None, config="seed",
                 width_mult: float = 1.0, stn: bool = True, msa: bool = True, heads: int = 4,
                 hidden: int = 512, dropout: float = 0.5):
        super().__init__(num_classes, input_size, in_channels)
        cfg: Sequence[Tuple[int, int]] = VGG_CONFIGS[config] if isinstance(config, str) else tuple(config)
        stages, cin = [], self.in_channels
        for ch, n in cfg:
            cout = max(1, int(round(ch * width_mult)))
            layers = [conv_bn_relu(cin if i == 0 else cout, cout, 3) for i in range(n)]
            stages.append(nn.Sequential(*layers, nn.MaxPool2d(2, 2)))
            cin = cout
        self.features = nn.Sequential(*stages)
        h, w = pool_out(self.input_size[0], len(cfg)), pool_out(self.input_size[1], len(cfg))
        if h < 1 or w < 1:
            raise ValueError(f"input_size {self.input_size} too small for {len(cfg)} max-pools")
        self.feature_size = (h, w)
        self.stn = SpatialTransformer(self.in_channels) if stn else None
        self.msa = MultipleSelfAttention(cin, (h, w), heads=heads) if msa else None
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Flatten(), nn.Linear(cin * h * w, hidden),
                                        nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        self.outputs = self.output_keys(stn=stn, msa=msa)
        init_weights(self.features)

    @classmethod
    def output_keys(cls, stn: bool = True, msa: bool = True, **kwargs) -> Tuple[str, ...]:
        return ("logits",) + (("theta",) if stn else ()) + (("msa_weights",) if msa else ())

    def forward(self, image: torch.Tensor) -> dict:
        out, f = _stn_msa_forward(self, image)
        out["logits"] = self.classifier(f)
        return out
