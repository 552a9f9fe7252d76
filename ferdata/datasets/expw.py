"""ExpW (Expression in-the-Wild).

Layout (ROOT = the folder holding ``label/`` and ``image/``)::

    ROOT/label/label.lst     "image_name face_id top left right bottom confidence label"
    ROOT/image/origin/angry_actor_104.jpg

One record per listed face (an image with two faces gives two records); the
face box comes from the list: ``(left, top, right - left, bottom - top)``.
Labels: 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral
(:data:`ferdata.labels.EXPW`). ExpW has neither subject ids nor an official
split: ``subject=""``, ``split=""``. ``source`` is
``image/origin/<name>:face<face_id>``.

Bad items besides malformed rows: a ``nan`` or infinite confidence (it would
decide ``min_confidence`` by accident) and a box entirely outside its image (the
size read from the file header, EXIF rotation applied); a box partly outside is kept.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Optional

from .. import labels
from ..errors import DatasetFormatError
from .base import ErrorPolicy, FaceRecord, register_reader, rel_source, require_dir
from .rafdb import list_lines

LIST_FILE = "label/label.lst"
IMAGE_DIR = "image/origin"
FIELDS = ("image_name", "face_id", "top", "left", "right", "bottom", "confidence", "label")


def parse_row(fields: list[str]) -> dict:
    """One label.lst row -> dict (ValueError with a reason)."""
    if len(fields) != len(FIELDS):
        raise ValueError(f"expected {len(FIELDS)} fields ({' '.join(FIELDS)}), found {len(fields)}")
    name, face_id, *nums, conf, code = fields
    try:
        top, left, right, bottom = (int(round(float(v))) for v in nums)
        confidence = float(conf)
    except (ValueError, OverflowError):  # OverflowError: an infinite coordinate
        raise ValueError("top/left/right/bottom/confidence must be numbers") from None
    if not math.isfinite(confidence):  # nan < min_confidence is False: it would pass any threshold
        raise ValueError(f"confidence {conf!r} is not a finite number")
    if not code.isdigit() or int(code) not in labels.EXPW:
        raise ValueError(f"label {code!r} is not an ExpW code (0-6)")
    if right <= left or bottom <= top:
        raise ValueError(f"empty face box (top {top}, left {left}, right {right}, bottom {bottom})")
    return {"name": name, "face_id": face_id, "box": (left, top, right - left, bottom - top),
            "confidence": confidence, "code": int(code)}


def image_size(path: Path) -> Optional[tuple[int, int]]:
    """``(width, height)`` of an image as ingest decodes it (EXIF orientation applied),
    read from the file header without decoding the pixels; None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                w, h = h, w
    except Exception:  # noqa: BLE001 -- unreadable or too large a header: ingest reports the file
        return None
    return w, h


def box_outside(box: tuple, size: Optional[tuple[int, int]]) -> Optional[str]:
    """Why the (x, y, w, h) ``box`` holds no pixel of an image of ``size``, or None."""
    if size is None:
        return None
    (x, y, w, h), (width, height) = box, size
    if x < width and y < height and x + w > 0 and y + h > 0:
        return None
    return (f"face box (left {x}, top {y}, right {x + w}, bottom {y + h}) lies entirely "
            f"outside the {width}x{height} image")


@register_reader("expw")
def read_expw(root, *, min_confidence: float = 0.0, on_error: str = "raise",
              skipped: Optional[list] = None) -> Iterator[FaceRecord]:
    """Read ExpW faces from ``label/label.lst``.

    Parameters
    ----------
    root : path
        The folder holding ``label/label.lst`` and ``image/origin/``.
    min_confidence : float
        Leave out (and record) faces whose detector confidence is below this.
    on_error : {"raise", "skip"}
        A bad row (field count, non-numeric box, a ``nan`` or infinite
        confidence, unknown label, missing image, a box entirely outside its
        image) raises a DatasetFormatError naming ``label.lst`` and the line, or
        is skipped and recorded.
    skipped : list, optional
        Receives ``(source, reason)`` for skipped faces.

    Yields
    ------
    FaceRecord
        ``path``, ``box`` (x, y, w, h), ``subject=""``, ``split=""``,
        ``extra={"face_id", "confidence"}``.
    """
    policy = ErrorPolicy(on_error, skipped)
    root = require_dir(root, "ExpW")
    lst = root / LIST_FILE
    if not lst.is_file():
        raise DatasetFormatError(f"{root}: not an ExpW folder: missing {LIST_FILE}")
    img_dir = root / IMAGE_DIR
    if not img_dir.is_dir():
        raise DatasetFormatError(f"{root}: not an ExpW folder: missing {IMAGE_DIR}/")
    lsrc = rel_source(lst, root)
    sizes: dict = {}
    for n, fields in list_lines(lst):
        where = f"{lst} line {n}"
        path = img_dir / fields[0]
        source = (f"{rel_source(path, root)}:face{fields[1]}" if len(fields) == len(FIELDS)
                  else f"{lsrc}:line{n}")
        try:
            row = parse_row(fields)
            if not path.is_file():
                raise ValueError(f"image file {path} does not exist")
            if path not in sizes:
                sizes[path] = image_size(path)
            outside = box_outside(row["box"], sizes[path])
            if outside:
                raise ValueError(outside)
        except ValueError as exc:
            policy.error(where, source, str(exc))
            continue
        if row["confidence"] < min_confidence:
            policy.skip(source, f"face confidence {row['confidence']:g} < min_confidence {min_confidence:g}")
            continue
        yield FaceRecord(source=source, label=labels.CLASS_INDEX[labels.EXPW[row["code"]]], subject="",
                         split="", path=path, box=row["box"],
                         extra={"face_id": row["face_id"], "confidence": row["confidence"]})
