"""BU-3DFE reader (the 2D frontal texture images).

Layout: one folder per subject, ``F0001/F0001_AN01WH_F2D.bmp``: subject (F/M +
4 digits), expression AN/DI/FE/HA/SA/SU/NE, intensity 01-04 (NE is 00), race code
(WH, BL, AE, AM, IN, LA), ``F2D`` = the 2D frontal texture (the images FERAtt
used). The 3D files beside them (``*_F3D.bmp``, ``*.wrl``, ``*.bnd``) are ignored.
Codes map with :data:`ferdata.labels.BU3DFE` (no contempt). Subject = ``F0001``.
No official split.
"""
from __future__ import annotations

import re
from typing import Iterator, Optional

from .. import labels
from ..errors import DatasetFormatError
from .base import ErrorPolicy, FaceRecord, iter_images, register_reader, rel_source, require_dir

NAME_RE = re.compile(r"^([FM]\d{4})_([A-Z]{2})(\d{2})([A-Z]{2})_F2D$", re.IGNORECASE)
RACES = {"WH": "white", "BL": "black", "AE": "east-asian", "AM": "middle-east-asian",
         "IN": "indian", "LA": "hispanic-latino"}


@register_reader("bu3dfe")
def read_bu3dfe(root, *, min_intensity: int = 1, include_neutral: bool = True,
                on_error: str = "raise", skipped: Optional[list] = None) -> Iterator[FaceRecord]:
    """Read the BU-3DFE 2D frontal images (``*_F2D.bmp``) under ``root``.

    Parameters
    ----------
    root : path
        The BU-3DFE folder (subject folders ``F0001/`` ... inside; any depth).
    min_intensity : int, 1..4
        Keep expressive faces of at least this intensity (default 1: all four
        levels, 2,400 faces; 3 keeps the two strongest levels, a common protocol).
    include_neutral : bool
        Keep the neutral face of each subject (intensity 00; default True).
    on_error : {"raise", "skip"}
        A ``*_F2D`` image with a malformed name raises a DatasetFormatError naming
        the file, or is skipped and recorded.
    skipped : list, optional
        Receives ``(source, reason)`` for every skipped file.

    Yields
    ------
    FaceRecord
        ``path``, ``subject="F0001"``, ``split=""``, ``extra={"intensity", "race"}``.
    """
    policy = ErrorPolicy(on_error, skipped)
    if isinstance(min_intensity, bool) or not isinstance(min_intensity, int) or not 1 <= min_intensity <= 4:
        raise DatasetFormatError(f"min_intensity={min_intensity!r}: expected an integer 1..4")
    root = require_dir(root, "BU-3DFE")
    for path in iter_images(root):
        if not path.stem.upper().endswith("_F2D"):
            continue  # 3D texture maps and other files of the distribution
        source = rel_source(path, root)
        m = NAME_RE.match(path.stem)
        if not m:
            policy.error(str(path), source, "not a BU-3DFE file name (expected like F0001_AN01WH_F2D.bmp)")
            continue
        subject, code, level, race = (g.upper() for g in m.groups())
        level = int(level)
        if code not in labels.BU3DFE:
            policy.error(str(path), source,
                         f"unknown BU-3DFE expression code {code!r} (expected {'/'.join(labels.BU3DFE)})")
            continue
        if (code == "NE") != (level == 0) or level > 4:
            policy.error(str(path), source,
                         f"intensity {level:02d} is invalid for {code} (NE is 00, others 01-04)")
            continue
        if (code == "NE" and not include_neutral) or (code != "NE" and level < min_intensity):
            continue
        yield FaceRecord(
            source=source,
            label=labels.CLASS_INDEX[labels.BU3DFE[code]],
            subject=subject,
            split="",
            path=path,
            extra={"intensity": level, "race": race},
        )
