"""FER+ reader: ``fer2013new.csv`` vote counts joined row by row with ``fer2013.csv``.

Layout (Microsoft FERPlus)::

    fer2013new.csv  Usage,Image name,neutral,happiness,surprise,sadness,anger,
                    disgust,fear,contempt,unknown,NF
                    Training,fer0000000.png,4,0,0,1,3,2,0,0,0,0
    fer2013.csv     the FER2013 file: row k of fer2013new.csv is row k of fer2013.csv

Each face has 10 crowd votes. The label is the majority vote over the ten columns;
a tie for the highest count is skipped (``tie="skip"``, the default) or broken in
favour of the first tied column in the order above (``tie="first"``). A row whose
winning column is ``unknown`` or ``NF`` (not a face) is skipped and recorded, as
is a row with an empty ``Image name`` (a FER2013 image FER+ dropped). ``votes`` is
the distribution over the eight emotion columns (canonical order), float32.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from .. import labels
from ..errors import DatasetFormatError
from .base import ErrorPolicy, FaceRecord, check_row_length, csv_rows, register_reader
from .fer2013 import check_splits, locate_csv, parse_pixels, parse_usage

CSV_NAME = "fer2013new.csv"
VOTE_COLUMNS = labels.FERPLUS_COLUMNS + ("unknown", "NF")
COLUMNS = ("Usage", "Image name") + VOTE_COLUMNS
TIES = ("skip", "first")


def _count_rows(path: Path) -> int:
    """Non-blank lines after the header (the files have no quoted newlines)."""
    n = 0
    with open(path, "rb") as f:
        next(f, None)
        for line in f:
            if line.strip():
                n += 1
    return n


def majority(counts: np.ndarray, tie: str = "skip") -> tuple[Optional[int], str]:
    """Winning column of a FER+ vote row.

    Parameters
    ----------
    counts : (10,) array
        Votes in :data:`VOTE_COLUMNS` order.
    tie : {"skip", "first"}

    Returns
    -------
    (index, reason)
        ``index`` is the canonical class index, or None with the reason the row
        is skipped ("tied vote ...", "majority vote is unknown", "... NF (not a face)").
    """
    total = counts.sum()
    if total <= 0:
        return None, "no votes"
    top = counts.max()
    winners = np.flatnonzero(counts == top)
    if len(winners) > 1 and tie == "skip":
        names = ", ".join(VOTE_COLUMNS[w] for w in winners)
        return None, f"tied vote ({names}: {top:g} each)"
    w = int(winners[0])
    if VOTE_COLUMNS[w] == "unknown":
        return None, "majority vote is unknown"
    if VOTE_COLUMNS[w] == "NF":
        return None, "majority vote is NF (not a face)"
    return w, ""


@register_reader("ferplus")
def read_ferplus(root, *, fer2013_csv=None, tie: str = "skip",
                 splits: Optional[Iterable[str]] = None, on_error: str = "raise",
                 skipped: Optional[list] = None) -> Iterator[FaceRecord]:
    """Read FER+ labels (``fer2013new.csv``) with FER2013 pixels.

    Parameters
    ----------
    root : path
        ``fer2013new.csv`` or the folder holding it.
    fer2013_csv : path, optional
        The FER2013 csv with the pixels (default: ``fer2013.csv`` beside
        ``fer2013new.csv``).
    tie : {"skip", "first"}
        What to do when two columns share the highest vote count.
    splits : iterable of {"train", "val", "test"}, optional
        Keep only these splits (FER+ ``Usage``: Training/PublicTest/PrivateTest).
    on_error : {"raise", "skip"}
        A bad row (non-integer votes, bad pixels, unknown Usage) raises a
        DatasetFormatError naming the file and row, or is skipped and recorded.
    skipped : list, optional
        Receives ``(source, reason)`` for skipped rows, including rows left out by
        design (no image name, unknown / not-a-face majority, ties with ``tie="skip"``).

    Yields
    ------
    FaceRecord
        ``image`` (48, 48) uint8, ``aligned=True``, ``votes`` (8,) float32 summing
        to 1, ``source="fer2013new.csv:row<N>"``, ``extra["image_name"]``.
    """
    policy = ErrorPolicy(on_error, skipped)
    if tie not in TIES:
        raise DatasetFormatError(f"tie={tie!r}: expected one of {', '.join(TIES)}")
    keep = check_splits(splits)
    path = locate_csv(root, CSV_NAME, "FER+")
    if fer2013_csv is None:
        pix_path = path.parent / "fer2013.csv"
        if not pix_path.is_file():
            raise DatasetFormatError(
                f"{pix_path}: FER2013 pixel file not found beside {path.name} "
                f"(put fer2013.csv there or pass fer2013_csv=)")
    else:
        pix_path = locate_csv(fer2013_csv, "fer2013.csv", "FER2013")
    header, rows = csv_rows(path, COLUMNS, "FER+")
    pix_header, pix_rows = csv_rows(pix_path, ("pixels",), "FER2013")
    n_plus, n_pix = _count_rows(path), _count_rows(pix_path)
    if n_plus != n_pix:
        raise DatasetFormatError(
            f"{path}: {n_plus} rows but {pix_path} has {n_pix}; the two files must align row by row")
    i_use, i_name = header.index("Usage"), header.index("Image name")
    i_votes = [header.index(c) for c in VOTE_COLUMNS]
    i_pix = pix_header.index("pixels")
    for (n, fields), (_m, pfields) in zip(rows, pix_rows):
        source = f"{path.name}:row{n}"
        where = f"{path} row {n}"
        if not check_row_length(fields, header, where, source, policy):
            continue
        name = fields[i_name].strip()
        try:
            split = parse_usage(fields[i_use])
            if keep is not None and split not in keep:
                continue
            if not name:
                policy.skip(source, "no image name (face dropped by FER+)")
                continue
            try:
                counts = np.array([float(fields[i]) for i in i_votes], dtype=np.float64)
            except ValueError:
                raise ValueError("vote counts must be numbers: "
                                 + ",".join(fields[i].strip() for i in i_votes)) from None
            if np.any(counts < 0) or not np.all(np.isfinite(counts)):
                raise ValueError("vote counts must be non-negative")
        except ValueError as exc:
            policy.error(where, source, str(exc))
            continue
        label, reason = majority(counts, tie)
        if label is None:
            policy.skip(source, reason)
            continue
        pwhere = f"{pix_path} row {n}"
        if not check_row_length(pfields, pix_header, pwhere, source, policy):
            continue
        try:
            image = parse_pixels(pfields[i_pix])
        except ValueError as exc:
            policy.error(pwhere, source, str(exc))
            continue
        emo = counts[: len(labels.FERPLUS_COLUMNS)]
        votes = (emo / emo.sum()).astype(np.float32)  # emo.sum() > 0: an emotion won
        yield FaceRecord(
            source=source,
            label=labels.CLASS_INDEX[labels.FERPLUS_COLUMNS[label]],
            subject="",
            split=split,
            image=image,
            aligned=True,
            votes=votes,
            extra={"image_name": name, "usage": fields[i_use].strip(), "n_votes": int(counts.sum())},
        )
