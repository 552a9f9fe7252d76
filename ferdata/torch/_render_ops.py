"""Batched torch versions of the render steps of :mod:`ferdata.render.compose`.

Pure functions on (B, C, H, W) float32 tensors, each the batched twin of one CPU step
(same borders, kernel sizes and rounding rules as the OpenCV call it replaces), so a
torch render equals the shard render of the same parameters up to interpolation
rounding (docs/rendering.md, "The torch renderer").
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..render.params import P


# --------------------------------------------------------------------------- geometry
def warp(src: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """Warp (B,C,S,S) by the per-sample 3×3 matrices ``M`` (B,3,3; source -> output).

    The twin of ``cv2.warpAffine/warpPerspective`` with bilinear sampling and a zero
    constant border: one ``grid_sample`` for the whole batch.
    """
    B, _, S, _ = src.shape
    Minv = torch.linalg.inv(M.double()).to(src.dtype if src.dtype == torch.float64 else torch.float32)
    ys, xs = torch.meshgrid(torch.arange(S, device=src.device, dtype=Minv.dtype),
                            torch.arange(S, device=src.device, dtype=Minv.dtype), indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, S * S, 3)
    h = pts @ Minv.transpose(1, 2)                     # (B, S*S, 3)
    xy = h[..., :2] / h[..., 2:3]
    grid = (xy * (2.0 / (S - 1)) - 1.0).reshape(B, S, S, 2).to(src.dtype)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def to_u8(x: torch.Tensor) -> torch.Tensor:
    """Round and saturate like OpenCV's ``saturate_cast<uchar>`` (kept in float)."""
    return torch.round(x).clamp_(0, 255)


# --------------------------------------------------------------------------- backgrounds
def gather_crops(flat: torch.Tensor, base: torch.Tensor, width: torch.Tensor, box: torch.Tensor,
                 size: int) -> torch.Tensor:
    """Background crops (B,3,size,size) float32 from a flat HWC uint8 pool.

    ``box`` (B,3) int64 = (x, y, side) of each crop inside its image (offset ``base``,
    row width ``width``); a crop smaller than ``size`` is resized bilinearly with
    OpenCV's half-pixel rule and a replicated edge, as ``cv2.resize`` does.
    """
    dev = flat.device
    if bool((box[:, 2] == size).all()):   # every crop at full size: a plain gather
        yy = (box[:, 1:2] + torch.arange(size, device=dev))[:, :, None]
        xx = (box[:, 0:1] + torch.arange(size, device=dev))[:, None, :]
        idx = base[:, None, None, None] + ((yy * width[:, None, None] + xx) * 3)[..., None] + torch.arange(3, device=dev)
        return torch.take(flat, idx).permute(0, 3, 1, 2).to(torch.float32)
    x0, y0, side = (box[:, k:k + 1].to(torch.float32) for k in range(3))
    t = (torch.arange(size, device=dev, dtype=torch.float32)[None] + 0.5) * (side / size) - 0.5
    t = torch.minimum(t.clamp(min=0), side - 1)
    i0 = t.floor()
    fr = t - i0
    i1 = torch.minimum(i0 + 1, side - 1)
    W = width[:, None, None].to(torch.int64)
    b = base[:, None, None, None]

    def take(yi, xi):
        yy = (y0 + yi).to(torch.int64)[:, :, None]
        xx = (x0 + xi).to(torch.int64)[:, None, :]
        idx = b + ((yy * W + xx) * 3)[..., None] + torch.arange(3, device=dev)
        return torch.take(flat, idx).to(torch.float32)            # (B,S,S,3)

    fy, fx = fr[:, :, None, None], fr[:, None, :, None]
    top = take(i0, i0) * (1 - fx) + take(i0, i1) * fx
    bot = take(i1, i0) * (1 - fx) + take(i1, i1) * fx
    out = top * (1 - fy) + bot * fy
    return to_u8(out.permute(0, 3, 1, 2))


# --------------------------------------------------------------------------- luminance
_WHITE = (0.95047, 1.0, 1.08883)   # D65, as kornia.color
_EPS, _KAPPA_INV = 0.008856, 1 / 7.787


@lru_cache(maxsize=8)
def _linear_lut(device: str) -> torch.Tensor:
    """sRGB byte -> linear RGB, from kornia's transfer function (inputs are whole levels)."""
    from kornia.color import rgb_to_linear_rgb

    v = torch.arange(256, dtype=torch.float32).div(255.0).reshape(1, 1, 16, 16).expand(1, 3, 16, 16)
    return rgb_to_linear_rgb(v)[0, 0].reshape(256).to(device)


def _f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > _EPS, t.clamp(min=_EPS).pow(1 / 3.0), t * (1 / _KAPPA_INV) + 4.0 / 29.0)


def _finv(f: torch.Tensor) -> torch.Tensor:
    return torch.where(f > 0.2068966, f * f * f, (f - 4.0 / 29.0) * _KAPPA_INV)


def _xyz_f(img_u8: torch.Tensor):
    """(B,3,H,W) whole levels 0..255 -> f(X/Xn), f(Y), f(Z/Zn) (the CIELAB non-linearity)."""
    from kornia.color import rgb_to_xyz

    lin = _linear_lut(str(img_u8.device))[img_u8.to(torch.int64)]
    xyz = rgb_to_xyz(lin)
    w = torch.tensor(_WHITE, device=img_u8.device, dtype=xyz.dtype)[:, None, None]
    return _f(xyz / w)


def _lightness(img_u8: torch.Tensor) -> torch.Tensor:
    """CIELAB L (B,1,H,W) of whole-level RGB: 116 f(Y) - 16."""
    from kornia.color import rgb_to_xyz

    lin = _linear_lut(str(img_u8.device))[img_u8.to(torch.int64)]
    return 116.0 * _f(rgb_to_xyz(lin)[:, 1:2]) - 16.0


def _with_lightness(fxyz: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """RGB 0..255 of the colour (fx, fy, fz) with its lightness set to ``L`` (a*, b* kept)."""
    from kornia.color import linear_rgb_to_rgb, xyz_to_rgb

    d = (L.clamp(0, 100) + 16.0) / 116.0 - fxyz[:, 1:2]
    f = fxyz + d
    f = torch.cat([f[:, :2], f[:, 2:].clamp(min=0.0)], 1)
    w = torch.tensor(_WHITE, device=f.device, dtype=f.dtype)[:, None, None]
    rgb = linear_rgb_to_rgb(xyz_to_rgb(_finv(f) * w))
    return rgb.clamp(0.0, 1.0) * 255.0


def match_luminance(face: torch.Tensor, bg: torch.Tensor, hard: torch.Tensor, mode: str,
                    lo: float, hi: float):
    """Batched CIELAB lightness matching (``ratio`` / ``reinhard`` / ``none``).

    ``face`` and ``bg`` hold whole levels (the uint8 warp and crop, as on the CPU path).
    Returns (face float32 0..255, w (B,)); samples without a mask pixel keep w = 1.
    """
    B = face.shape[0]
    ones = torch.ones(B, device=face.device)
    if mode == "none":
        return face, ones
    fxyz = _xyz_f(face)
    Lf = 116.0 * fxyz[:, 1:2] - 16.0
    Lb = _lightness(bg)
    m = hard[:, None].to(face.dtype)
    n = m.sum((1, 2, 3))
    has = n > 0
    nn_ = n.clamp(min=1)
    mf = (Lf * m).sum((1, 2, 3)) / nn_
    mb = (Lb * m).sum((1, 2, 3)) / nn_
    w = torch.where(has, (mb / mf.clamp(min=1e-3)).clamp(lo, hi), ones)
    e = lambda v: v[:, None, None, None]  # noqa: E731
    if mode == "ratio":
        L = Lf * e(w)
    elif mode == "reinhard":
        sf = (((Lf - e(mf)) ** 2 * m).sum((1, 2, 3)) / nn_).sqrt()
        sb = (((Lb - e(mb)) ** 2 * m).sum((1, 2, 3)) / nn_).sqrt()
        k = torch.where(has, (sb / sf.clamp(min=1e-3)).clamp(lo, hi), ones)
        L = (Lf - e(mf)) * e(k) + e(mf) * e(w)
    else:
        raise ValueError(f"unknown luminance mode {mode!r}")
    out = torch.where(e(has) & (m > 0), _with_lightness(fxyz, L), face)
    return out, w


# --------------------------------------------------------------------------- alpha
@lru_cache(maxsize=16)
def _ellipse(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)).astype(np.float32)


@lru_cache(maxsize=64)
def gaussian_kernel(sigma: float, depth_u8: bool = False) -> np.ndarray:
    """OpenCV's GaussianBlur kernel for ``ksize=(0,0)``: size round(σ·(3|4)·2+1)|1."""
    ks = int(round(sigma * (3 if depth_u8 else 4) * 2 + 1)) | 1
    return cv2.getGaussianKernel(ks, sigma).ravel().astype(np.float32)


def _border_index(n: int, r: int, mode: str) -> np.ndarray:
    """Source index of padded positions -r..n+r-1 under OpenCV's replicate/reflect border."""
    i = np.arange(-r, n + r)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    i = np.mod(i, 2 * n)               # BORDER_REFLECT: fedcba|abcdefgh|hgfedcb
    return np.where(i >= n, 2 * n - 1 - i, i)


def blur_matrices(kernels: np.ndarray, n: int, mode: str) -> np.ndarray:
    """(G,n,n) matrices applying the 1-D kernels (G,K) along an axis of length n, border folded in.

    A separable blur is then two batched matmuls (``Bm @ x @ Bm.T``): on CPU and GPU far
    faster than a grouped convolution with one kernel per sample.
    """
    G, K = kernels.shape
    r = K // 2
    src = _border_index(n, r, mode)
    cols = src[np.arange(n)[:, None] + np.arange(K)[None, :]]        # (n,K)
    Bm = np.zeros((G, n, n), np.float32)
    g = np.repeat(np.arange(G), n * K)
    rows = np.tile(np.repeat(np.arange(n), K), G)
    np.add.at(Bm, (g, rows, np.tile(cols.ravel(), G)), kernels[:, None, :].repeat(n, 1).ravel())
    return Bm


def _sep_blur(x: torch.Tensor, Bh: torch.Tensor, Bw: torch.Tensor) -> torch.Tensor:
    """Blur (B,C,H,W) with (B|1,1,H,H) row and (B|1,1,W,W) column matrices."""
    return Bh @ x @ Bw.transpose(-1, -2)


def soft_alpha(hard: torch.Tensor, erode: float, feather: float) -> torch.Tensor:
    """Batched twin of :func:`ferdata.masks.soft_alpha` (gaussian mode): (B,H,W) -> (B,1,H,W)."""
    h = hard[:, None].to(torch.float32)
    m = h
    r = int(round(erode))
    if erode > 0 and r > 0:
        k = torch.from_numpy(_ellipse(r)).to(h.device)
        # cv2.erode's default border never erodes: pad with ones
        mp = F.pad(h, (r, r, r, r), value=1.0)
        m = (F.conv2d(mp, k[None, None]) >= float(k.sum()) - 0.5).to(torch.float32)
    if feather <= 0:
        return m
    H, W = h.shape[-2:]
    kern = gaussian_kernel(feather / 3.0)[None]
    Bh = torch.from_numpy(blur_matrices(kern, H, "replicate")).to(h.device)[:, None]
    Bw = Bh if W == H else torch.from_numpy(blur_matrices(kern, W, "replicate")).to(h.device)[:, None]
    a = _sep_blur(m, Bh, Bw)
    return a.clamp(0.0, 1.0) * h


# --------------------------------------------------------------------------- photometric
def photometric(img: torch.Tensor, p: torch.Tensor, noise_bank: torch.Tensor) -> torch.Tensor:
    """Batched twin of :func:`ferdata.render.augment.photometric` (same order and borders)."""
    B, C, H, W = img.shape
    col = lambda name: p[:, P[name]].to(img.dtype)[:, None, None, None]  # noqa: E731
    out = img * col("brightness")
    c = col("contrast")
    mean = out.mean((1, 2, 3), keepdim=True)
    out = torch.where(c != 1.0, (out - mean) * c + mean, out)
    g = col("gamma")
    gam = torch.pow(out.clamp(0, 255) * (1 / 255.0), g) * 255.0
    out = torch.where(g != 1.0, gam, out)
    out = _blur_per_sample(out, p[:, P["blur_sigma"]].tolist())
    ns = p[:, P["noise_sigma"]]
    if bool((ns > 0).any()):
        out = out + noise_windows(noise_bank, p[:, P["noise_seed"]], H, W) * ns.to(img.dtype)[:, None, None, None]
    return out


def _blur_per_sample(x: torch.Tensor, sigmas) -> torch.Tensor:
    """Gaussian blur with one σ per sample (σ = 0: untouched), BORDER_REFLECT, one conv."""
    if not any(s > 0 for s in sigmas):
        return x
    B, C, H, W = x.shape
    kerns = [gaussian_kernel(float(s)) if s > 0 else np.ones(1, np.float32) for s in sigmas]
    K = max(len(k) for k in kerns)
    bank = np.zeros((B, K), np.float32)
    for j, k in enumerate(kerns):
        o = (K - len(k)) // 2
        bank[j, o:o + len(k)] = k
    Bh = torch.from_numpy(blur_matrices(bank, H, "reflect")).to(x.device)[:, None]
    Bw = Bh if W == H else torch.from_numpy(blur_matrices(bank, W, "reflect")).to(x.device)[:, None]
    return _sep_blur(x, Bh, Bw)


def noise_windows(bank: torch.Tensor, seeds: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """The (B,C,H,W) windows of the noise bank (4S,4S,C) picked by each sample's noise seed."""
    span = bank.shape[0] - H + 1
    s = seeds.to(torch.int64).to(bank.device) % (span * span)
    oy, ox = s // span, s % span
    rows = oy[:, None] + torch.arange(H, device=bank.device)
    cols = ox[:, None] + torch.arange(W, device=bank.device)
    win = bank[rows[:, :, None], cols[:, None, :]]          # (B,H,W,C)
    return win.permute(0, 3, 1, 2)


def rgb_to_gray_u8(img: torch.Tensor) -> torch.Tensor:
    """``cv2.COLOR_RGB2GRAY`` on uint8 (its fixed-point weights and rounding): (B,3,H,W) -> (B,1,H,W)."""
    x = img.to(torch.int32)
    y = (x[:, 0] * 9798 + x[:, 1] * 19235 + x[:, 2] * 3735 + 16384) >> 15  # OpenCV 4's 15-bit weights
    return y[:, None].to(torch.uint8)
