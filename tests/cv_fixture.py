"""A learnable, many-subject JAFFE-format fixture for cross-validation runs (``ferdata cv``).

Built from the built-in sample faces (see ``dataset_fixtures``): three expressions with
a visual signal a small network can learn, and per-subject changes so the subjects
really differ (a subject-independent split matters):

* ``HA`` — the smiling face (astronaut), ``NE`` — the neutral face (Grace Hopper),
  ``SU`` — the neutral face with an open mouth (a dark ellipse over the mouth landmarks);
  each image is mirrored at random.
* per subject (seeded): gain 0.7–1.3, offset ±25, rotation ±6°, scale 0.92–1.08,
  shift ±8 px; per image: Gaussian noise (σ = 4 grey levels).

This is a fixture for testing the protocol end to end, not a FER benchmark.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

import dataset_fixtures as fx

#: JAFFE's ten subject codes, then two more for a 12-subject tree.
SUBJECTS = ("KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM", "AB", "CD")
CODES = ("HA", "NE", "SU")


def _base_images(size: int) -> dict:
    faces, lmk = fx.sample_faces(), fx.sample_landmarks()
    astro, grace = faces[0], faces[1]
    open_mouth = grace.copy()
    mouth = lmk[1][48:68]
    centre = tuple(int(v) for v in mouth.mean(0))
    axes = (int(0.45 * np.ptp(mouth[:, 0])), int(1.1 * np.ptp(mouth[:, 1])) + 6)
    cv2.ellipse(open_mouth, centre, axes, 0, 0, 360, (25, 10, 10), -1, cv2.LINE_AA)
    fit = (lambda f, p: fx._fit(f, p, (size, size), gray=True)[0])
    return {"HA": fit(astro, lmk[0]), "NE": fit(grace, lmk[1]), "SU": fit(open_mouth, lmk[1])}


def _subject_look(img: np.ndarray, rng: np.random.Generator, look: dict) -> np.ndarray:
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), look["angle"], look["scale"])
    m[:, 2] += look["shift"]
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    out = out.astype(np.float32) * look["gain"] + look["offset"] + rng.normal(0, 4.0, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def make_jaffe_subjects(root, subjects: Sequence[str] = SUBJECTS[:10], codes: Sequence[str] = CODES,
                        repeats: int = 3, size: int = 256, seed: int = 0) -> Path:
    """``ROOT/jaffedbase/KA.HA1.1.tiff`` …: ``len(subjects) × len(codes) × repeats`` gray
    256×256 TIFFs (read with ``read_dataset("jaffe", ROOT)``). Deterministic in ``seed``."""
    root = Path(root)
    folder = root / "jaffedbase"
    folder.mkdir(parents=True, exist_ok=True)
    base = _base_images(size)
    idx = 1
    for s, subj in enumerate(subjects):
        rng = np.random.default_rng([seed, s])
        look = {"gain": rng.uniform(0.7, 1.3), "offset": rng.uniform(-25, 25), "angle": rng.uniform(-6, 6),
                "scale": rng.uniform(0.92, 1.08), "shift": rng.uniform(-8, 8, 2)}
        for code in codes:
            for r in range(repeats):
                img = base[code][:, ::-1] if rng.random() < 0.5 else base[code]
                out = _subject_look(np.ascontiguousarray(img), rng, look)
                if not cv2.imwrite(str(folder / f"{subj}.{code}{r + 1}.{idx}.tiff"), out):
                    raise OSError(f"cannot write {folder}")
                idx += 1
    return root
