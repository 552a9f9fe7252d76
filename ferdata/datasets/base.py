"""The record every dataset reader yields, and helpers shared by the readers."""
from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from ..errors import DatasetFormatError

log = logging.getLogger(__name__)

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


# ---------------------------------------------------------------------------
# Shared reader helpers (bad-input policy, csv access, relative paths).

ON_ERROR = ("raise", "skip")


class ErrorPolicy:
    """What a reader does with a bad item: raise, or skip it and record why.

    Every reader takes ``on_error="raise"|"skip"`` and ``skipped=`` (a list the
    caller owns). With ``"raise"`` a bad item raises a one-line
    :class:`~ferdata.errors.DatasetFormatError` naming the file (and the row for
    csv files). With ``"skip"`` the reader yields nothing for it and appends
    ``(source, reason)`` to ``skipped``.

    Items that are not errors but are left out by design (an AffectNet
    "non-face", a FER+ row whose majority vote is "unknown", a tied vote) are
    always recorded in ``skipped`` and never raise.
    """

    def __init__(self, on_error: str = "raise", skipped: Optional[list] = None):
        if on_error not in ON_ERROR:
            raise DatasetFormatError(
                f"on_error={on_error!r}: expected one of {', '.join(ON_ERROR)}")
        if skipped is not None and not hasattr(skipped, "append"):
            raise DatasetFormatError(
                f"skipped={type(skipped).__name__}: expected a list to append (source, reason) to")
        self.on_error = on_error
        self.skipped = skipped if skipped is not None else []

    def error(self, where: str, source: str, reason: str) -> None:
        """A bad item: raise ``"WHERE: REASON"`` or record ``(source, reason)``."""
        if self.on_error == "raise":
            raise DatasetFormatError(f"{where}: {reason}")
        self.skipped.append((source, reason))

    def skip(self, source: str, reason: str) -> None:
        """An item left out by design: always recorded, never raised."""
        self.skipped.append((source, reason))


def rel_source(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` as a posix string (the record's ``source``)."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def csv_rows(path: Path, required: tuple, what: str,
             headerless: Optional[tuple] = None) -> tuple[list, Iterator[tuple[int, list]]]:
    """Open a csv file, check its header, and return ``(header, rows)``.

    ``rows`` yields ``(row_number, fields)`` with 1-based data row numbers (the
    header is not counted). Raises a one-line DatasetFormatError naming the
    file when the header lacks a ``required`` column or the file is not text.
    Each yielded ``fields`` list is not length-checked: callers use
    :func:`check_row_length` with their :class:`ErrorPolicy`.

    ``headerless=(columns, is_header)`` accepts a file shared without its header
    row: when ``is_header(first_row)`` is False the columns are ``columns`` (the
    published order) and the first row is data row 1.
    """
    import csv

    path = require_file(path, what)
    f = open(path, newline="", encoding="utf-8-sig")
    try:
        reader = csv.reader(f)
        header = next(reader, None)
    except (UnicodeDecodeError, csv.Error) as exc:
        f.close()
        raise DatasetFormatError(f"{path}: not a {what} csv file ({exc.__class__.__name__}: {exc})") from None
    if header is None:
        f.close()
        raise DatasetFormatError(f"{path}: empty file; expected a {what} csv with columns {','.join(required)}")
    pending = []
    if headerless is not None and not headerless[1](header):
        log.info("%s: no header row; reading the columns in the published order %s",
                 path, ",".join(headerless[0]))
        pending, header = [header], list(headerless[0])
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        f.close()
        shown = ",".join(header)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        raise DatasetFormatError(
            f"{path}: not a {what} csv: expected columns {','.join(required)}; "
            f"missing {','.join(missing)} (header: {shown})")

    def rows():
        with f:
            n = 0
            try:
                for fields in itertools.chain(pending, reader):
                    if not fields or (len(fields) == 1 and not fields[0].strip()):
                        continue  # blank line
                    n += 1
                    yield n, fields
            except (UnicodeDecodeError, csv.Error) as exc:
                raise DatasetFormatError(
                    f"{path} row {n + 1}: unreadable csv ({exc.__class__.__name__}: {exc})") from None

    return header, rows()


def check_row_length(fields: list, header: list, where: str, source: str, policy: ErrorPolicy) -> bool:
    """True if ``fields`` has one value per header column, else report it and return False."""
    if len(fields) == len(header):
        return True
    policy.error(where, source, f"expected {len(header)} fields, found {len(fields)}")
    return False
