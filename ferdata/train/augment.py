"""Online augmentation of real faces (``train_on = "faces"``), named after the papers.

Applied on the training device to the prepared batch (float NCHW, normalised), with
one random draw per sample shared by every image-like field (``image``, the attention
target ``clean``, ``mask``), so they stay aligned.

==========  ==========================================================================
preset      what (source)
==========  ==========================================================================
``none``    nothing
``seed001`` rotation uniform in ±20°, shift ±15 % of width / height, shear factor
            ±0.15, zoom in [0.85, 1.15], horizontal flip p = 0.5 (seed 001 §3.4: "rotation
            range is 0-20°, shifting 0-15 %, shear and zoom range 0-0.15"; Keras
            ``ImageDataGenerator`` semantics, edge pixels repeated)
``seed004`` horizontal flip p = 0.5, "small rotation and small distortion" (seed 004
            §III-A, after its ref. [4]); our reading: rotation ±10°, shear ±0.1,
            zoom [0.9, 1.1]
``seed002`` random 112×144 crops of the 125×160 aligned face and their mirror images
            (seed 002 §4.2); evaluation uses the centre crop
==========  ==========================================================================

The geometric presets resample with ``affine_grid`` + ``grid_sample``; ``seed002``
crops exactly (no resampling). :func:`load_size` gives the size the faces must be
read at (larger than the model input for ``seed002``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import FerdataError

__all__ = ["PRESETS", "load_size", "Augmenter"]

PRESETS = {
    "none": None,
    "seed001": dict(rotation=20.0, shift=0.15, shear=0.15, zoom=0.15, flip=0.5),
    "seed004": dict(rotation=10.0, shift=0.0, shear=0.1, zoom=0.1, flip=0.5),
    "seed002": dict(crop=(160 / 144, 125 / 112), flip=0.5),
}


def load_size(preset: str, input_size) -> tuple:
    """(H, W) to read the faces at so that ``preset`` yields ``input_size``."""
    h, w = int(input_size[0]), int(input_size[1])
    spec = PRESETS.get(preset)
    if spec is None or "crop" not in spec:
        return (h, w)
    kh, kw = spec["crop"]
    return (int(round(h * kh)), int(round(w * kw)))


def _theta(n: int, spec: dict, g: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) output->input normalised-coordinate maps: flip, rotation, shear, zoom, shift."""
    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=g)
    a = torch.deg2rad(u(-spec["rotation"], spec["rotation"]))
    sh = u(-spec["shear"], spec["shear"])
    z = u(1 - spec["zoom"], 1 + spec["zoom"])          # > 1: the face looks larger (zoom in)
    fl = torch.rand(n, generator=g) < spec["flip"]
    tx, ty = u(-spec["shift"], spec["shift"]) * 2, u(-spec["shift"], spec["shift"]) * 2
    ca, sa = torch.cos(a), torch.sin(a)
    # input = R · Sh · (1/z) · Flip · output + t
    m00, m01 = ca, ca * sh - sa
    m10, m11 = sa, sa * sh + ca
    sx = torch.where(fl, -1.0, 1.0) / z
    sy = 1.0 / z
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = m00 * sx, m01 * sy, tx
    theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = m10 * sx, m11 * sy, ty
    return theta


class Augmenter:
    """``aug(batch, train=True)``: the preset applied to a prepared batch dict (in place of its fields).

    ``out_size`` is the model input (H, W); for ``seed002`` the batch arrives larger
    (:func:`load_size`) and leaves cropped to ``out_size`` (random in training, centre
    otherwise). The random draws come from a CPU generator seeded by ``(seed, epoch)``.
    """

    FIELDS = ("image", "clean", "mask")

    def __init__(self, preset: str, out_size, seed: int = 0):
        if preset not in PRESETS:
            raise FerdataError(f"augment: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
        self.preset, self.spec = preset, PRESETS[preset]
        self.out_size = (int(out_size[0]), int(out_size[1]))
        self.seed = int(seed)
        self.g = torch.Generator().manual_seed(self.seed)

    def set_epoch(self, epoch: int) -> None:
        self.g.manual_seed(self.seed * 1_000_003 + int(epoch))

    @property
    def active(self) -> bool:
        return self.spec is not None

    def __call__(self, batch: dict, train: bool = True) -> dict:
        if self.spec is None:
            return batch
        if "crop" in self.spec:
            return self._crop(batch, train)
        if not train:
            return batch
        n = batch["image"].shape[0]
        theta = _theta(n, self.spec, self.g).to(batch["image"].device)
        for k in self.FIELDS:
            if k in batch:
                x = batch[k]
                grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
                mode = "nearest" if k == "mask" else "bilinear"
                pad = "border" if k == "image" else "zeros"
                batch[k] = F.grid_sample(x, grid, mode=mode, padding_mode=pad, align_corners=False)
        return batch

    def _crop(self, batch: dict, train: bool) -> dict:
        oh, ow = self.out_size
        x = batch["image"]
        n, _, h, w = x.shape
        if h < oh or w < ow:
            raise FerdataError(f"augment={self.preset}: faces read at {h}x{w}, smaller than the crop {oh}x{ow}")
        if train:
            ys = torch.randint(0, h - oh + 1, (n,), generator=self.g).tolist()
            xs = torch.randint(0, w - ow + 1, (n,), generator=self.g).tolist()
            fl = (torch.rand(n, generator=self.g) < self.spec["flip"]).tolist()
        else:
            ys, xs, fl = [(h - oh) // 2] * n, [(w - ow) // 2] * n, [False] * n
        for k in self.FIELDS:
            if k in batch:
                v = batch[k]
                crops = [v[i, :, ys[i]:ys[i] + oh, xs[i]:xs[i] + ow] for i in range(n)]
                batch[k] = torch.stack([c.flip(-1) if f else c for c, f in zip(crops, fl)])
        return batch

