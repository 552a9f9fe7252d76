"""Batch transforms that run on the training device (GPU) — keep DataLoader workers to reading and decoding.

All functions take batched tensors (``(N,C,H,W)`` images, any memory format, uint8 or
float) already moved to the device, draw their random numbers on that device (pass a
``torch.Generator`` of the same device for reproducibility) and use only torch ops.

* :func:`to_float`, :func:`normalize` — uint8 -> float in [0, 1] -> ``(x - mean) / std``;
* :func:`random_flip` — horizontal flips;
* :func:`random_affine` — random crop / scale / translation jitter (+ flips) with one
  ``affine_grid`` + ``grid_sample`` per batch, optionally to a new output size;
* :class:`GpuAugment` — the above on a whole sample dict, keeping ``image``, ``mask``,
  LBP code maps (nearest sampling; flipped codes are re-mapped with
  :func:`mirror_lbp_lut`, because the LBP of a mirrored image is not the mirrored LBP
  map) and ``landmarks`` (coordinates transformed, left/right points swapped) consistent.

Example::

    aug = GpuAugment(flip=0.5, scale=(0.9, 1.1), translate=0.05, mean=0.5, std=0.5)
    for batch in loader:
        batch = {k: v.to("cuda", non_blocking=True) for k, v in batch.items()}
        batch = aug(batch)              # image: float (N,C,H,W), normalised
"""
from __future__ import annotations

import functools
import re
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..labels import MIRROR68

__all__ = ["to_float", "normalize", "random_flip", "random_affine", "mirror_lbp_lut", "GpuAugment"]

Number = Union[float, Sequence[float]]


def to_float(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images -> ``dtype`` in [0, 1] (float input is only cast)."""
    if images.dtype == torch.uint8:
        return images.to(dtype).div_(255.0)
    return images.to(dtype)


def _per_channel(v: Number, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    return t.view(1, -1, 1, 1) if t.ndim == 1 else t


def normalize(images: torch.Tensor, mean: Number = 0.5, std: Number = 0.5) -> torch.Tensor:
    """``(to_float(images) - mean) / std`` per channel (mean/std in [0, 1] units)."""
    x = to_float(images) if not images.is_floating_point() else images
    return (x - _per_channel(mean, x)) / _per_channel(std, x)


def _rand(n, device, generator):
    return torch.rand(n, device=device, generator=generator)


def random_flip(images: torch.Tensor, p: float = 0.5, generator: Optional[torch.Generator] = None,
                return_mask: bool = False):
    """Flip each image left-right with probability ``p`` (exact, no resampling)."""
    flip = _rand(images.shape[0], images.device, generator) < p
    out = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    return (out, flip) if return_mask else out


def _affine_params(n, device, generator, flip, scale, translate):
    """theta (n,2,3) mapping output normalised coords to input ones, and the flip mask."""
    s_lo, s_hi = scale
    s = s_lo + (s_hi - s_lo) * _rand(n, device, generator)     # zoom factor (>1: zoom in)
    tx = (2 * _rand(n, device, generator) - 1) * translate * 2  # fraction of size -> normalised units
    ty = (2 * _rand(n, device, generator) - 1) * translate * 2
    fl = _rand(n, device, generator) < flip
    sx = torch.where(fl, -1.0, 1.0).to(s.dtype) / s
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = sx
    theta[:, 1, 1] = 1.0 / s
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    return theta, fl


def random_affine(images: torch.Tensor, flip: float = 0.0, scale=(1.0, 1.0), translate: float = 0.0,
                  size: Optional[Sequence[int]] = None, mode: str = "bilinear", padding_mode: str = "border",
                  generator: Optional[torch.Generator] = None, return_theta: bool = False):
    """Random zoom (``scale``: factor range, >1 zooms in = random crop), translation
    (``translate``: fraction of the side) and flips, resampled to ``size`` (default: same).

    One batched ``grid_sample``; uint8 input is returned as float in [0, 1].
    """
    x = to_float(images) if not images.is_floating_point() else images
    n, c, h, w = x.shape
    oh, ow = (h, w) if size is None else (int(size[0]), int(size[1]))
    theta, fl = _affine_params(n, x.device, generator, flip, scale, translate)
    grid = F.affine_grid(theta.to(x.dtype), [n, c, oh, ow], align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    return (out, theta, fl) if return_theta else out


# -- LBP codes under a mirror ------------------------------------------------------------------
def _bits_mirror(code: np.ndarray, P: int) -> np.ndarray:
    """Bit p (angle 2*pi*p/P, counter-clockwise from east) -> bit (P/2 - p) mod P."""
    out = np.zeros_like(code)
    for p in range(P):
        q = (P // 2 - p) % P
        out |= ((code >> p) & 1) << q
    return out


def _ror(code: np.ndarray, P: int) -> np.ndarray:
    mask = (1 << P) - 1
    best = code.copy()
    for k in range(1, P):
        rot = ((code >> k) | (code << (P - k))) & mask
        best = np.minimum(best, rot)
    return best


@functools.lru_cache(maxsize=16)
def mirror_lbp_lut(variant: str, P: int = 8) -> torch.Tensor:
    """Lookup table ``code -> code of the left-right mirrored pattern`` for one LBP variant.

    ``original`` and ``circle`` (even P <= 16): the bit permutation p -> P/2 - p (the
    sampling circle maps onto itself); ``uniform`` (riu2) codes are mirror-invariant;
    ``ror``: the rotation-minimal code of the mirrored pattern. ``nri_uniform`` is not
    supported (ValueError). Bilinear ties can make the LBP of a mirrored image differ
    from the re-mapped codes in rare pixels.
    """
    if variant == "original":
        P = 8
    if variant == "uniform":
        return torch.arange(P + 2, dtype=torch.int64)
    if variant not in ("original", "circle", "ror") or P % 2 or P > 16:
        raise ValueError(f"no mirror table for LBP variant {variant!r} with P={P} "
                         "(supported: original, circle/ror with even P <= 16, uniform)")
    codes = np.arange(1 << P, dtype=np.int64)
    m = _bits_mirror(codes, P)
    if variant == "ror":
        m = _ror(m, P)
    return torch.from_numpy(m)


_LBP_NAME = re.compile(r"^lbp[:/](original|circle|uniform|ror|nri_uniform)(?:_P(\d+)_R[\d.]+)?$")


def _lbp_variant(key: str):
    m = _LBP_NAME.match(key)
    if not m:
        return None
    return m.group(1), int(m.group(2)) if m.group(2) else 8


class GpuAugment(torch.nn.Module):
    """Augment + normalise a batch dict on its device, keeping every field consistent.

    Parameters
    ----------
    flip : float
        Probability of a left-right flip per sample.
    scale : (float, float)
        Zoom factor range (1 = none; (1.0, 1.2) is a random crop of 83-100 % of the side).
    translate : float
        Maximum shift as a fraction of the side.
    size : (h, w), optional
        Output size (default: input size). For large reductions resize on the CPU side
        (``resize=`` of the datasets: area filter) instead.
    mean, std : float or per-channel sequence, optional
        Normalisation in [0, 1] units after the float conversion (None: just /255).
    dtype : torch.dtype
        Float type of the returned image (float32; bfloat16/float16 for AMP).
    image_key : str
        The image field.

    Returns a new dict: image float ``(N,C,h,w)``; ``mask`` float in {0, 1}; LBP code
    maps (keys ``lbp/...`` / ``lbp:...``) resampled nearest, flips re-mapped, original
    dtype; ``landmarks`` transformed (mirrored point order on flips); other keys as given.
    With ``train=False`` (``module.eval()``) only the conversion / normalisation is done.
    """

    def __init__(self, flip: float = 0.5, scale=(1.0, 1.0), translate: float = 0.0, size=None,
                 mean: Optional[Number] = None, std: Optional[Number] = None, dtype: torch.dtype = torch.float32,
                 image_key: str = "image"):
        super().__init__()
        self.flip, self.scale, self.translate = float(flip), (float(scale[0]), float(scale[1])), float(translate)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.mean, self.std, self.dtype, self.image_key = mean, std, dtype, image_key
        self.register_buffer("_mirror68", torch.tensor(MIRROR68, dtype=torch.int64), persistent=False)

    def _finish(self, img):
        x = to_float(img, self.dtype)
        if self.mean is not None or self.std is not None:
            x = normalize(x, 0.0 if self.mean is None else self.mean, 1.0 if self.std is None else self.std)
        return x

    def forward(self, batch: dict, generator: Optional[torch.Generator] = None) -> dict:
        out = dict(batch)
        img = batch[self.image_key]
        n, _, h, w = img.shape
        geometric = self.training and (self.flip > 0 or self.scale != (1.0, 1.0) or self.translate > 0
                                       or self.size is not None)
        if not geometric:
            out[self.image_key] = self._finish(img)
            if "mask" in batch:
                out["mask"] = (batch["mask"] > 0).to(self.dtype)
            return out
        oh, ow = self.size or (h, w)
        theta, fl = _affine_params(n, img.device, generator, self.flip, self.scale, self.translate)
        grid = F.affine_grid(theta, [n, 1, oh, ow], align_corners=False)
        x = to_float(img) if not img.is_floating_point() else img.float()
        out[self.image_key] = self._finish(F.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                                                         align_corners=False))
        for key, v in batch.items():
            if key == "mask":
                m = F.grid_sample((v > 0).float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
                out[key] = m.to(self.dtype)
            elif key.startswith("lbp") and torch.is_tensor(v) and v.ndim == 4:
                codes = F.grid_sample(v.float(), grid, mode="nearest", padding_mode="zeros",
                                      align_corners=False).round().to(v.dtype)
                if fl.any():
                    spec = _lbp_variant(key)
                    if spec is None:
                        raise ValueError(f"cannot flip {key!r}: name it lbp/<variant>_P<P>_R<R> or lbp:<...>")
                    lut = mirror_lbp_lut(*spec).to(v.device)
                    flipped = lut[codes.long()].to(v.dtype)
                    codes = torch.where(fl.view(-1, 1, 1, 1), flipped, codes)
                out[key] = codes
            elif key == "landmarks":
                out[key] = self._landmarks(v, theta, fl, (h, w), (oh, ow))
        return out

    def _landmarks(self, lm, theta, fl, in_hw, out_hw):
        h, w = in_hw
        oh, ow = out_hw
        lm = lm.float()
        # pixel (centres at integers) -> normalised input coords
        p = torch.stack(((2 * lm[..., 0] + 1) / w - 1, (2 * lm[..., 1] + 1) / h - 1), -1)
        A = theta[:, :, :2]
        t = theta[:, :, 2]
        q = torch.linalg.solve(A, (p - t[:, None, :]).transpose(1, 2)).transpose(1, 2)  # output normalised
        res = torch.stack((((q[..., 0] + 1) * ow - 1) / 2, ((q[..., 1] + 1) * oh - 1) / 2), -1)
        if fl.any():
            res = torch.where(fl.view(-1, 1, 1), res[:, self._mirror68], res)
        return res
