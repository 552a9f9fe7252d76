"""RAF-DB (Real-world Affective Faces), basic emotion part.

Layout (ROOT = the ``basic/`` folder of the distribution)::

    ROOT/EmoLabel/list_patition_label.txt   "train_00001.jpg 5" per line
    ROOT/Image/aligned/train_00001_aligned.jpg   100x100, already aligned
    ROOT/Image/original/train_00001.jpg          the full photo

Labels: 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger,
7 Neutral (:data:`ferdata.labels.RAFDB`). The split comes from the name
(``train_*`` / ``test_*``). RAF-DB has no subject ids: ``subject=""``, so only
its official split (not subject-independent folds) applies.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

from .. import labels
from ..errors import DatasetFormatError
from .base import ErrorPolicy, FaceRecord, register_reader, rel_source, require_dir

LIST_FILE = "EmoLabel/list_patition_label.txt"
IMAGE_SETS = ("auto", "aligned", "original")
NAME_SPLITS = {"train": "train", "test": "test"}


def list_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line_number, fields)`` of a whitespace-separated list file, blank lines left out."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"{path}: not a text list file ({exc})") from None
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield n, line.split()


def _image_set(root: Path, images: str) -> str:
    if images not in IMAGE_SETS:
        raise DatasetFormatError(f"images={images!r}: expected one of {', '.join(IMAGE_SETS)}")
    if images == "auto":
        images = "aligned" if (root / "Image" / "aligned").is_dir() else "original"
    if not (root / "Image" / images).is_dir():
        raise DatasetFormatError(f"{root}: no Image/{images}/ folder (RAF-DB basic: Image/aligned or Image/original)")
    return images


def _check_line(fields: list[str], stem: str, path: Path) -> tuple[int, str]:
    """``(code, split)`` of a list line; ValueError with a reason for a bad line."""
    if len(fields) != 2:
        raise ValueError(f"expected 'image_name label', found {len(fields)} fields")
    code = fields[1]
    if not code.isdigit() or int(code) not in labels.RAFDB:
        raise ValueError(f"label {code!r} is not a RAF-DB code (1-7)")
    split = NAME_SPLITS.get(stem.split("_", 1)[0].lower())
    if split is None:
        raise ValueError(f"image name {fields[0]!r} does not start with train_ or test_")
    if not path.is_file():
        raise ValueError(f"image file {path} does not exist")
    return int(code), split


def _repeated(name: str, code: int, line: int, first_code: int) -> str:
    labels_differ = f", with label {first_code} there and {code} here" if code != first_code else ""
    return f"image {name} is listed again (read from line {line}{labels_differ})"


@register_reader("rafdb")
def read_rafdb(root, *, images: str = "auto", on_error: str = "raise",
               skipped: Optional[list] = None) -> Iterator[FaceRecord]:
    """Read RAF-DB basic.

    Parameters
    ----------
    root : path
        The ``basic/`` folder (holding ``EmoLabel/`` and ``Image/``).
    images : {"auto", "aligned", "original"}
        ``aligned`` reads ``Image/aligned/*_aligned.jpg`` (pre-aligned faces: no
        detection at ingest); ``original`` the full photos (detected at ingest);
        ``auto`` (default) takes ``aligned`` when that folder exists.
    on_error : {"raise", "skip"}
        A bad line (wrong field count, unknown code, name without train/test
        prefix, missing image, an image listed a second time) raises a
        DatasetFormatError naming the list file and line, or is skipped and
        recorded (a repeated image is read once, from its first line).
    skipped : list, optional
        Receives ``(source, reason)`` for skipped items.

    Yields
    ------
    FaceRecord
        ``path``, ``split`` ("train"/"test"), ``subject=""``,
        ``aligned=True`` for the aligned set, ``source`` e.g.
        ``Image/aligned/train_00001_aligned.jpg``.
    """
    policy = ErrorPolicy(on_error, skipped)
    root = require_dir(root, "RAF-DB basic")
    lst = root / LIST_FILE
    if not lst.is_file():
        raise DatasetFormatError(f"{root}: not a RAF-DB basic folder: missing {LIST_FILE}")
    which = _image_set(root, images)
    folder = root / "Image" / which
    lsrc = rel_source(lst, root)
    first_line: dict = {}  # image name -> (line, code) of the line it was read from
    for n, fields in list_lines(lst):
        name = fields[0]
        stem, ext = name.rsplit(".", 1) if "." in name else (name, "jpg")
        path = folder / (f"{stem}_aligned.{ext}" if which == "aligned" else name)
        source = rel_source(path, root) if len(fields) == 2 else f"{lsrc}:line{n}"
        try:
            code, split = _check_line(fields, stem, path)
            if name in first_line:
                raise ValueError(_repeated(name, code, *first_line[name]))
        except ValueError as exc:
            policy.error(f"{lst} line {n}", source, str(exc))
            continue
        first_line[name] = (n, code)
        yield FaceRecord(source=source, label=labels.CLASS_INDEX[labels.RAFDB[code]], subject="",
                         split=split, path=path, aligned=which == "aligned",
                         extra={"image_name": name, "rafdb_code": code})
