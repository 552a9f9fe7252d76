"""Generic folder-per-class reader.

Layout::

    ROOT/<class>/*.png|jpg|...                 e.g. ROOT/happy/img001.jpg
    ROOT/<split>/<class>/*.png|jpg|...         e.g. ROOT/train/happy/img001.jpg

Class folder names are canonical names or synonyms (``happy``, ``angry``,
``surprised``, ``sad``, ``disgusted``, ``fearful``, ``contemptuous``, ``neutral``
...; :func:`ferdata.labels.canonical`), case-insensitive. Images may sit at any
depth inside a class folder. When every top-level folder is a split name
(``train``/``training``, ``val``/``valid``/``validation``/``PublicTest``,
``test``/``testing``/``PrivateTest``), that level gives ``split`` — the layout of
the image version of FER2013 on Kaggle. A file named as in that release gives
its own split, whatever folder it is in: ``Training_*`` -> train,
``PublicTest_*`` -> val, ``PrivateTest_*`` -> test (Kaggle's ``test/`` folder
holds both public and private test faces). Subject ids come from
``subject_regex`` (group 1, matched against the file stem); default ``""``.
With ``aligned=True`` the images are taken as pre-cropped faces (as FER2013's
image release): ingest stores them as they are, without face detection.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Optional

from .. import labels
from ..errors import DatasetFormatError
from .base import ErrorPolicy, FaceRecord, IMAGE_EXTENSIONS, iter_images, register_reader, rel_source, require_dir

SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "publictest": "val", "test": "test", "testing": "test",
               "privatetest": "test"}
#: Kaggle FER2013 image names: ``PrivateTest_88305.jpg`` -> test.
NAME_SPLITS = {"training_": "train", "publictest_": "val", "privatetest_": "test"}


def split_from_name(stem: str, default: str) -> str:
    """The split a Kaggle FER2013 image name gives (``default`` for other names)."""
    low = stem.lower()
    return next((s for prefix, s in NAME_SPLITS.items() if low.startswith(prefix)), default)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _loose_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


@register_reader("folder")
def read_folder(root, *, subject_regex: Optional[str] = None, aligned: bool = False,
                on_error: str = "raise", skipped: Optional[list] = None) -> Iterator[FaceRecord]:
    """Read images from class folders (optionally inside split folders).

    Parameters
    ----------
    root : path
        Folder of class folders, or of split folders of class folders.
    subject_regex : str, optional
        A regular expression searched in each file stem; group 1 (or the whole
        match when it has no group) is the subject id. A file it does not match
        is a bad item (raised or skipped). Example: ``r"^(S\\d+)_"``.
    aligned : bool
        The images are already cropped faces: no detection at ingest.
    on_error : {"raise", "skip"}
        An unknown class folder name, an image outside any class folder, or a
        file name ``subject_regex`` does not match raises a DatasetFormatError
        naming the folder / file, or is skipped and recorded (a whole unknown
        class folder is recorded once).
    skipped : list, optional
        Receives ``(source, reason)`` for every skipped folder or file.

    Yields
    ------
    FaceRecord
        ``path``, ``label`` from the class folder, ``split`` from a Kaggle file
        name, else a split folder (else ``""``), ``subject`` from ``subject_regex``
        (else ``""``), ``aligned``.
    """
    policy = ErrorPolicy(on_error, skipped)
    if not isinstance(aligned, bool):
        raise DatasetFormatError(f"aligned={aligned!r}: expected true or false")
    rx = None
    if subject_regex is not None:
        try:
            rx = re.compile(subject_regex)
        except re.error as exc:
            raise DatasetFormatError(f"subject_regex={subject_regex!r}: not a regular expression ({exc})") from None
    root = require_dir(root, "image")
    top = _subdirs(root)
    if top and all(d.name.lower() in SPLIT_NAMES for d in top):
        groups = [(SPLIT_NAMES[d.name.lower()], d) for d in top]
    else:
        groups = [("", root)]

    # Check the whole folder structure before the first record.
    classes = []
    for split, base in groups:
        for img in _loose_images(base):
            policy.error(str(img), rel_source(img, root), "image is not inside a class folder")
        for class_dir in _subdirs(base):
            try:
                classes.append((split, class_dir, labels.index(class_dir.name)))
            except ValueError:
                policy.error(str(class_dir), rel_source(class_dir, root) + "/",
                             f"unknown class folder {class_dir.name!r} "
                             f"(expected one of {', '.join(labels.CLASSES)} or a synonym)")

    for split, class_dir, label in classes:
        for path in iter_images(class_dir):
            source = rel_source(path, root)
            subject = ""
            if rx is not None:
                m = rx.search(path.stem)
                if not m:
                    policy.error(str(path), source, f"file name does not match subject_regex {subject_regex!r}")
                    continue
                subject = m.group(1) if rx.groups else m.group(0)
            yield FaceRecord(source=source, label=label, subject=subject,
                             split=split_from_name(path.stem, split), path=path, aligned=aligned)
