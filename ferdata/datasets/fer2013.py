"""FER2013 reader: ``fer2013.csv`` with 48×48 gray faces embedded as pixel strings.

Layout (the Kaggle "Challenges in Representation Learning" file)::

    fer2013.csv     emotion,pixels,Usage
                    0,"70 80 82 ... (2304 values)",Training

Also read as published elsewhere: the Kaggle challenge folder's
``icml_face_data.csv`` (header ``emotion, Usage, pixels``, with spaces; pass the
folder or the file) and its ``train.csv`` (``emotion,pixels``, no Usage: pass
the file; every row is split ``train``).

``emotion``: 0 Angry 1 Disgust 2 Fear 3 Happy 4 Sad 5 Surprise 6 Neutral, mapped to
the canonical classes with :data:`ferdata.labels.FER2013`. ``Usage`` gives the
official split: ``Training`` -> ``"train"``, ``PublicTest`` -> ``"val"``,
``PrivateTest`` -> ``"test"`` (:data:`USAGE_SPLITS`). Another file without a
``Usage`` column gives split ``""``. FER2013 has no subject ids: ``subject`` is ``""``.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from .. import labels
from ..errors import DatasetFormatError
from .base import ErrorPolicy, FaceRecord, check_row_length, csv_rows, register_reader

#: ``Usage`` value -> ferdata split name.
USAGE_SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SPLITS = ("train", "val", "test")
SIDE = 48
N_PIXELS = SIDE * SIDE
CSV_NAME = "fer2013.csv"
#: File names looked for in a folder, in this order.
CSV_NAMES = (CSV_NAME, "icml_face_data.csv")
#: A file without a Usage column whose every row is one split (Kaggle's challenge train.csv).
NO_USAGE_SPLIT = {"train.csv": "train"}


def parse_pixels(text: str) -> np.ndarray:
    """Parse a FER2013 pixel string into a (48, 48) uint8 image.

    Raises
    ------
    ValueError
        With a short reason (wrong count, non-integer or out-of-range value).
    """
    values = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = np.fromstring(text, dtype=np.float64, sep=" ")  # fast path
    except (ValueError, DeprecationWarning):
        values = None
    if values is None:  # slow path: find the offending token
        tokens = text.split()
        for k, tok in enumerate(tokens):
            try:
                float(tok)
            except ValueError:
                raise ValueError(f"pixel {k + 1} is not a number: {tok[:20]!r}") from None
        values = np.array([float(t) for t in tokens], dtype=np.float64)
    if values.size != N_PIXELS:
        raise ValueError(f"expected {N_PIXELS} pixel values (48x48), found {values.size}")
    if not np.all(values == np.floor(values)):
        raise ValueError("pixel values must be integers")
    if values.min() < 0 or values.max() > 255:
        raise ValueError(f"pixel values must be in 0..255, found {values.min():g}..{values.max():g}")
    return values.astype(np.uint8).reshape(SIDE, SIDE)


def parse_usage(text: str) -> str:
    """``Training``/``PublicTest``/``PrivateTest`` -> ``train``/``val``/``test``."""
    usage = text.strip()
    if usage not in USAGE_SPLITS:
        raise ValueError(f"unknown Usage {usage!r} (expected {', '.join(USAGE_SPLITS)})")
    return USAGE_SPLITS[usage]


def check_splits(splits: Optional[Iterable[str]]) -> Optional[set]:
    if splits is None:
        return None
    if isinstance(splits, str):
        splits = [splits]
    out = set(splits)
    bad = sorted(out - set(SPLITS))
    if bad:
        raise DatasetFormatError(f"splits={sorted(out)}: unknown split {bad[0]!r}; expected {', '.join(SPLITS)}")
    return out


def locate_csv(root, name, what: str) -> Path:
    """``root`` itself if it is a file, else the first ``root/<name>`` found (``name``:
    a file name or a tuple of them); one-line error otherwise."""
    root = Path(root)
    if root.is_file():
        return root
    if not root.exists():
        raise DatasetFormatError(f"{root}: {what} folder or csv file does not exist")
    names = (name,) if isinstance(name, str) else tuple(name)
    for n in names:
        if (root / n).is_file():
            return root / n
    raise DatasetFormatError(f"{root}: no {' or '.join(names)} in this folder (pass the csv file or its folder)")


@register_reader("fer2013")
def read_fer2013(root, *, splits: Optional[Iterable[str]] = None, on_error: str = "raise",
                 skipped: Optional[list] = None) -> Iterator[FaceRecord]:
    """Read FER2013 from ``fer2013.csv`` (``root`` is the csv file or its folder).

    Parameters
    ----------
    root : path
        ``fer2013.csv`` (or ``icml_face_data.csv``, Kaggle's ``train.csv``) or the
        folder holding ``fer2013.csv`` or ``icml_face_data.csv``.
    splits : iterable of {"train", "val", "test"}, optional
        Keep only these official splits (default: all rows).
    on_error : {"raise", "skip"}
        A bad row (wrong pixel count, non-integer label, unknown Usage) raises a
        DatasetFormatError naming the file and row, or is skipped and recorded.
    skipped : list, optional
        Receives ``(source, reason)`` for every skipped row.

    Yields
    ------
    FaceRecord
        ``image`` (48, 48) uint8 gray, ``aligned=True``, ``source="fer2013.csv:row<N>"``
        (1-based data row), ``split`` from ``Usage``, ``subject=""``.

    Examples
    --------
    >>> recs = list(read_fer2013("/data/fer2013", splits=["test"]))  # doctest: +SKIP
    """
    policy = ErrorPolicy(on_error, skipped)
    keep = check_splits(splits)
    path = locate_csv(root, CSV_NAMES, "FER2013")
    header, rows = csv_rows(path, ("emotion", "pixels"), "FER2013")
    i_emo, i_pix = header.index("emotion"), header.index("pixels")
    i_use = header.index("Usage") if "Usage" in header else None
    fixed_split = NO_USAGE_SPLIT.get(path.name.lower(), "")
    for n, fields in rows:
        source = f"{path.name}:row{n}"
        where = f"{path} row {n}"
        if not check_row_length(fields, header, where, source, policy):
            continue
        try:
            split = parse_usage(fields[i_use]) if i_use is not None else fixed_split
            code = fields[i_emo].strip()
            if not code.lstrip("-").isdigit() or int(code) not in labels.FER2013:
                raise ValueError(f"emotion {code!r} is not a FER2013 code (0-6)")
            if keep is not None and split not in keep:
                continue
            image = parse_pixels(fields[i_pix])
        except ValueError as exc:
            policy.error(where, source, str(exc))
            continue
        yield FaceRecord(
            source=source,
            label=labels.CLASS_INDEX[labels.FER2013[int(code)]],
            subject="",
            split=split,
            image=image,
            aligned=True,
            extra={"usage": fields[i_use].strip()} if i_use is not None else {},
        )
