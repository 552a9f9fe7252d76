"""Online augmentation of real faces (``train_on = "faces"``), named after the papers.

Applied on the training device to the prepared batch (float NCHW, normalised), with
one random draw per sample shared by every image-like field (``image``, the attention
target ``clean``, ``mask``), so they stay aligned.

==========  ==========================================================================
preset      what (source)
==========  ==========================================================================
``none``    nothing
``seed001`` Keras ``ImageDataGenerator(rotation_range=20, width_shift_range=0.15,
            height_shift_range=0.15, shear_range=0.15, zoom_range=0.15,
            horizontal_flip=True)`` in Keras' own units (seed 001 §3.4: "The rotation
            range is 0-20° and the shifting ranges of width and height are set to
            0-15%. Both the shear range and the zoom range are 0-0.15"; §4: "implemented
            with Keras"): rotation uniform in ±20°; shifts uniform in ±15 % of the height
            and of the width, drawn separately; shear angle uniform in ±0.15 **degrees**
            (Keras' unit since 2.1.3, Dec. 2017 — the paper was written in 2019/20; old
            Keras read it as radians, ±8.6°); zoom ``zx``, ``zy`` drawn separately per
            axis, uniform in [0.85, 1.15], Keras' sampling scale (> 1: the face looks
            smaller); composed as Keras does, ``rotation · shift · shear · zoom`` about
            the image centre, then the horizontal flip (p = 0.5); bilinear, edge pixels
            repeated (``fill_mode="nearest"``). Keras' centre is ``size/2 + 0.5`` in
            pixel indices, ours the exact centre ``(size − 1)/2`` (< 1 px apart)
``seed004`` horizontal flip p = 0.5, "small rotation and small distortion" (seed 004
            §IV-B.1, "as done in [4]"); our reading: rotation ±10°, shear factor ±0.1,
            isotropic zoom [0.9, 1.1]
``seed002`` random 112×144 crops of the 125×160 aligned face (RaFD-FRONT), or random
            272×272 crops of the 284×284 face (RaFD-POSE, model input 272×272), and their
            mirror images (seed 002 §4.2); evaluation uses the centre crop
==========  ==========================================================================

The geometric presets resample with ``affine_grid`` + ``grid_sample``; ``seed002``
crops exactly (no resampling). :func:`load_size` gives the size the faces must be
read at (larger than the model input for ``seed002``); :func:`keras_params` returns
the ``seed001`` draws in Keras' units.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import FerdataError

__all__ = ["PRESETS", "load_size", "keras_params", "keras_theta", "Augmenter"]

PRESETS = {
    "none": None,
    # Keras ImageDataGenerator arguments, in Keras' units (degrees, fractions, zoom bounds).
    "seed001": dict(keras=True, rotation_range=20.0, width_shift_range=0.15, height_shift_range=0.15,
                    shear_range=0.15, zoom_range=(0.85, 1.15), horizontal_flip=0.5),
    "seed004": dict(rotation=10.0, shift=0.0, shear=0.1, zoom=0.1, flip=0.5),
    # model input (H, W) -> the face it is cut from (seed 002 §4.2); other inputs: the FRONT ratio.
    "seed002": dict(crop=(160 / 144, 125 / 112), crops={(144, 112): (160, 125), (272, 272): (284, 284)},
                    flip=0.5),
}


def load_size(preset: str, input_size) -> tuple:
    """(H, W) to read the faces at so that ``preset`` yields ``input_size``."""
    h, w = int(input_size[0]), int(input_size[1])
    spec = PRESETS.get(preset)
    if spec is None or "crop" not in spec:
        return (h, w)
    if (h, w) in spec["crops"]:
        return spec["crops"][(h, w)]
    kh, kw = spec["crop"]
    return (int(round(h * kh)), int(round(w * kw)))


def keras_params(n: int, spec: dict, g: torch.Generator) -> dict:
    """``n`` draws of Keras' ``ImageDataGenerator.get_random_transform`` for the ``spec``
    arguments: ``theta`` and ``shear`` in degrees, ``tx`` / ``ty`` as fractions of the
    height / width, ``zx`` / ``zy`` (row / column sampling scale), ``flip`` (bool)."""
    def u(r):
        return (2 * torch.rand(n, generator=g, dtype=torch.float64) - 1) * r
    zlo, zhi = spec["zoom_range"]
    z = zlo + (zhi - zlo) * torch.rand(n, 2, generator=g, dtype=torch.float64)
    return {"theta": u(spec["rotation_range"]), "tx": u(spec["height_shift_range"]),
            "ty": u(spec["width_shift_range"]), "shear": u(spec["shear_range"]), "zx": z[:, 0], "zy": z[:, 1],
            "flip": torch.rand(n, generator=g) < spec["horizontal_flip"]}


def keras_theta(p: dict, h: int, w: int) -> torch.Tensor:
    """(n, 2, 3) ``affine_grid`` maps of Keras' transform for the draws ``p`` on h×w images.

    Keras (row, col) pixel coordinates about the centre c: ``in − c = R·Sh·Z·(out − c) + R·t``
    with R = [[cos θ, −sin θ], [sin θ, cos θ]], Sh = [[1, −sin s], [0, cos s]],
    Z = diag(zx, zy), t = (tx·h, ty·w); the horizontal flip follows the warp. Here in
    (x = col, y = row) order and normalised coordinates (``align_corners=False``)."""
    a, s = torch.deg2rad(p["theta"]), torch.deg2rad(p["shear"])
    n = a.shape[0]
    rot = torch.stack([torch.cos(a), -torch.sin(a), torch.sin(a), torch.cos(a)], 1).view(n, 2, 2)
    shear = torch.stack([torch.ones_like(s), -torch.sin(s), torch.zeros_like(s), torch.cos(s)], 1).view(n, 2, 2)
    m_rc = rot @ shear @ torch.diag_embed(torch.stack([p["zx"], p["zy"]], 1))
    b_rc = (rot @ torch.stack([p["tx"] * h, p["ty"] * w], 1)[..., None])[..., 0]
    m, b = m_rc.flip(1).flip(2), b_rc.flip(1)              # (row, col) -> (x, y)
    half = torch.tensor([w / 2.0, h / 2.0], dtype=m.dtype)
    m = m * half[None, None, :] / half[None, :, None]       # D^-1 · M · D
    m[:, :, 0] = torch.where(p["flip"][:, None], -m[:, :, 0], m[:, :, 0])
    return torch.cat([m, (b / half)[..., None]], 2).float()


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
        n, _, h, w = batch["image"].shape
        if self.spec.get("keras"):
            theta = keras_theta(keras_params(n, self.spec, self.g), h, w)
        else:
            theta = _theta(n, self.spec, self.g)
        theta = theta.to(batch["image"].device)
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

