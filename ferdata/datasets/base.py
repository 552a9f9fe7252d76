"""The record every dataset reader yields, and helpers shared by the readers."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from ..errors import DatasetFormatError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")


@dataclass
class FaceRecord:
    """One labelled face image as read from a dataset, before alignment.

    Attributes
    ----------
    source : str
        Path of the image relative to the dataset root (or ``"fer2013.csv:row123"``
        for csv-embedded images). Used in reports and stored in the face store.
    label : int
        Canonical class index (:data:`ferdata.labels.CLASSES`).
    subject : str
        Subject id ("" where the dataset has none).
    split : str
        Official split ("" where the dataset defines none).
    path : Path or None
        Absolute path of the image file (None when ``image`` is given).
    image : ndarray or None
        Already-decoded image (H,W) or (H,W,3) uint8 RGB, for csv datasets.
    landmarks : ndarray or None
        (68,2) float32 (x, y) landmarks shipped with the dataset, in image pixels.
    box : tuple or None
        (x, y, w, h) face box shipped with the dataset (AffectNet).
    aligned : bool
        True when the image is already a cropped face (FER2013 / FER+): ingest then
        skips detection by default.
    votes : ndarray or None
        Per-class vote distribution (FER+), float32, length len(CLASSES).
    """

    source: str
    label: int
    subject: str = ""
    split: str = ""
    path: Optional[Path] = None
    image: Optional[np.ndarray] = None
    landmarks: Optional[np.ndarray] = None
    box: Optional[tuple] = None
    aligned: bool = False
    votes: Optional[np.ndarray] = None
    extra: dict = field(default_factory=dict)


def require_dir(root, what: str) -> Path:
    """Return ``root`` as a Path, or raise a one-line error naming it."""
    root = Path(root)
    if not root.exists():
        raise DatasetFormatError(f"{root}: {what} folder does not exist")
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: expected a {what} folder, found a file")
    return root


def require_file(path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise DatasetFormatError(f"{path}: {what} file does not exist")
    if not path.is_file():
        raise DatasetFormatError(f"{path}: expected a {what} file")
    return path


def iter_images(folder: Path) -> Iterator[Path]:
    """Image files under ``folder`` (recursive), sorted for reproducibility."""
    out = []
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."):
                out.append(Path(dirpath) / f)
    return iter(sorted(out))


# name -> reader function(root, **options) -> iterator of FaceRecord
READERS: dict[str, Callable[..., Iterator[FaceRecord]]] = {}


def register_reader(name: str):
    """Register a dataset reader under ``name`` (used by ``ferdata ingest NAME``)."""
    def deco(fn):
        READERS[name] = fn
        return fn
    return deco
