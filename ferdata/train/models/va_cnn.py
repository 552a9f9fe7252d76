"""CNN with visual attention (10 conv + attention pooling + FC) on 112×144 gray faces.

Source: seed 002 (Sun, Zhao, Jin, "A visual attention based ROI detection method for
facial expression recognition", Neurocomputing 2018) §3.1 (Table 2, the baseline CNN),
§3.2 (eqs. 1–5, Table 3), §4.2–4.3.
"""
from __future__ import annotations

import torch
from torch import nn

from . import register_model
from .blocks import FERModel, as_image_batch, init_weights, pool_out

__all__ = ["VACNN"]

#: Table 2/3 convolutional part: channels per conv, "M" = 2×2 max-pool.
VA_CFG = (16, 16, 16, "M", 32, 32, 32, "M", 64, 64, "M", 128, 128, "M")


@register_model("va_cnn")
@register_model("va_cnn_symmetric", symmetric=True)
class VACNN(FERModel):
    """Eleven-layer CNN with visual attention (seed 002 §3.2, Table 3).

    Input ``image`` ``(B, 1, 144, 112)``: the paper's "112×144" is *width × height* —
    its RaFD-FRONT crops are 125×160 portrait faces, its feature map A0 ∈ R^{W×H×C} is
    7×9×128 and the symmetric map (eq. 5) mirrors the first (W, horizontal) index — so
    in PyTorch's (H, W) order the input is 144 rows × 112 columns and the last map is
    9×7 (H×W).

    Convolutional part (Table 2/3): ten 3×3 convs (stride 1, padding 1) with 16,16,16,
    32,32,32, 64,64, 128,128 channels and 2×2 max-pools after the 3rd, 6th, 8th and 10th,
    ReLU after each conv (the paper does not name the activation: VGG-style ReLU; no
    BatchNorm, as the paper lists none — ``batch_norm=True`` adds it).

    Attention pooling (eqs. 1–4): at every location the 128-d feature goes through a
    two-layer network g: tanh(W1·a + b1) (128 → 66, Table 3's "128×66+66×1") →
    tanh(W2·· + b2) (66 → 1) = A2; B = softmax(β·A2) over the 9×7 locations (β = 1);
    z = Σ B·A0 (128-d) → dropout → FC → logits.

    ``symmetric=True`` (``va_cnn_symmetric``; eq. 5): the score map is averaged with its
    horizontal mirror, B = softmax(β·(A2 + flip_W(A2))/2). Eq. 5 as printed divides by
    Σ exp(β·A2) (the *un*-symmetrised scores), so its weights would not sum to 1 — we
    normalise by the sum of the symmetrised numerators (a proper softmax); the map is
    then exactly mirror-symmetric.

    ``pooling`` selects the aggregation: ``"attention"`` (default, the method),
    ``"flatten"`` (the baseline CNN of Table 2: dropout → flatten 7·9·128 = 8064 → FC),
    ``"gap"`` (global average pooling, Table 5's comparison).

    Output dict: ``logits``; with attention pooling also ``attention`` — the weight map
    B ``(B, 1, 9, 7)``.

    Parameters
    ----------
    num_classes : int
    input_size : (H, W), default (144, 112) (sides divisible by 16).
    in_channels : int, default 1
    symmetric : bool, default False
    pooling : {"attention", "flatten", "gap"}
    beta : float, default 1.0 — softmax sharpness of eq. 4.
    hidden : int, default 66 — hidden units of g.
    dropout : float, default 0.5 (the paper gives no rate).
    batch_norm : bool, default False
    """

    input_size = (144, 112)
    in_channels = 1
    outputs = ("logits", "attention")
    source = "seed 002 §3.1–3.2 (Tables 2–3, eqs. 1–5)"

    def __init__(self, num_classes: int = 8, input_size=None, in_channels=None, symmetric: bool = False,
                 pooling: str = "attention", beta: float = 1.0, hidden: int = 66, dropout: float = 0.5,
                 batch_norm: bool = False):
        super().__init__(num_classes, input_size, in_channels)
        if pooling not in ("attention", "flatten", "gap"):
            raise ValueError(f"pooling must be 'attention', 'flatten' or 'gap', got {pooling!r}")
        if symmetric and pooling != "attention":
            raise ValueError("symmetric=True needs pooling='attention'")
        self.symmetric, self.pooling, self.beta = bool(symmetric), pooling, float(beta)
        layers, cin = [], self.in_channels
        for v in VA_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(cin, v, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            cin = v
        self.features = nn.Sequential(*layers)
        fh, fw = pool_out(self.input_size[0], 4), pool_out(self.input_size[1], 4)
        if fh < 1 or fw < 1:
            raise ValueError(f"input_size {self.input_size} too small for four 2×2 max-pools")
        self.feature_size = (fh, fw)
        self.dropout = nn.Dropout(dropout)
        if pooling == "attention":
            self.score = nn.Sequential(nn.Conv2d(cin, hidden, 1), nn.Tanh(), nn.Conv2d(hidden, 1, 1), nn.Tanh())
            self.fc = nn.Linear(cin, num_classes)
        elif pooling == "flatten":
            self.fc = nn.Linear(cin * fh * fw, num_classes)
        else:
            self.fc = nn.Linear(cin, num_classes)
        self.outputs = self.output_keys(pooling=pooling)
        init_weights(self.features)

    @classmethod
    def output_keys(cls, pooling: str = "attention", **kwargs):
        return ("logits", "attention") if pooling == "attention" else ("logits",)

    def weight_map(self, a0: torch.Tensor) -> torch.Tensor:
        """Weight map B ``(B, 1, h, w)`` (sums to 1 per sample) from the feature map A0."""
        s = self.score(a0)                                  # A2, (B, 1, h, w)
        if self.symmetric:
            s = 0.5 * (s + torch.flip(s, dims=[-1]))
        b, _, h, w = s.shape
        return torch.softmax(self.beta * s.flatten(1), dim=1).view(b, 1, h, w)

    def forward(self, image: torch.Tensor) -> dict:
        a0 = self.features(as_image_batch(image, "image"))
        if self.pooling == "attention":
            weights = self.weight_map(a0)
            z = (weights * a0).sum(dim=(2, 3))
            return {"logits": self.fc(self.dropout(z)), "attention": weights}
        if self.pooling == "flatten":
            return {"logits": self.fc(torch.flatten(self.dropout(a0), 1))}
        return {"logits": self.fc(self.dropout(a0.mean(dim=(2, 3))))}
