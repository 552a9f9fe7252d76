"""Batch preparation on the device: uint8 batch -> normalised float model inputs (+ the attention target).

The same :class:`BatchPrep` serves training, validation, the final test and
``ferdata eval`` (built from the checkpoint's configuration), so every number is
computed on identically prepared inputs:

* images: [0, 255] -> [-1, 1], NCHW, gray <-> RGB as the model wants, resized to the
  read size if a source differs, illumination-normalised when the read spec says so
  (``illumination = "diffusion"``: :mod:`ferdata.train.illumination` on the uint8 image at
  the read size, after the gray conversion — the same for training, validation, test and
  ``ferdata eval``); then the augmentation preset (random in training; ``seed002``'s
  centre crop otherwise);
* LBP codes: divided by the variant's largest code (``n_bins - 1``: 255 for
  ``circle_P8_R1``, 9 for ``uniform``, 58 for ``nri_uniform`` P=8) so every variant
  spans [0, 1]; recomputed from the augmented image when a geometric preset is active
  (the LBP of a warped face is not the warped LBP map) or the image is
  illumination-normalised (the codes of the image the model sees);
* labels: canonical class index -> position in the run's ``classes`` (a sample of
  another class is an error, not a silent −1);
* memory format: the model inputs (image, LBP) are handed over in one format,
  ``memory_format`` (:func:`ferdata.train.runtime.input_memory_format`): contiguous
  NCHW unless ``channels_last`` was asked. A batch-mode loader yields images as a
  channels_last view of the decoded NHWC array; it is transposed in the same pass that
  converts it to float, never handed on as a view (24 % slower for ``feratt_cls`` on CPU).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FerdataError
from ..labels import CLASS_INDEX, CLASSES
from .augment import Augmenter
from .illumination import MODES as ILLUMINATION_MODES
from .illumination import normalise_illumination_batch

__all__ = ["BatchPrep", "lbp_scale", "label_lut"]


def lbp_scale(spec_name: str) -> float:
    """Largest code of the LBP variant named ``lbp:...`` / ``lbp/...`` / ``circle_P8_R1``."""
    from ..features.lbp import n_bins
    from ..torch._fields import parse_lbp_spec

    name = spec_name.split(":", 1)[-1].split("/", 1)[-1]
    variant, P, _ = parse_lbp_spec(name)
    return float(n_bins(variant, P) - 1)


def label_lut(classes) -> torch.Tensor:
    lut = torch.full((256,), -1, dtype=torch.long)
    for i, c in enumerate(classes):
        lut[CLASS_INDEX[c]] = i
    return lut


class BatchPrep:
    """``prep(batch, train)`` -> dict of device tensors: ``image``, ``label``[, ``lbp``][, ``target``]."""

    def __init__(self, inputs, classes, device, spec: dict, augment: Augmenter, channels_last: bool = False,
                 lbp: Optional[str] = None, att_target: str = "clean"):
        self.inputs, self.classes, self.device = inputs, list(classes), device
        self.lut = label_lut(classes).to(device)
        self.read_hw = tuple(spec["resize"])
        self.augment = augment
        self.channels_last = channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.lbp = lbp                                   # variant spec, e.g. "circle_P8_R1"
        self.lbp_max = lbp_scale(lbp) if lbp else None
        self.need_target = "reconstruction" in inputs.outputs
        self.att_target = att_target
        self.illumination = spec.get("illumination", "none")
        if self.illumination not in ILLUMINATION_MODES:
            raise FerdataError(f"illumination must be {'|'.join(ILLUMINATION_MODES)}, got {self.illumination!r}")

    def _image(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if x.ndim == 3:
            x = x[:, None]
        if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):  # NHWC -> NCHW
            x = x.permute(0, 3, 1, 2)
        x = x.to(dtype=torch.float32, memory_format=self.memory_format).div_(255.0)  # transposes a view once
        if tuple(x.shape[-2:]) != self.read_hw:
            x = F.interpolate(x, size=self.read_hw, mode="bilinear", align_corners=False, antialias=True)
        if channels == 1 and x.shape[1] == 3:
            x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        if self.illumination != "none":
            x = self._illuminate(x)
        if channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - 0.5) / 0.5

    def _illuminate(self, x: torch.Tensor) -> torch.Tensor:
        """``illumination = "diffusion"`` on a [0, 1] NCHW batch: through uint8 on the CPU (a
        decoded image comes back exactly) and back, still [0, 1]."""
        u8 = (x * 255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = torch.from_numpy(normalise_illumination_batch(u8)).to(self.device)
        return out.permute(0, 3, 1, 2).to(dtype=torch.float32, memory_format=self.memory_format).div_(255.0)

    def _mask(self, m: torch.Tensor) -> torch.Tensor:
        m = m.to(self.device, non_blocking=True)
        m = m[:, None] if m.ndim == 3 else m
        m = (m > (127 if m.dtype == torch.uint8 and int(m.max()) > 1 else 0)).float()
        if tuple(m.shape[-2:]) != self.read_hw:
            m = F.interpolate(m, size=self.read_hw, mode="nearest")
        return m

    def _labels(self, y: torch.Tensor) -> torch.Tensor:
        raw = y.to(self.device, non_blocking=True).long()
        mapped = self.lut[raw]
        if (mapped < 0).any():
            bad = sorted({CLASSES[i] if 0 <= i < len(CLASSES) else str(i) for i in raw[mapped < 0].tolist()})
            raise FerdataError(f"samples of class(es) {bad} are not among the run's classes {self.classes} "
                               "(check classes = [...] and the face store)")
        return mapped

    def _lbp_from_image(self, img: torch.Tensor) -> torch.Tensor:
        from ..features.lbp import lbp
        from ..torch._fields import parse_lbp_spec

        g = img if img.shape[1] == 1 else 0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]
        u8 = ((g[:, 0] * 0.5 + 0.5) * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        codes = lbp(np.ascontiguousarray(u8), *parse_lbp_spec(self.lbp))
        return torch.from_numpy(codes.astype(np.float32))[:, None].to(self.device) / self.lbp_max

    def _lbp(self, batch: dict) -> torch.Tensor:
        key = next((k for k in batch if k.startswith("lbp")), None)
        if key is None:
            raise FerdataError(f"the model needs LBP codes but the batch has none (fields {sorted(batch)})")
        lb = batch[key].to(self.device, non_blocking=True)
        lb = (lb[:, None] if lb.ndim == 3 else lb).float() / self.lbp_max
        if tuple(lb.shape[-2:]) != self.inputs.input_size:
            lb = F.interpolate(lb, size=self.inputs.input_size, mode="nearest")
        return lb

    def with_noise(self, x: dict, sigma: float, generator=None) -> dict:
        """``x`` with Gaussian noise ``sigma`` (on [0, 1] images) added to the image; the LBP input,
        if any, is recomputed from the noisy image (the codes of a noisy face are not the clean codes)."""
        from .engine import add_noise

        x["image"] = add_noise(x["image"], sigma, generator)
        if "lbp" in x:
            x["lbp"] = self._lbp_from_image(x["image"])
        return x

    def __call__(self, batch: dict, train: bool = False) -> dict:
        out = {"image": self._image(batch["image"], self.inputs.in_channels),
               "label": self._labels(batch["label"])}
        if self.need_target and "clean" in batch:
            out["clean"] = self._image(batch["clean"], self.inputs.in_channels)
        elif self.need_target and "mask" in batch:
            out["mask"] = self._mask(batch["mask"])
        out = self.augment(out, train=train)
        if self.lbp_max is not None:
            stored = any(k.startswith("lbp") for k in batch)  # live renders: none stored
            fresh = self.augment.active or self.illumination != "none" or not stored
            out["lbp"] = self._lbp_from_image(out["image"]) if fresh else self._lbp(batch)
        if self.need_target:
            if "clean" in out:
                out["target"] = out.pop("clean")
            elif "mask" in out:  # att_target = masked: the input under the mask (eq. 1 as printed)
                m = out.pop("mask")
                out["target"] = torch.where(m > 0, out["image"], torch.full_like(out["image"], -1.0))
        for k in ("image", "lbp"):  # the model's inputs, in one memory format whatever the steps above made
            if k in out and out[k].ndim == 4:
                out[k] = out[k].contiguous(memory_format=self.memory_format)
        return out

