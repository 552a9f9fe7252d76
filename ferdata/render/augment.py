"""Photometric augmentation of a composite (pure; parameters from the vector)."""
from __future__ import annotations

import cv2
import numpy as np

from .params import P


def photometric(img: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Brightness, contrast, gamma, Gaussian blur and Gaussian noise, in that order.

    ``img`` float32 RGB in 0..255 (modified copy returned, float32, unclipped at the end
    except where gamma needs [0,1]).
    """
    out = img * np.float32(p[P["brightness"]])
    c = float(p[P["contrast"]])
    if c != 1.0:
        mean = float(out.mean())
        out = (out - mean) * c + mean
    g = float(p[P["gamma"]])
    if g != 1.0:
        np.clip(out, 0, 255, out=out)
        out = cv2.pow(out * (1 / 255.0), g) * 255.0
    s = float(p[P["blur_sigma"]])
    if s > 0:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=s, sigmaY=s, borderType=cv2.BORDER_REFLECT)
    ns = float(p[P["noise_sigma"]])
    if ns > 0:
        rng = np.random.default_rng(int(p[P["noise_seed"]]))
        out = out + rng.standard_normal(out.shape, dtype=np.float32) * np.float32(ns)
    return out
