"""Apply render parameters (pure: arrays + parameter vector -> sample).

Steps (docs/rendering.md): geometry (one warp per array) -> luminance matching ->
alpha composite onto the background crop -> photometric augmentation.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from ..config import RenderConfig
from ..labels import MIRROR68
from ..faces.masks import soft_alpha
from .augment import photometric
from .params import P

_MIRROR = np.array(MIRROR68)
log = logging.getLogger(__name__)


@dataclass
class PreparedFace:
    """A face-store face resized once to the output size (cached per worker)."""

    image: np.ndarray      # (size,size,3) uint8
    mask: np.ndarray       # (size,size) uint8 0..255 (area-resized, soft at the edge)
    landmarks: np.ndarray  # (68,2) float64, NaN if unknown
    rgba: np.ndarray = None  # (size,size,4) uint8: image + mask, warped in one call

    def __post_init__(self):
        if self.rgba is None:
            self.rgba = np.dstack([self.image, self.mask])


def prepare_face(image: np.ndarray, mask: np.ndarray, landmarks: np.ndarray, size: int) -> PreparedFace:
    """Resize an aligned face (S×S) to the output size with area interpolation."""
    S = image.shape[0]
    if S == size:
        return PreparedFace(image, mask, np.asarray(landmarks, np.float64))
    interp = cv2.INTER_AREA if S > size else cv2.INTER_LINEAR
    k = size / S
    img = cv2.resize(image, (size, size), interpolation=interp)
    m = cv2.resize(mask, (size, size), interpolation=interp)
    lm = (np.asarray(landmarks, np.float64) + 0.5) * k - 0.5
    return PreparedFace(img, m, lm)


def geometry_matrix(p: np.ndarray, size: int) -> np.ndarray:
    """The 3×3 projective matrix (flip, then similarity about the centre, then perspective)."""
    c = (size - 1) / 2.0
    F = np.eye(3)
    if p[P["flip"]] > 0.5:
        F = np.array([[-1.0, 0, size - 1], [0, 1, 0], [0, 0, 1]])
    a = np.deg2rad(float(p[P["angle"]]))
    s = float(p[P["scale"]])
    ca, sa = np.cos(a) * s, np.sin(a) * s
    # rotate counter-clockwise in the image (y down): [[c, s], [-s, c]]
    A = np.array([[ca, sa, 0], [-sa, ca, 0], [0, 0, 1]])
    T1 = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1.0]])
    T2 = np.array([[1, 0, c + float(p[P["tx"]])], [0, 1, c + float(p[P["ty"]])], [0, 0, 1.0]])
    M = T2 @ A @ T1 @ F
    off = p[P["p0x"]:P["p3y"] + 1].astype(np.float64)
    if np.any(off != 0):
        src = np.array([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]], np.float32)
        Hp = cv2.getPerspectiveTransform(src, (src + off.reshape(4, 2)).astype(np.float32))
        M = Hp @ M
    return M


def transform_landmarks(landmarks: np.ndarray, p: np.ndarray, size: int, M=None) -> np.ndarray:
    """Landmarks of the prepared face -> landmarks of the render (flip permutes them).

    ``M`` is ``geometry_matrix(p, size)`` when the caller already has it.
    """
    if M is None:
        M = geometry_matrix(p, size)
    h = np.concatenate([landmarks, np.ones((len(landmarks), 1))], axis=1) @ M.T   # np.c_, without its indexing machinery
    out = h[:, :2] / h[:, 2:3]
    if p[P["flip"]] > 0.5:
        out = out[_MIRROR]
    return out


def _warp(arr, M, size, interp=cv2.INTER_LINEAR):
    if M[2, 0] == 0 and M[2, 1] == 0 and M[2, 2] == 1:
        return cv2.warpAffine(arr, M[:2], (size, size), flags=interp, borderMode=cv2.BORDER_CONSTANT)
    return cv2.warpPerspective(arr, M, (size, size), flags=interp, borderMode=cv2.BORDER_CONSTANT)


def background_crop(bg: np.ndarray, p: np.ndarray, size: int):
    """Crop (and rescale if the image is small) the background; returns (crop uint8, box)."""
    h, w = bg.shape[:2]
    side = min(size, h, w)
    x = min(int(p[P["crop_u"]] * (w - side + 1)), w - side)
    y = min(int(p[P["crop_v"]] * (h - side + 1)), h - side)
    crop = bg[y:y + side, x:x + side]
    if side != size:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(crop), (x, y, side, side)


def _bbox(mask):
    """``(y0, y1, x0, x1)`` of the nonzero pixels of a bool mask, None if there are none
    (cv2.boundingRect of its uint8 view: the same box, a third of the time of numpy's)."""
    m8 = np.ascontiguousarray(mask if mask.dtype == bool else mask != 0).view(np.uint8)
    x, y, w, h = cv2.boundingRect(m8)
    if w == 0:
        return None
    return y, y + h, x, x + w


def _mean(a: np.ndarray) -> float:
    """``float(a.mean())`` of a 1-D float array, the same value (numpy's own steps: its
    pairwise sum, then ``dtype(sum / n)``) without numpy's ~12 us of Python around them."""
    s = np.add.reduce(a)
    return float(s.dtype.type(s / a.size))


def lab_lightness(rgb: np.ndarray) -> np.ndarray:
    """CIELAB lightness L (float32, 0..100) of a uint8 RGB array, per pixel.

    cv2's float RGB->Lab is a per-pixel function, so the L of a region cut from this
    plane is bit-identical to the L of the region converted on its own (tested): a
    background's plane can be computed once and sliced for every crop.
    """
    return np.ascontiguousarray(cv2.cvtColor(rgb.astype(np.float32) * (1 / 255.0), cv2.COLOR_RGB2Lab)[..., 0])


def match_luminance(face: np.ndarray, bg: np.ndarray, hard: np.ndarray, mode: str, lo: float, hi: float,
                    bg_lightness: Optional[np.ndarray] = None):
    """Scale the face's CIELAB lightness toward the background under the mask.

    ``ratio`` (FERAtt): L_face *= clip(mean L_bg / mean L_face, lo, hi).
    ``reinhard``: L_face = (L_face - mu_f) * clip(sd_b/sd_f, lo, hi) + mu_f * w, i.e.
    the mean moves as in ``ratio`` and the contrast of L is matched too.
    ``bg_lightness``: ``lab_lightness(bg)`` when the caller has it (sliced, not recomputed).
    Returns (face float32 RGB 0..255, w).
    """
    face32 = face.astype(np.float32)
    if mode == "none":
        return face32, 1.0
    bb = _bbox(hard)
    if bb is None:
        return face32, 1.0
    y0, y1, x0, x1 = bb
    m = hard[y0:y1, x0:x1]
    lab_f = cv2.cvtColor(face32[y0:y1, x0:x1] * (1 / 255.0), cv2.COLOR_RGB2Lab)
    Lb_box = lab_lightness(bg[y0:y1, x0:x1]) if bg_lightness is None else bg_lightness[y0:y1, x0:x1]
    Lf, Lb = lab_f[..., 0][m], Lb_box[m]
    mf, mb = _mean(Lf), _mean(Lb)
    w = min(max(mb / max(mf, 1e-3), lo), hi)   # np.clip of a scalar, without its ~20 us
    L = lab_f[..., 0]
    if mode == "ratio":
        L *= w
    elif mode == "reinhard":
        sf, sb = float(Lf.std()), float(Lb.std())
        k = min(max(sb / max(sf, 1e-3), lo), hi)
        L[:] = (L - mf) * k + mf * w
    else:
        raise ValueError(f"unknown luminance mode {mode!r}")
    np.clip(L, 0, 100, out=L)
    np.multiply(cv2.cvtColor(lab_f, cv2.COLOR_Lab2RGB), 255.0, out=face32[y0:y1, x0:x1])
    return face32, w


def compose(face: PreparedFace, bg_image: np.ndarray, p: np.ndarray, cfg: RenderConfig,
            photometric_on: bool = True, bg_lightness: Optional[np.ndarray] = None) -> dict:
    """Render one sample.

    Parameters
    ----------
    face : PreparedFace
    bg_image : (h,w,3) uint8 RGB background image
    p : parameter vector from :func:`ferdata.render.params.sample_params`
        (``lum_w`` is overwritten with the factor applied).
    cfg : RenderConfig (resolved)
    photometric_on : bool
        False skips step 5 (used by the correctness tests).
    bg_lightness : (h,w) float32, optional
        ``lab_lightness(bg_image)``, cached by the caller per background image: sliced
        for the crop when the crop is not rescaled (the same bytes as without it).

    Returns
    -------
    dict with ``image`` (size,size,C) uint8, ``mask`` (size,size) bool (the warped
    hard mask), ``landmarks`` (68,2) float32, ``bg_box`` (x,y,w,h), ``params``.
    """
    size = cfg.size
    M = geometry_matrix(p, size)
    warped = _warp(face.rgba, M, size)   # one 4-channel warp: bit-identical to two warps
    fimg = warped[..., :3]
    hard = warped[..., 3] > 127
    bg, box = background_crop(bg_image, p, size)
    crop_L = None
    if bg_lightness is not None and box[2] == size:  # not rescaled: the crop's L is a slice of the image's
        x, y = box[:2]
        crop_L = bg_lightness[y:y + size, x:x + size]
    f32, w = match_luminance(fimg, bg, hard, cfg.luminance, cfg.lum_min, cfg.lum_max, crop_L)
    p[P["lum_w"]] = w
    if cfg.blend == "poisson" and hard.any():
        out = _poisson(np.clip(f32, 0, 255).astype(np.uint8), bg, hard).astype(np.float32)
    else:
        if cfg.blend == "hard":
            a = hard.astype(np.float32)
        else:
            a = soft_alpha(hard, float(p[P["erode"]]), float(p[P["feather"]]), cfg.alpha_mode)
        out = bg.astype(np.float32)
        f32 -= out                  # out + a * (f32 - out), computed in the arrays this call owns
        f32 *= a[..., None]
        out += f32
    if photometric_on:
        out = photometric(out, p, inplace=True)
    out += 0.5
    img = np.clip(out, 0, 255, out=out).astype(np.uint8)
    if cfg.gray:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None]
    lm = transform_landmarks(face.landmarks, p, size, M).astype(np.float32)
    return {"image": img, "mask": hard, "landmarks": lm, "bg_box": box, "params": p}


def _poisson(face: np.ndarray, bg: np.ndarray, hard: np.ndarray) -> np.ndarray:
    """cv2.seamlessClone of the face into the background (mask kept off the border)."""
    size = bg.shape[0]
    pad = 2
    fb = cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    bb = cv2.copyMakeBorder(bg, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    m = cv2.copyMakeBorder(hard.astype(np.uint8) * 255, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    m[:pad + 1] = 0
    m[-pad - 1:] = 0
    m[:, :pad + 1] = 0
    m[:, -pad - 1:] = 0
    y0, y1, x0, x1 = _bbox(m > 0) or (0, 1, 0, 1)
    center = ((x0 + x1) // 2, (y0 + y1) // 2)
    try:
        out = cv2.seamlessClone(cv2.cvtColor(fb, cv2.COLOR_RGB2BGR), cv2.cvtColor(bb, cv2.COLOR_RGB2BGR),
                                m, center, cv2.NORMAL_CLONE)
    except cv2.error as exc:  # documented (docs/rendering.md, step 4): this sample gets the hard paste
        log.warning("seamlessClone refused a mask (%s): this sample is a hard paste instead", exc)
        return np.where(hard[..., None], face, bg)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)[pad:pad + size, pad:pad + size]
