"""Small synthetic face stores for the protocol tests (no landmark detection: fast).

Each face is a 32×32 image whose pattern depends on its class (a bright band at a
class-specific height, plus per-subject brightness and noise), under an elliptic mask —
learnable by a tiny network in a few steps, and renderable by ``ferdata render``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ferdata.faces.store import FaceStoreWriter
from ferdata.labels import CLASS_INDEX

TINY_MODEL = {"width": 8, "input_size": [16, 16]}


def face_image(label_pos: int, n_classes: int, subject: int, rng, size: int = 32) -> np.ndarray:
    img = np.full((size, size, 3), 60 + 6 * (subject % 10), np.uint8)
    band = size // (n_classes + 1)
    y0 = band * label_pos + band // 2
    img[y0:y0 + band, :, :] = 230
    noise = rng.integers(0, 25, img.shape, dtype=np.uint8)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def ellipse_mask(size: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    return (((xx - c) / (0.42 * size)) ** 2 + ((yy - c) / (0.48 * size)) ** 2 <= 1).astype(np.uint8) * 255


def make_store(path, n_subjects: int = 12, classes=("neutral", "happiness", "sadness"), per_class: int = 2,
               splits=None, dataset: str = "folder", source_fmt: str = "{subject}/{cls}_{k}.png",
               seed: int = 0, size: int = 32) -> Path:
    """A face store of ``n_subjects`` subjects × ``classes`` × ``per_class`` faces.

    ``splits``: a function subject index -> split name (official-split stores), else "".
    """
    rng = np.random.default_rng(seed)
    mask = ellipse_mask(size)
    lm = np.full((68, 2), np.nan, np.float32)
    with FaceStoreWriter(path, size, dataset) as w:
        for s in range(n_subjects):
            subject = f"S{s:03d}"
            for ci, c in enumerate(classes):
                for k in range(per_class):
                    w.append(face_image(ci, len(classes), s, rng, size), mask, lm, CLASS_INDEX[c], subject,
                             source_fmt.format(subject=subject, cls=c, k=k, ci=ci),
                             splits(s) if splits else "")
    return Path(path)
