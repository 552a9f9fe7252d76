"""The built-in sample: public-domain faces that install offline.

- ``astronaut``: scikit-image's ``data.astronaut()`` (Eileen Collins, NASA photo,
  public domain) — smiling: *happiness*.
- ``grace_hopper``: matplotlib's ``sample_data/grace_hopper.jpg`` (US Navy photo,
  public domain) — *neutral*.
"""
from __future__ import annotations

import os
from typing import Iterator

import cv2
import numpy as np

from ..labels import index
from .base import FaceRecord, register_reader

SAMPLE_FACES = (
    ("astronaut", "happiness", "skimage.data.astronaut()"),
    ("grace_hopper", "neutral", "matplotlib sample_data/grace_hopper.jpg"),
)


def sample_image(name: str) -> np.ndarray:
    """RGB uint8 image of a built-in sample face."""
    if name == "astronaut":
        import skimage.data

        return skimage.data.astronaut()
    if name == "grace_hopper":
        import matplotlib

        p = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
        img = cv2.imread(p, cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(p)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise KeyError(name)


@register_reader("sample")
def read_sample(root=None, **_options) -> Iterator[FaceRecord]:
    """The built-in sample faces (``root`` is ignored)."""
    for name, label, source in SAMPLE_FACES:
        yield FaceRecord(source=source, label=index(label), subject=name, image=sample_image(name))
