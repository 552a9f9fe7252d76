"""FERAtt's attention target: the *clean* face — the render replayed on black, photometric augmentation off.

Seed 000 eq. 1 writes ``L_att(I_att, I ⊗ I_mask)``; the released code compares the
attention image with ``x_org``, the face of the synthetic sample before it is degraded
(docs/training.md, "FERAtt as published"). A render's stored parameter vector makes the
replay exact here (:func:`clean_render`): the face-store face is prepared at the render
size, warped with the render's geometry, its lightness scaled by the stored ``lum_w``
(luminance ``ratio``; ``reinhard``'s contrast factor is not stored, only its mean shift
is replayed), and alpha-composited with the stored ``erode`` / ``feather`` onto **black**
— no background, no brightness / contrast / gamma / blur / noise. Inside the face it
equals the render made with ``photometric_on=False``; outside it is 0.

* :class:`RenderClean` — a dataset transform (DataLoader workers) adding ``clean`` to
  render samples from their ``params`` and ``face_index`` (which it removes);
* :class:`FaceClean` — the same for real faces: the face under its mask.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from ..faces.masks import soft_alpha
from ..render.compose import geometry_matrix, prepare_face
from ..render.params import P

__all__ = ["RenderClean", "FaceClean", "clean_render"]


def _hard(mask: np.ndarray) -> np.ndarray:
    return mask > (127 if mask.max() > 1 else 0)


def _scale_lightness(face32: np.ndarray, hard: np.ndarray, w: float) -> np.ndarray:
    """CIELAB L *= w inside the mask's bounding box (as compose's ``ratio`` luminance step)."""
    ys, xs = np.flatnonzero(hard.any(1)), np.flatnonzero(hard.any(0))
    if ys.size == 0 or w == 1.0:
        return face32
    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    lab = cv2.cvtColor(face32[y0:y1, x0:x1] * (1 / 255.0), cv2.COLOR_RGB2Lab)
    L = lab[..., 0]
    L *= w
    np.clip(L, 0, 100, out=L)
    face32[y0:y1, x0:x1] = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB) * 255.0
    return face32


def clean_render(image: np.ndarray, mask: np.ndarray, landmarks, params: np.ndarray, size: int,
                 render_cfg: dict | None = None, gray: bool = False, released: bool = False) -> np.ndarray:
    """The clean face of one render, (size, size, C) uint8, from the face-store face and the render's
    ``params``; ``render_cfg`` is the render's configuration (luminance, blend, alpha_mode).

    ``released=True``: the released FERAtt code's ``x_org`` instead — the warped face under
    its hard (warped) mask, before luminance matching and with no soft alpha."""
    rc = render_cfg or {}
    face = prepare_face(image, mask, landmarks, size)
    M = geometry_matrix(params, size)
    if M[2, 0] == 0 and M[2, 1] == 0 and M[2, 2] == 1:
        def warp(a):
            return cv2.warpAffine(a, M[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    else:
        def warp(a):
            return cv2.warpPerspective(a, M, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    f32, hard = warp(face.image).astype(np.float32), warp(face.mask) > 127
    if released:
        rc = {"luminance": "none", "blend": "hard"}
    if rc.get("luminance", "ratio") != "none":
        f32 = _scale_lightness(f32, hard, float(params[P["lum_w"]]))
    if rc.get("blend", "alpha") == "alpha":
        a = soft_alpha(hard, float(params[P["erode"]]), float(params[P["feather"]]), rc.get("alpha_mode", "gaussian"))
    else:
        a = hard.astype(np.float32)
    out = np.clip(a[..., None] * f32 + 0.5, 0, 255).astype(np.uint8)
    if gray:
        out = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None]
    return out


class RenderClean:
    """Transform: ``batch["clean"]`` (uint8, like ``batch["image"]``) from ``params`` + ``face_index``.

    ``faces``: the face store the renders were made from; ``render_size``: the render's
    side; ``out_hw``: the size the dataset resizes images to (None: the render size).
    Faces are read and cached per process on first use.
    """

    def __init__(self, faces, render_size: int, out_hw=None, gray: bool = False, render_cfg: dict | None = None,
                 released: bool = False):
        self.faces, self.size, self.gray, self.released = str(faces), int(render_size), bool(gray), bool(released)
        self.render_cfg = dict(render_cfg or {})
        self.out_hw = tuple(out_hw) if out_hw is not None else None
        self._store = None

    def __getstate__(self):
        d = self.__dict__.copy()
        d["_store"] = None
        return d

    def _face(self, f: int):
        if self._store is None:
            import h5py

            self._store = h5py.File(Path(self.faces), "r")
            self._lm = self._store["landmarks"][:]
        return self._store["image"][f], self._store["mask"][f], self._lm[f]

    def _one(self, params: np.ndarray, f: int) -> np.ndarray:
        img, m, lm = self._face(int(f))
        c = clean_render(img, m, lm, params.astype(np.float64), self.size, self.render_cfg, self.gray, self.released)
        if self.out_hw is not None and c.shape[:2] != self.out_hw:
            h, w = self.out_hw
            interp = cv2.INTER_AREA if h < c.shape[0] else cv2.INTER_LINEAR
            c = cv2.resize(c, (w, h), interpolation=interp)
            c = c[..., None] if c.ndim == 2 else c
        return c

    def __call__(self, batch: dict) -> dict:
        params = batch.pop("params").numpy()
        fidx = batch.pop("face_index").numpy()
        single = params.ndim == 1
        params, fidx = np.atleast_2d(params), np.atleast_1d(fidx)
        clean = np.stack([self._one(p, f) for p, f in zip(params, fidx)])        # (n,h,w,C)
        t = torch.from_numpy(np.ascontiguousarray(clean.transpose(0, 3, 1, 2)))
        batch["clean"] = t[0] if single else t
        return batch


class FaceClean:
    """Transform for real faces: ``batch["clean"]`` = the image under its (hard) mask."""

    def __call__(self, batch: dict) -> dict:
        img, m = batch["image"], batch["mask"]
        hard = torch.from_numpy(_hard(m.numpy())) if m.dtype == torch.uint8 else m > 0.5
        batch["clean"] = img * hard.to(img.dtype)
        del batch["mask"]  # the target replaces it (same keys as RenderClean's samples)
        return batch
