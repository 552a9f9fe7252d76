"""RaFD (Radboud Faces Database) reader.

Layout: ``Rafd090_01_Caucasian_female_angry_frontal.jpg`` = camera angle (000,
045, 090, 135, 180; 090 is frontal), subject number, ethnicity (Caucasian,
Moroccan, Kid), gender, expression (angry, contemptuous, disgusted, fearful,
happy, neutral, sad, surprised -> :data:`ferdata.labels.RAFD`), gaze (frontal,
left, right). Subject = the number (``"01"``). No official split.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator, Optional

from .. import labels
from ..errors import DatasetFormatError
from .base import ErrorPolicy, FaceRecord, iter_images, register_reader, rel_source, require_dir

NAME_RE = re.compile(r"^Rafd(\d{3})_(\d+)_([A-Za-z]+)_([A-Za-z]+)_([A-Za-z]+)_([A-Za-z]+)$", re.IGNORECASE)
ANGLES = (0, 45, 90, 135, 180)
GAZES = ("frontal", "left", "right")


@register_reader("rafd")
def read_rafd(root, *, angles: Iterable[int] = (90,), gazes: Optional[Iterable[str]] = None,
              on_error: str = "raise", skipped: Optional[list] = None) -> Iterator[FaceRecord]:
    """Read RaFD images under ``root`` (recursive).

    Parameters
    ----------
    root : path
        The RaFD folder.
    angles : iterable of int
        Camera angles to keep (default ``(90,)``: the frontal camera only), from
        0, 45, 90, 135, 180.
    gazes : iterable of str, optional
        Gaze directions to keep (default: all of frontal, left, right).
    on_error : {"raise", "skip"}
        An image whose name is not a RaFD name raises a DatasetFormatError naming
        the file, or is skipped and recorded.
    skipped : list, optional
        Receives ``(source, reason)`` for every skipped file.

    Yields
    ------
    FaceRecord
        ``path``, ``subject="01"``, ``split=""``,
        ``extra={"angle", "ethnicity", "gender", "gaze"}``.
    """
    policy = ErrorPolicy(on_error, skipped)
    try:
        keep_angles = {int(a) for a in ([angles] if isinstance(angles, (int, str)) else angles)}
    except (TypeError, ValueError):
        raise DatasetFormatError(f"angles={angles!r}: expected camera angles from {ANGLES}") from None
    if not keep_angles or not keep_angles <= set(ANGLES):
        raise DatasetFormatError(f"angles={sorted(keep_angles)}: expected camera angles from {ANGLES}")
    if gazes is None:
        keep_gazes = set(GAZES)
    else:
        keep_gazes = {str(g).lower() for g in ([gazes] if isinstance(gazes, str) else gazes)}
        if not keep_gazes or not keep_gazes <= set(GAZES):
            raise DatasetFormatError(f"gazes={sorted(keep_gazes)}: expected gazes from {', '.join(GAZES)}")
    root = require_dir(root, "RaFD")
    for path in iter_images(root):
        source = rel_source(path, root)
        m = NAME_RE.match(path.stem)
        if not m:
            policy.error(str(path), source,
                         "not a RaFD file name (expected like Rafd090_01_Caucasian_female_angry_frontal.jpg)")
            continue
        angle, subject, ethnicity, gender, expr, gaze = m.groups()
        expr, gaze, gender = expr.lower(), gaze.lower(), gender.lower()
        if expr not in labels.RAFD:
            policy.error(str(path), source,
                         f"unknown RaFD expression {expr!r} (expected {', '.join(labels.RAFD)})")
            continue
        if gaze not in GAZES or int(angle) not in ANGLES or gender not in ("female", "male"):
            policy.error(str(path), source, f"bad RaFD name fields (angle {angle}, gender {gender}, gaze {gaze})")
            continue
        if int(angle) not in keep_angles or gaze not in keep_gazes:
            continue
        yield FaceRecord(
            source=source,
            label=labels.CLASS_INDEX[labels.RAFD[expr]],
            subject=subject,
            split="",
            path=path,
            extra={"angle": int(angle), "ethnicity": ethnicity, "gender": gender, "gaze": gaze},
        )
