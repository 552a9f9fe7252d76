"""Photometric augmentation of a composite (pure; parameters from the vector)."""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .params import P

_BANK_SEED = 0x5EED_F0E5


@lru_cache(maxsize=4)
def noise_bank(size: int, channels: int = 3) -> np.ndarray:
    """A fixed (4·size, 4·size, C) float32 field of N(0,1) noise (same in every process).

    A sample's noise is the window of this field at an offset drawn from its
    ``noise_seed``: as random per sample as a fresh draw for the model, but a
    slice instead of 49k normal draws (the noise step was half of the render time).
    """
    rng = np.random.default_rng(_BANK_SEED)
    return rng.standard_normal((4 * size, 4 * size, channels), dtype=np.float32)


def noise_window(size: int, channels: int, seed: int) -> np.ndarray:
    bank = noise_bank(size, channels)
    span = bank.shape[0] - size + 1
    oy, ox = divmod(int(seed) % (span * span), span)
    return bank[oy:oy + size, ox:ox + size]


def photometric(img: np.ndarray, p: np.ndarray, inplace: bool = False) -> np.ndarray:
    """Brightness, contrast, gamma, Gaussian blur and Gaussian noise, in that order.

    ``img`` float32 RGB in 0..255; returns float32, unclipped at the end except where
    gamma needs [0,1]. ``inplace``: ``img`` is the caller's scratch array and is
    overwritten (the same float32 operations in the same order: the same values,
    without a new 3-channel array per step); otherwise a modified copy is returned.
    """
    out = np.multiply(img, np.float32(p[P["brightness"]]), out=img if inplace else None)
    c = float(p[P["contrast"]])
    if c != 1.0:
        mean = float(out.mean())
        out -= mean
        out *= c
        out += mean
    g = float(p[P["gamma"]])
    if g != 1.0:
        np.clip(out, 0, 255, out=out)
        out *= 1 / 255.0
        cv2.pow(out, g, dst=out)
        out *= 255.0
    s = float(p[P["blur_sigma"]])
    if s > 0:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=s, sigmaY=s, borderType=cv2.BORDER_REFLECT)
    ns = float(p[P["noise_sigma"]])
    if ns > 0:
        h, w, c = out.shape
        out += noise_window(h, c, int(p[P["noise_seed"]]))[:, :w] * np.float32(ns)
    return out
