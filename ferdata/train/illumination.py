"""Illumination normalisation by isotropic diffusion (``illumination = "diffusion"``).

Seed 002 §4.2: "Only the intensity channels of images in RaFD-FRONT and RaFD-POSE are
kept. The intensity channels are illumination normalized by the isotropic diffusion
method [34]" — [34] is Gross & Brajovic (2003), "An image preprocessing algorithm for
illumination invariant face recognition". The seed gives no formula and no parameter;
this module follows [34] as the seed cites it:

* an image is reflectance times illumination, ``I = R · L``;
* the illumination ``L`` is the smooth image closest to ``I``:
  ``L = argmin Σ_p (L_p − I_p)² + λ Σ_{p~q} (L_p − L_q)²`` over 4-neighbour pairs, with
  the **same** weight on every pair (isotropic; [34]'s anisotropic variant weights each
  pair by a local Weber contrast). Setting the gradient to zero gives

      (Id + λ·Δ) L = I,        Δ = the grid graph Laplacian, reflecting (Neumann) borders

  i.e. one implicit (backward Euler) step of length λ of the heat equation ∂L/∂t = ∇²L —
  the isotropic-diffusion estimate of the illumination. It is solved exactly in the
  DCT-II basis, where Δ is diagonal: ``DCT(L) = DCT(I) / (1 + λ(4 sin²(πk/2H) + 4 sin²(πl/2W)))``.
* the normalised image is the reflectance ``R = (I + ε) / (L + ε)`` (I, L in grey levels
  0..255; ε = 1 grey level keeps it finite on black pixels — our choice);
* output: ``R`` clipped to its [``clip`` %, 100 − ``clip`` %] percentiles and rescaled
  linearly to 0..255, uint8 (a flat ``R`` — a constant image — gives 128 everywhere).

Where seed 002 and [34] are silent (our choices): λ = 7 px², the default of the INface
toolbox's ``isotropic_smoothing`` (Štruc & Pavešić), tuned there for 128×128 faces, the
scale of RaFD-FRONT's 125×160 faces; the 0.4 % percentile clip (INface's post-processing);
ε. Colour images (the seed keeps intensity only): ``L`` is estimated on the luminance
``Y = 0.299 R + 0.587 G + 0.114 B`` and every channel is divided by the same ``L``, so
the hue is kept; the three channels are rescaled together.

numpy and ``cv2.dct``; :func:`normalise_illumination` takes one uint8 image (H, W), (H, W, 1) or
(H, W, 3), :func:`normalise_illumination_batch` a stack (N, H, W[, C]).
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

__all__ = ["MODES", "LAMBDA", "CLIP", "EPS", "luminance", "reflectance", "rescale_u8",
           "normalise_illumination", "normalise_illumination_batch"]

#: ``illumination`` values (TrainConfig).
MODES = ("none", "diffusion")
#: Smoothness weight λ (px²): INface's ``isotropic_smoothing`` default (paper silent).
LAMBDA = 7.0
#: Percent clipped at each end of the reflectance histogram before rescaling.
CLIP = 0.4
#: Grey levels added to I and L before dividing.
EPS = 1.0
_FLAT = 1e-6


@functools.lru_cache(maxsize=32)
def _gain(h: int, w: int, lam: float) -> np.ndarray:
    """1 / (1 + λ·eigenvalues of the Neumann grid Laplacian) in the DCT-II basis of an h×w grid:
    the Laplacian's eigenvalues there are 4 sin²(πk/2h) + 4 sin²(πl/2w)."""
    su = np.sin(np.pi * np.arange(h) / (2 * h)) ** 2
    sv = np.sin(np.pi * np.arange(w) / (2 * w)) ** 2
    return 1.0 / (1.0 + lam * 4.0 * (su[:, None] + sv[None, :]))


def luminance(image: np.ndarray, lam: float = LAMBDA) -> np.ndarray:
    """The illumination estimate ``L`` solving ``(Id + λΔ) L = I`` (Neumann borders) for the
    float image(s) ``image`` (..., H, W); float64, same shape.

    Exact: the Neumann Laplacian is diagonal in the DCT-II basis (``cv2.dct``). An odd side
    (``cv2.dct`` takes even sizes) is mirror-extended to twice its length first: the
    mirrored problem's solution is mirror-symmetric, and its first half is this one's."""
    x = np.asarray(image, np.float64)
    h, w = x.shape[-2:]
    if h % 2:
        x = np.concatenate([x, x[..., ::-1, :]], axis=-2)
    if w % 2:
        x = np.concatenate([x, x[..., ::-1]], axis=-1)
    hh, ww = x.shape[-2:]
    gain = _gain(hh, ww, float(lam))
    flat = np.ascontiguousarray(x).reshape(-1, hh, ww)
    out = np.empty_like(flat)
    for i, img in enumerate(flat):
        out[i] = cv2.idct(cv2.dct(img) * gain)
    return out.reshape(x.shape)[..., :h, :w]


def reflectance(stack: np.ndarray, lam: float = LAMBDA, eps: float = EPS) -> np.ndarray:
    """``(I + ε) / (L + ε)`` of a float stack (N, H, W, C) in grey levels; ``L`` from the
    luminance of the channels (the channel itself when C = 1)."""
    x = np.asarray(stack, np.float64)
    y = x[..., 0] if x.shape[-1] == 1 else x[..., :3] @ np.array([0.299, 0.587, 0.114])
    ill = luminance(y, lam)[..., None]
    return (x + eps) / (np.maximum(ill, 0.0) + eps)


def rescale_u8(r: np.ndarray, clip: float = CLIP) -> np.ndarray:
    """Each image of the stack ``r`` (N, ...) clipped to its [clip, 100 − clip] percentiles
    and mapped linearly onto 0..255 (uint8); a flat image gives 128."""
    flat = r.reshape(len(r), -1)
    lo, hi = np.percentile(flat, [clip, 100.0 - clip], axis=1) if clip > 0 else (flat.min(1), flat.max(1))
    span = hi - lo
    ok = span > _FLAT * np.maximum(np.abs(hi), 1.0)
    scale = np.where(ok, 255.0 / np.where(ok, span, 1.0), 0.0)
    shape = (-1,) + (1,) * (r.ndim - 1)
    out = (np.clip(r, lo.reshape(shape), hi.reshape(shape)) - lo.reshape(shape)) * scale.reshape(shape)
    out = np.where(ok.reshape(shape), out, 128.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def normalise_illumination_batch(images: np.ndarray, lam: float = LAMBDA, clip: float = CLIP,
                                 eps: float = EPS) -> np.ndarray:
    """:func:`normalise_illumination` of every image of a uint8 stack (N, H, W) or (N, H, W, C)."""
    a = np.asarray(images)
    if a.dtype != np.uint8 or a.ndim not in (3, 4) or (a.ndim == 4 and a.shape[-1] not in (1, 3)):
        raise ValueError(f"expected uint8 (N, H, W) or (N, H, W, 1|3) images, got {a.dtype} {a.shape}")
    stack = a[..., None] if a.ndim == 3 else a
    out = rescale_u8(reflectance(stack, lam, eps), clip)
    return out[..., 0] if a.ndim == 3 else out


def normalise_illumination(image: np.ndarray, lam: float = LAMBDA, clip: float = CLIP,
                           eps: float = EPS) -> np.ndarray:
    """One uint8 image (H, W), (H, W, 1) or (H, W, 3), illumination-normalised by isotropic
    diffusion (module docstring): uint8 of the same shape, rescaled to 0..255."""
    a = np.asarray(image)
    if a.ndim not in (2, 3):
        raise ValueError(f"expected one image (H, W) or (H, W, C), got shape {a.shape}")
    return normalise_illumination_batch(a[None], lam, clip, eps)[0]
