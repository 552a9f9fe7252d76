"""JAFFE (Japanese Female Facial Expression) reader.

Layout: 213 files ``KA.AN1.39.tiff`` in one folder (``jaffedbase/``; any depth is
searched). Name = subject (2 letters) ``.`` expression code + repeat ``.`` image
index. Codes AN/DI/FE/HA/NE/SA/SU map with :data:`ferdata.labels.JAFFE`
(no contempt). Subject = the two letters (10 subjects). No official split.
"""
from __future__ import annotations

import re
from typing import Iterator, Optional

from .. import labels
from .base import ErrorPolicy, FaceRecord, iter_images, register_reader, rel_source, require_dir

NAME_RE = re.compile(r"^([A-Za-z]{2})\.([A-Za-z]{2})(\d*)\.(\d+)$")


@register_reader("jaffe")
def read_jaffe(root, *, on_error: str = "raise", skipped: Optional[list] = None) -> Iterator[FaceRecord]:
    """Read JAFFE images named like ``KA.AN1.39.tiff`` under ``root`` (recursive).

    Parameters
    ----------
    root : path
        The folder holding the ``.tiff`` files (or a parent of it).
    on_error : {"raise", "skip"}
        An image whose name is not a JAFFE name raises a DatasetFormatError naming
        the file, or is skipped and recorded.
    skipped : list, optional
        Receives ``(source, reason)`` for every skipped file.

    Yields
    ------
    FaceRecord
        ``path``, ``subject="KA"``, ``split=""``, ``extra={"repeat", "index"}``.
    """
    policy = ErrorPolicy(on_error, skipped)
    root = require_dir(root, "JAFFE")
    for path in iter_images(root):
        source = rel_source(path, root)
        m = NAME_RE.match(path.stem)
        if not m:
            policy.error(str(path), source, "not a JAFFE file name (expected like KA.AN1.39.tiff)")
            continue
        subject, code, repeat, idx = m.groups()
        code = code.upper()
        if code not in labels.JAFFE:
            policy.error(str(path), source,
                         f"unknown JAFFE expression code {code!r} (expected {'/'.join(labels.JAFFE)})")
            continue
        yield FaceRecord(
            source=source,
            label=labels.CLASS_INDEX[labels.JAFFE[code]],
            subject=subject.upper(),
            split="",
            path=path,
            extra={"repeat": int(repeat) if repeat else 1, "index": int(idx)},
        )
