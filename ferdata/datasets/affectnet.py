"""AffectNet reader (the manually annotated part), csv release and AffectNet-8.

csv release layout (as distributed)::

    ROOT/Manually_Annotated_file_lists/training.csv    (or ROOT/training.csv)
    ROOT/Manually_Annotated_file_lists/validation.csv  (or ROOT/validation.csv)
    ROOT/Manually_Annotated/Manually_Annotated_Images/689/737db24...jpg
        (or ROOT/Manually_Annotated_Images/689/..., or ROOT/689/...)

A ROOT holding ``train_set/images`` / ``val_set/images`` is read as the
AffectNet-8 release (:mod:`ferdata.datasets.affectnet8`).

csv header: ``subDirectory_filePath,face_x,face_y,face_width,face_height,
facial_landmarks,expression`` (then ``valence,arousal``, kept in ``extra``).
``facial_landmarks`` is ``"x1;y1;x2;y2;...;x68;y68"``. ``expression``: 0 neutral
1 happy 2 sad 3 surprise 4 fear 5 disgust 6 anger 7 contempt
(:data:`ferdata.labels.AFFECTNET`); 8 none, 9 uncertain, 10 non-face are skipped
and recorded. Split = ``"train"`` from training.csv, ``"val"`` from
validation.csv. AffectNet has no subject ids (``subject=""``).

A csv without its header row is read with the published columns
(:data:`PUBLISHED_COLUMNS`); the header is recognised by content (:func:`is_header`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .. import labels
from ..errors import DatasetFormatError
from .affectnet8 import is_affectnet8, read_affectnet8
from .base import ErrorPolicy, FaceRecord, check_row_length, csv_rows, register_reader, rel_source

COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
           "facial_landmarks", "expression")
#: The columns of the published csv files, in order (read so when a file has no header row).
PUBLISHED_COLUMNS = COLUMNS + ("valence", "arousal")
NOT_FACES = {8: "none", 9: "uncertain", 10: "non-face"}
CSV_SPLITS = {"training": "train", "validation": "val"}
LIST_DIRS = ("", "Manually_Annotated_file_lists")
IMAGE_DIRS = ("Manually_Annotated/Manually_Annotated_Images", "Manually_Annotated_Images",
              "Manually_Annotated", "images")


def parse_landmarks(text: str) -> Optional[np.ndarray]:
    """``"x1;y1;...;x68;y68"`` -> (68, 2) float32 (None for an empty field)."""
    text = text.strip()
    if not text:
        return None
    try:
        values = np.array([float(v) for v in text.split(";") if v.strip()], dtype=np.float64)
    except ValueError:
        raise ValueError("facial_landmarks must be ';'-separated numbers") from None
    if values.size != 136:
        raise ValueError(f"facial_landmarks: expected 136 values (68 points), found {values.size}")
    return values.reshape(68, 2).astype(np.float32)


def is_header(fields: list) -> bool:
    """Whether the first row of an AffectNet csv is its header, judged by content.

    Some public loaders read ``validation.csv`` as having no header row: a first row
    whose first field is not ``subDirectory_filePath`` and that reads as data (the
    published number of fields, an integer ``expression``) is data. Anything else is
    taken as a header and checked for the expected columns."""
    if fields and fields[0].strip() == COLUMNS[0]:
        return True
    i_expr = COLUMNS.index("expression")
    return not (len(fields) == len(PUBLISHED_COLUMNS) and fields[i_expr].strip().lstrip("-").isdigit())


def _default_csvs(root: Path) -> list[Path]:
    found = []
    for sub in LIST_DIRS:
        for name in ("training.csv", "validation.csv"):
            p = root / sub / name
            if p.is_file():
                found.append(p)
        if found:
            return found
    return found


def _image_dir(root: Path, images) -> Path:
    if images is not None:
        d = Path(images)
        d = d if d.is_absolute() else root / d
        if not d.is_dir():
            raise DatasetFormatError(f"{d}: AffectNet images folder does not exist")
        return d
    for name in IMAGE_DIRS:
        if (root / name).is_dir():
            return root / name
    return root


@register_reader("affectnet")
def read_affectnet(root, *, csv=None, images=None, on_error: str = "raise",
                   skipped: Optional[list] = None) -> Iterator[FaceRecord]:
    """Read AffectNet annotations and image paths.

    Parameters
    ----------
    root : path
        The AffectNet folder (csv release), or the folder holding ``train_set/``
        and ``val_set/`` (AffectNet-8: ``csv`` and ``images`` do not apply).
    csv : path or list of paths, optional
        Annotation csv file(s), relative to ``root`` or absolute. Default:
        ``training.csv`` and ``validation.csv`` in ``root`` or in
        ``root/Manually_Annotated_file_lists``. The split is ``"train"`` for a file
        named ``training*.csv``, ``"val"`` for ``validation*.csv``, else ``""``.
    images : path, optional
        Folder the ``subDirectory_filePath`` values are relative to (default: the
        first of ``Manually_Annotated/Manually_Annotated_Images``,
        ``Manually_Annotated_Images``, ``Manually_Annotated``, ``images`` under
        ``root``, else ``root``).
    on_error : {"raise", "skip"}
        A bad row (wrong columns, non-integer expression or box, bad landmarks,
        missing image file) raises a DatasetFormatError naming the csv file and
        row, or is skipped and recorded.
    skipped : list, optional
        Receives ``(source, reason)`` for skipped rows, including expressions
        8-10 (none / uncertain / non-face), always skipped.

    Yields
    ------
    FaceRecord
        ``path``, ``box=(x, y, w, h)``, ``landmarks`` (68, 2) float32, ``split``,
        ``subject=""``, ``extra={"csv", "row", "valence", "arousal"}`` (the last two
        when the csv has them).
    """
    policy = ErrorPolicy(on_error, skipped)
    root = Path(root)
    if not root.exists():
        raise DatasetFormatError(f"{root}: AffectNet folder does not exist")
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: expected the AffectNet folder, found a file (pass csv= for the list)")
    if csv is None and images is None and is_affectnet8(root):
        yield from read_affectnet8(root, policy)
        return
    csv_paths = _csv_paths(root, csv)
    img_dir = _image_dir(root, images)
    headerless = (PUBLISHED_COLUMNS, is_header)
    opened = [(p, *csv_rows(p, COLUMNS, "AffectNet", headerless)) for p in csv_paths]  # check every header first
    for path, header, rows in opened:
        yield from _csv_records(path, header, rows, root, img_dir, policy)


def _csv_paths(root: Path, csv) -> list[Path]:
    if csv is not None:
        items = [csv] if isinstance(csv, (str, Path)) else list(csv)
        return [Path(c) if Path(c).is_absolute() else root / c for c in items]
    found = _default_csvs(root)
    if not found:
        raise DatasetFormatError(
            f"{root}: no training.csv or validation.csv here or in Manually_Annotated_file_lists/, "
            f"and no train_set/images or val_set/images (AffectNet-8) (pass csv=)")
    return found


def _parse_row(fields: list, col: dict, img_dir: Path):
    """``(code, box, landmarks, image_path)`` of a csv row (only ``code`` for 8-10);
    ValueError with a reason for a bad row."""
    expr = fields[col["expression"]].strip()
    if not expr.lstrip("-").isdigit():
        raise ValueError(f"expression {expr!r} is not an integer")
    code = int(expr)
    if code in NOT_FACES:
        return code, None, None, None
    if code not in labels.AFFECTNET:
        raise ValueError(f"expression {code} is not an AffectNet code (0-10)")
    rel = fields[col["subDirectory_filePath"]].strip()
    if not rel:
        raise ValueError("empty subDirectory_filePath")
    try:
        box = tuple(int(round(float(fields[col[c]]))) for c in ("face_x", "face_y", "face_width", "face_height"))
    except ValueError:
        raise ValueError("face_x/face_y/face_width/face_height must be numbers") from None
    if box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"empty face box {box}")
    lmk = parse_landmarks(fields[col["facial_landmarks"]])
    image_path = img_dir / rel
    if not image_path.is_file():
        raise ValueError(f"image file {image_path} does not exist")
    return code, box, lmk, image_path


def _csv_records(path: Path, header: list, rows, root: Path, img_dir: Path,
                 policy: ErrorPolicy) -> Iterator[FaceRecord]:
    stem = path.stem.lower()
    split = next((s for k, s in CSV_SPLITS.items() if stem.startswith(k)), "")
    col = {c: header.index(c) for c in header}
    for n, fields in rows:
        source = f"{rel_source(path, root)}:row{n}"
        where = f"{path} row {n}"
        if not check_row_length(fields, header, where, source, policy):
            continue
        rel = fields[col["subDirectory_filePath"]].strip()
        if rel:
            source = rel_source(img_dir / rel, root)
        try:
            code, box, lmk, image_path = _parse_row(fields, col, img_dir)
        except ValueError as exc:
            policy.error(where, source, str(exc))
            continue
        if code in NOT_FACES:
            policy.skip(source, f"expression {code} ({NOT_FACES[code]})")
            continue
        extra = {"csv": path.name, "row": n}
        for c in ("valence", "arousal"):
            if c in col:
                try:
                    extra[c] = float(fields[col[c]])
                except ValueError:
                    pass
        yield FaceRecord(source=rel_source(image_path, root), label=labels.CLASS_INDEX[labels.AFFECTNET[code]],
                         subject="", split=split, path=image_path, landmarks=lmk, box=box, extra=extra)
