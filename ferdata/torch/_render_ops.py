"""Batched torch versions of the render steps of :mod:`ferdata.render.compose`.

Pure functions on (B, C, H, W) float32 tensors, each the batched twin of one CPU step
(same borders, kernel sizes and rounding rules as the OpenCV call it replaces), so a
torch render equals the shard render of the same parameters up to interpolation
rounding (docs/rendering.md, "The torch renderer"). Written for a CPU as well as a
GPU: whole-tensor passes done in place, blurs as per-channel (depthwise) convolutions
with the border gathered once, gathers by whole rows, work only on the samples a step
changes. The luminance step is :mod:`._render_lab`.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..render.params import P
from ._render_lab import MaskPixels, mask_pixels, match_luminance  # noqa: F401  (re-exported)

_LOG2_255 = float(np.log2(255.0))   # (x/255)^g·255 = 2^(g·log2 x + (1-g)·log2 255)


# --------------------------------------------------------------------------- geometry
def source_grid(M: torch.Tensor, S: int) -> torch.Tensor:
    """(B,S,S,2) float32 source (x, y) of every output pixel for ``grid_sample(align_corners=True)``
    (-1..1 over the source), for matrices ``M`` (B,3,3; source -> output); one broadcast add
    from the inverse matrices, the normalisation folded into them, perspective divided."""
    A = torch.linalg.inv(M.double())                                  # output -> source
    A[:, :2] = A[:, :2] * (2.0 / (S - 1)) - A[:, 2:3]                 # x/z -> 2x/(S-1)/z - 1
    A = A.to(torch.float32)
    t = torch.arange(S, device=M.device, dtype=torch.float32)
    along_x = A[:, None, None, :2, 0] * t[None, None, :, None]       # (B,1,S,2)
    along_y = A[:, None, None, :2, 1] * t[None, :, None, None] + A[:, None, None, :2, 2]  # (B,S,1,2)
    grid = torch.add(along_x, along_y)
    if bool((A[:, 2, :2] != 0).any()):                                # a perspective sample
        z = A[:, None, None, 2, 0] * t[None, None, :] + (A[:, None, 2, 1] * t[None, :] + A[:, None, 2, 2])[..., None]
        grid.div_(z[..., None])
    return grid


def warp(src: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Warp (B,C,S,S) float to the source points ``grid`` (:func:`source_grid`).

    The twin of ``cv2.warpAffine/warpPerspective`` with bilinear sampling and a zero
    constant border: one ``grid_sample`` for the whole batch.
    """
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def sample_pixels(padded: torch.Tensor, faces: torch.Tensor, grid: torch.Tensor, px) -> torch.Tensor:
    """Bilinear samples (3,N) float32 of RGB faces at the source points of the mask pixels ``px``.

    ``padded``: the flat (F,3,S+3,S+3) uint8 faces with a zero border (1 px before, 2
    after), so a zero-border bilinear sample is 4 plain gathers; ``faces`` (B,) face of
    each sample. The same values as ``warp`` at those pixels (to float rounding), at the
    cost of the mask pixels only (a face covers about a quarter of a render).
    """
    S = grid.shape[-2]
    Sp = S + 3
    xy = grid.view(-1, 2).index_select(0, px.idx).add_(1.0).mul_((S - 1) / 2.0).clamp_(-1.0, float(S))
    x0 = xy.floor()
    fr = xy.sub_(x0)
    x0 = x0.to(torch.int64).add_(1)
    i = ((faces.index_select(0, px.b) * (3 * Sp * Sp) + x0[:, 1] * Sp + x0[:, 0])[None]
         + (torch.arange(3, device=grid.device) * (Sp * Sp))[:, None]).view(-1)
    v = [padded[o:].index_select(0, i).view(3, -1).to(torch.float32) for o in (0, 1, Sp, Sp + 1)]
    top, bot = v[0].lerp_(v[1], fr[:, 0]), v[2].lerp_(v[3], fr[:, 0])
    return top.lerp_(bot, fr[:, 1])


def to_u8(x: torch.Tensor) -> torch.Tensor:
    """Round and saturate like OpenCV's ``saturate_cast<uchar>`` (kept in float)."""
    return torch.round(x).clamp_(0, 255)


# --------------------------------------------------------------------------- backgrounds
def gather_crops(flat: torch.Tensor, base: torch.Tensor, width: torch.Tensor, height: torch.Tensor,
                 box: torch.Tensor, size: int) -> torch.Tensor:
    """Background crops (B,3,size,size) uint8 from a flat pool of planar (3,h,w) uint8 images.

    ``box`` (B,3) int64 = (x, y, side) of each crop inside its image (offset ``base``,
    row width ``width``, ``height`` rows per plane); a crop smaller than ``size`` is
    resized bilinearly with OpenCV's half-pixel rule and a replicated edge, as
    ``cv2.resize`` does.
    """
    dev = flat.device
    B = box.shape[0]
    plane = (width * height)[:, None, None]
    if bool((box[:, 2] == size).all()):   # every crop at full size: gather whole rows of size bytes
        rows = flat.as_strided((flat.numel() - size + 1, size), (1, 1))
        y = (box[:, 1:2] + torch.arange(size, device=dev))[:, None, :]
        starts = (base[:, None, None] + torch.arange(3, device=dev)[None, :, None] * plane
                  + y * width[:, None, None] + box[:, 0, None, None])
        return rows.index_select(0, starts.reshape(-1)).view(B, 3, size, size)
    x0, y0, side = (box[:, k:k + 1].to(torch.float32) for k in range(3))
    t = (torch.arange(size, device=dev, dtype=torch.float32)[None] + 0.5) * (side / size) - 0.5
    t = torch.minimum(t.clamp(min=0), side - 1)
    i0 = t.floor()
    fr = t - i0
    i1 = torch.minimum(i0 + 1, side - 1)
    W = width[:, None, None, None]
    b = base[:, None, None, None] + torch.arange(3, device=dev)[None, :, None, None] * plane[..., None]

    def take(yi, xi):
        yy = (y0 + yi).to(torch.int64)[:, None, :, None]
        xx = (x0 + xi).to(torch.int64)[:, None, None, :]
        return torch.take(flat, b + yy * W + xx).to(torch.float32)            # (B,3,S,S)

    fy, fx = fr[:, None, :, None], fr[:, None, None, :]
    top = take(i0, i0) * (1 - fx) + take(i0, i1) * fx
    bot = take(i1, i0) * (1 - fx) + take(i1, i1) * fx
    return to_u8(top * (1 - fy) + bot * fy).to(torch.uint8)


# --------------------------------------------------------------------------- blur
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


def _pad(x: torch.Tensor, r: int, mode: str) -> torch.Tensor:
    """(1,N,H,W) padded by ``r`` on every side with OpenCV's replicate / reflect border."""
    H, W = x.shape[-2:]
    if mode == "replicate":
        return F.pad(x, (r, r, r, r), mode="replicate")
    if r > min(H, W):   # a border wider than the image: the general index
        iy = torch.from_numpy(_border_index(H, r, mode)).to(x.device)
        ix = torch.from_numpy(_border_index(W, r, mode)).to(x.device)
        return x.index_select(2, iy).index_select(3, ix)
    # BORDER_REFLECT (fedcba|abcdef; torch's "reflect" is OpenCV's reflect-101): flipped edges glued on
    x = torch.cat([x[:, :, :r].flip(2), x, x[:, :, H - r:].flip(2)], 2)
    return torch.cat([x[..., :r].flip(3), x, x[..., W - r:].flip(3)], 3)


def blur(x: torch.Tensor, kernels: np.ndarray, mode: str) -> torch.Tensor:
    """Separable blur of (B,C,H,W) with one odd 1-D kernel per sample (``kernels`` (B|1,K)).

    OpenCV's ``replicate`` / ``reflect`` border is added once, then each axis is one
    depthwise convolution over all B·C planes (no Python loop per sample).
    """
    B, C, H, W = x.shape
    K = kernels.shape[1]
    k = torch.from_numpy(np.ascontiguousarray(kernels, np.float32)).to(x.device)
    k = k.expand(B, K).repeat_interleave(C, 0)                     # (B·C, K)
    y = _pad(x.reshape(1, B * C, H, W), K // 2, mode)
    y = F.conv2d(y, k[:, None, :, None], groups=B * C)              # along H
    y = F.conv2d(y, k[:, None, None, :], groups=B * C)              # along W
    return y.view(B, C, H, W)


# --------------------------------------------------------------------------- alpha
def erode(hard: torch.Tensor, r: int) -> torch.Tensor:
    """``cv2.erode`` of a (..., H, W) bool mask by the r-ellipse, with its default border (never erodes).

    The ellipse is a union of centred rectangles (one per distinct row half-width), so
    the erosion is the AND of rectangle erosions, each a run of shifted byte ANDs along
    x then y (far cheaper on a CPU than a convolution or a max-pool).
    """
    H, W = hard.shape[-2:]
    el = _ellipse(r)
    half = (el.sum(1).astype(int) - 1) // 2                         # half-width of each row
    p = F.pad(hard.to(torch.uint8), (r, r, r, r), value=1)
    out = None
    for w in sorted(set(half.tolist())):
        t = int(np.abs(np.flatnonzero(half >= w) - r).max())
        row = p[..., r - w:r - w + W].clone()
        for dx in range(1, 2 * w + 1):
            row.bitwise_and_(p[..., r - w + dx:r - w + dx + W])
        col = row[..., r - t:r - t + H, :].clone()
        for dy in range(1, 2 * t + 1):
            col.bitwise_and_(row[..., r - t + dy:r - t + dy + H, :])
        out = col if out is None else out.bitwise_and_(col)
    return out.to(torch.bool)


def soft_alpha(hard: torch.Tensor, erode_px: float, feather: float) -> torch.Tensor:
    """Batched twin of :func:`ferdata.faces.masks.soft_alpha` (gaussian mode): (B,H,W) -> (B,1,H,W)."""
    h = hard[:, None].to(torch.float32)
    r = int(round(erode_px))
    m = erode(hard, r)[:, None].to(torch.float32) if erode_px > 0 and r > 0 else h
    if feather <= 0:
        return m
    a = blur(m, gaussian_kernel(feather / 3.0)[None], "replicate")
    return a.clamp_(0.0, 1.0).mul_(h)


# --------------------------------------------------------------------------- photometric
def photometric(img: torch.Tensor, p: torch.Tensor, noise_planes: torch.Tensor) -> torch.Tensor:
    """Batched twin of :func:`ferdata.render.augment.photometric` (same order and borders), in place.

    ``noise_planes`` is the noise bank as (C, 4S, 4S) planes (:func:`noise_planes`).
    """
    B, C, H, W = img.shape
    col = lambda name: p[:, P[name]].to(img.dtype)[:, None, None, None]  # noqa: E731
    b, c = col("brightness"), col("contrast")
    # (x·b - m)·c + m with m = mean(x·b): one pass (c = 1 leaves x·b)
    shift = img.mean((1, 2, 3), keepdim=True).mul_(b * (1 - c))
    out = img.mul_(b * c).add_(shift)
    g = p[:, P["gamma"]].to(img.dtype)
    out = _subset(out, g != 1.0, lambda x, gs: x.clamp_(0, 255).log2_().mul_(gs).add_((1 - gs) * _LOG2_255).exp2_(),
            g[:, None, None, None])
    s = p[:, P["blur_sigma"]]
    sel = s > 0
    if bool(sel.any()):
        sig = s[sel].tolist()
        kerns = [gaussian_kernel(float(v)) for v in sig]
        K = max(len(k) for k in kerns)
        bank = np.zeros((len(kerns), K), np.float32)
        for j, k in enumerate(kerns):
            o = (K - len(k)) // 2
            bank[j, o:o + len(k)] = k
        out = _subset(out, sel, lambda x, _: blur(x, bank, "reflect"), None)
    ns = p[:, P["noise_sigma"]]
    if bool((ns > 0).any()):
        out.addcmul_(noise_windows(noise_planes, p[:, P["noise_seed"]], H, W), ns.to(img.dtype)[:, None, None, None])
    return out


def _subset(x: torch.Tensor, sel: torch.Tensor, fn, arg) -> torch.Tensor:
    """``x`` with x[sel] = fn(x[sel], arg[sel]) (the whole batch, not indexed, when all are selected)."""
    if bool(sel.all()):
        return fn(x, arg)
    if bool(sel.any()):
        j = sel.nonzero().squeeze(1)
        x.index_copy_(0, j, fn(x.index_select(0, j), None if arg is None else arg.index_select(0, j)))
    return x


def noise_planes(bank: np.ndarray, device) -> torch.Tensor:
    """The (4S,4S,C) noise bank as contiguous (C,4S,4S) planes: a window row is then contiguous."""
    return torch.from_numpy(np.ascontiguousarray(bank.transpose(2, 0, 1))).to(device)


def noise_windows(planes: torch.Tensor, seeds: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """The (B,C,H,W) windows of the noise bank picked by each sample's noise seed (row gathers)."""
    C, N, _ = planes.shape
    dev = planes.device
    span = N - H + 1
    s = seeds.to(torch.int64).to(dev) % (span * span)
    oy, ox = s // span, s % span
    flat = planes.reshape(-1)
    rows = flat.as_strided((flat.numel() - W + 1, W), (1, 1))
    y = oy[:, None, None] + torch.arange(H, device=dev)[None, None]
    starts = torch.arange(C, device=dev)[None, :, None] * (N * N) + y * N + ox[:, None, None]
    return rows.index_select(0, starts.reshape(-1)).view(-1, C, H, W)


def rgb_to_gray_u8(img: torch.Tensor) -> torch.Tensor:
    """``cv2.COLOR_RGB2GRAY`` on uint8 (its fixed-point weights and rounding): (B,3,H,W) -> (B,1,H,W)."""
    x = img.to(torch.int32)
    y = (x[:, 0] * 9798 + x[:, 1] * 19235 + x[:, 2] * 3735 + 16384) >> 15  # OpenCV 4's 15-bit weights
    return y[:, None].to(torch.uint8)
