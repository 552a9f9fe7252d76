"""Batched CIELAB lightness matching on the mask pixels only (the torch renderer's luminance step).

The twin of :func:`ferdata.render.compose.match_luminance`, written for speed on a CPU
as well as a GPU: it works on (3, N) planes of the face and background pixels under
the hard mask (N = mask pixels of the whole batch; the warp samples the face there
only), converted with a 256-entry sRGB -> linear table (the inputs are whole levels)
and 3×3 matrices. The background needs its lightness L only
(one row of the matrix). The CIELAB and sRGB branch switches are written as a
tangent continuation (``cbrt(max(t, e)) + k·(min(t, e) - e)``) rather than a
``where``: the same function (to 1e-6; the sRGB toe to 0.02 grey levels), fewer passes.
Per-sample sums are segment reductions over the (sample-ordered) mask pixels, so a
sample's result does not depend on its batch and is deterministic.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import torch

# sRGB (D65) <-> XYZ, the matrices of kornia.color (and of OpenCV's float Lab conversion)
_RGB2XYZ = ((0.412453, 0.357580, 0.180423),
            (0.212671, 0.715160, 0.072169),
            (0.019334, 0.119193, 0.950227))
_XYZ2RGB = ((3.2404813432005266, -1.5371515162713185, -0.4985363261688878),
            (-0.9692549499965682, 1.8759900014898907, 0.0415559265582928),
            (0.0556466391351772, -0.2040413383665112, 1.0573110696453443))
_WHITE = (0.95047, 1.0, 1.08883)
_EPS, _KAPPA = 0.008856, 7.787          # f(t) = t^(1/3) above _EPS, _KAPPA·t + 16/116 below
_F0 = 0.2068966                         # f(_EPS): the inverse's switch
_T0 = 0.0031308                         # linear -> sRGB switch


@lru_cache(maxsize=8)
def _tables(device: str):
    """(lut (256,) sRGB byte -> linear, rgb->xyz/white (3,3), xyz·white -> rgb (3,3), Y row (1,3))."""
    from kornia.color import rgb_to_linear_rgb

    v = torch.arange(256, dtype=torch.float32).div(255.0).reshape(1, 1, 16, 16).expand(1, 3, 16, 16)
    lut = rgb_to_linear_rgb(v)[0, 0].reshape(256)
    w = torch.tensor(_WHITE, dtype=torch.float64)
    fwd = torch.tensor(_RGB2XYZ, dtype=torch.float64) / w[:, None]
    inv = torch.tensor(_XYZ2RGB, dtype=torch.float64) * w[None, :]
    y = torch.tensor(_RGB2XYZ[1:2], dtype=torch.float64)
    return tuple(t.to(torch.float32).to(device) for t in (lut, fwd, inv, y))


def _f(t: torch.Tensor) -> torch.Tensor:
    """CIELAB f(t) in place: cube root above _EPS, its tangent line below."""
    lin = t.clamp_max(_EPS).sub_(_EPS).mul_(_KAPPA)
    return t.clamp_min_(_EPS).log2_().mul_(1 / 3.0).exp2_().add_(lin)


def _finv(f: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_f` in place: cube above _F0, its tangent line below."""
    lin = f.clamp_max(_F0).sub_(_F0).mul_(1 / _KAPPA)
    return f.clamp_min_(_F0).pow_(3).add_(lin)


def _encode(x: torch.Tensor) -> torch.Tensor:
    """Linear -> sRGB 0..255 in place (clamped), the toe below _T0 as a tangent-free line."""
    lin = x.clamp_max(_T0).sub_(_T0).mul_(12.92)
    x.clamp_min_(_T0).log2_().mul_(1 / 2.4).exp2_().mul_(1.055).sub_(0.055).add_(lin)
    return x.clamp_(0.0, 1.0).mul_(255.0)


def _linear(img: torch.Tensor, i3: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Linear RGB (3, N) of the whole-level pixels at flat indices ``i3`` of contiguous ``img``."""
    v = img.reshape(-1).index_select(0, i3.reshape(-1))
    return lut.index_select(0, v.to(torch.int32)).view(i3.shape)


def _sums(vals: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Per-sample sums (B,) of ``vals`` (the mask pixels in sample order, ``n`` per sample):
    each sample's pixels summed alone, so deterministic and independent of the batch."""
    return torch.segment_reduce(vals, "sum", lengths=n)


class MaskPixels(NamedTuple):
    """The hard-mask pixels of a batch (B,H,W), in sample order."""

    idx: torch.Tensor   # (N,) flat b·HW + y·W + x
    b: torch.Tensor     # (N,) sample of each pixel
    n: torch.Tensor     # (B,) pixels per sample
    i3: torch.Tensor    # (3,N) flat indices of the pixels' R, G, B in a (B,3,H,W) tensor


def mask_pixels(hard: torch.Tensor) -> MaskPixels:
    B, H, W = hard.shape
    HW = H * W
    idx = hard.reshape(-1).nonzero().squeeze(1)
    n = torch.count_nonzero(hard.reshape(B, HW), 1)
    b = torch.arange(B, device=hard.device).repeat_interleave(n, output_size=idx.numel())
    i3 = (idx + b * (2 * HW))[None] + (torch.arange(3, device=hard.device) * HW)[:, None]
    return MaskPixels(idx, b, n, i3)


def match_luminance(face: torch.Tensor, bg: torch.Tensor, px: MaskPixels, mode: str, lo: float, hi: float):
    """Batched CIELAB lightness matching (``ratio`` / ``reinhard`` / ``none``) of the mask pixels.

    ``face`` (3,N) float32 whole levels: the warped face at the mask pixels ``px``
    (changed in place); ``bg`` (B,3,H,W) whole levels of any dtype (the crop).
    Returns (face (3,N) float32 0..255, w (B,)); samples without a mask pixel keep w = 1.
    """
    n, b = px.n, px.b
    B = n.shape[0]
    ones = torch.ones(B, device=face.device)
    if mode == "none":
        return face, ones
    if mode not in ("ratio", "reinhard"):
        raise ValueError(f"unknown luminance mode {mode!r}")
    lut, fwd, inv, yrow = _tables(str(face.device))
    flin = lut.index_select(0, face.reshape(-1).to(torch.int32)).view(face.shape)
    fxyz = _f(fwd @ flin)                                     # (3, N): f(X/Xn), f(Y), f(Z/Zn)
    Lf = fxyz[1] * 116.0 - 16.0
    Lb = _f(yrow @ _linear(bg, px.i3, lut))[0].mul_(116.0).sub_(16.0)
    has = n > 0
    nn_ = n.clamp(min=1).to(torch.float32)
    mf, mb = _sums(Lf, n) / nn_, _sums(Lb, n) / nn_
    w = torch.where(has, (mb / mf.clamp(min=1e-3)).clamp(lo, hi), ones)
    if mode == "ratio":
        L = Lf.mul_(w.index_select(0, b))
    else:
        df, db = Lf.sub_(mf.index_select(0, b)), Lb.sub_(mb.index_select(0, b))
        sf = (_sums(df * df, n) / nn_).sqrt()
        sb = (_sums(db * db, n) / nn_).sqrt()
        k = torch.where(has, (sb / sf.clamp(min=1e-3)).clamp(lo, hi), ones)
        L = df.mul_(k.index_select(0, b)).add_((mf * w).index_select(0, b))
    d = L.clamp_(0.0, 100.0).add_(16.0).mul_(1 / 116.0).sub_(fxyz[1])
    f = fxyz.add_(d)
    f[2].clamp_min_(0.0)
    return _encode(inv @ _finv(f)), w
