"""FER+ reader: ``fer2013new.csv`` vote counts joined row by row with ``fer2013.csv``.

Layout (Microsoft FERPlus)::

    fer2013new.csv  Usage,Image name,neutral,happiness,surprise,sadness,anger,
                    disgust,fear,contempt,unknown,NF
                    Training,fer0000000.png,4,0,0,1,3,2,0,0,0,0
    fer2013.csv     the FER2013 file: row k of fer2013new.csv is row k of fer2013.csv

The 2016 ``fer2013new.csv`` (before Microsoft added ``Image name`` in 2017) is
read too: ``Usage,neutral,...,NF``; its rows whose 10 votes are all ``NF`` are the
faces the 2017 file leaves unnamed (not a face), skipped and recorded.

Or Microsoft's image layout (the FERPlus checkout after ``generate_training_data.py``)::

    data/FER2013Train/label.csv   no header: fer0000000.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0
    data/FER2013Train/fer0000000.png ...   (FER2013Valid -> val, FER2013Test -> test)

Each face has 10 crowd votes. The label follows ``label_mode``
(:mod:`ferdata.datasets.ferplus_labels`): by default Microsoft's majority rule
(drop single votes; a class needs more than half of the remaining votes), the
rule behind published FER+ results. With ``label_mode="probability"`` only the
train split takes the probability target: val and test take the majority rule,
as Microsoft's ``train.py`` evaluates them. Faces without a label (unknown, not
a face, no majority) and rows with an empty ``Image name`` are skipped and
recorded. ``votes`` is the distribution over the eight emotion columns
(canonical order), float32.

Which file was read is logged (``logging.info``) and kept in every record:
``extra["layout"]`` (``csv`` / ``images``) and ``extra["labels_file"]``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from .. import labels
from ..errors import DatasetFormatError
from .base import ErrorPolicy, FaceRecord, check_row_length, csv_rows, register_reader, rel_source
from .fer2013 import check_splits, locate_csv, parse_pixels, parse_usage
from .ferplus_labels import LABEL_MODES, TIES, VOTE_COLUMNS, label_votes

log = logging.getLogger(__name__)

CSV_NAME = "fer2013new.csv"
COLUMNS = ("Usage", "Image name") + VOTE_COLUMNS
#: The columns every fer2013new.csv has: the 2016 release has no ``Image name``.
REQUIRED = ("Usage",) + VOTE_COLUMNS
#: Microsoft's image layout: split folder -> ferdata split.
IMAGE_SPLITS = {"FER2013Train": "train", "FER2013Valid": "val", "FER2013Test": "test"}
LAYOUTS = ("auto", "csv", "images")


def _count_rows(path: Path) -> int:
    """Non-blank lines after the header (the files have no quoted newlines)."""
    n = 0
    with open(path, "rb") as f:
        next(f, None)
        for line in f:
            if line.strip():
                n += 1
    return n


def parse_votes(values) -> np.ndarray:
    """10 vote strings -> float64 counts; ValueError with a reason."""
    try:
        counts = np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        raise ValueError("vote counts must be numbers: " + ",".join(v.strip() for v in values)) from None
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ValueError("vote counts must be non-negative")
    return counts


def image_data_dir(root: Path) -> Optional[Path]:
    """The folder holding ``FER2013Train/`` etc.: ``root/data`` or ``root`` itself."""
    for d in (root / "data", root):
        if d.is_dir() and any((d / s / "label.csv").is_file() for s in IMAGE_SPLITS):
            return d
    return None


def _has_pngs(data: Path) -> bool:
    return any(next(iter((data / s).glob("*.png")), None) is not None
               for s in IMAGE_SPLITS if (data / s).is_dir())


def resolve_layout(root, layout: str) -> tuple[str, Path]:
    """``("csv", fer2013new.csv)`` or ``("images", data folder)`` for ``root``."""
    if layout not in LAYOUTS:
        raise DatasetFormatError(f"layout={layout!r}: expected one of {', '.join(LAYOUTS)}")
    root = Path(root)
    if root.is_file() or layout == "csv":
        return "csv", locate_csv(root, CSV_NAME, "FER+")
    if not root.exists():
        raise DatasetFormatError(f"{root}: FER+ folder or csv file does not exist")
    data = image_data_dir(root)
    if data is not None and (layout == "images" or _has_pngs(data) or not (root / CSV_NAME).is_file()):
        return "images", data
    if layout == "images":
        raise DatasetFormatError(f"{root}: no data/FER2013Train/label.csv (or FER2013Valid, FER2013Test) here")
    if not (root / CSV_NAME).is_file():
        raise DatasetFormatError(f"{root}: neither {CSV_NAME} nor Microsoft's image layout "
                                 f"data/FER2013Train/label.csv here (pass the csv file or its folder)")
    return "csv", root / CSV_NAME


def split_label_mode(mode: str, split: str) -> str:
    """The rule that labels a face of ``split``: ``probability`` is a training target
    only; val and test take ``majority``, as Microsoft's ``train.py`` reads them."""
    return "majority" if mode == "probability" and split != "train" else mode


def _record(label, votes, counts, split, source, mode, **kw) -> FaceRecord:
    extra = kw.pop("extra")
    extra.update(n_votes=int(counts.sum()), label_mode=mode)
    return FaceRecord(source=source, label=labels.CLASS_INDEX[labels.FERPLUS_COLUMNS[label]],
                      subject="", split=split, aligned=True, votes=votes, extra=extra, **kw)


def _log_layout(kind: str, path: Path, root: Path, layout: str) -> None:
    if kind == "csv":
        log.info("FER+: reading the votes of %s (csv layout)", path)
        return
    beside = next((c for c in (root / CSV_NAME, root.parent / CSV_NAME) if c.is_file()), None)
    note = (f"; {beside} is not read: layout=auto prefers the PNGs and their label.csv files, whose votes "
            f"differ from it for some faces; pass layout=csv to read it" if beside is not None and layout == "auto"
            else "")
    log.info("FER+: reading the votes of %s/FER2013{Train,Valid,Test}/label.csv (image layout%s)", path, note)


def _check_options(label_mode: str, tie: str) -> None:
    if label_mode not in LABEL_MODES:
        raise DatasetFormatError(f"label_mode={label_mode!r}: expected one of {', '.join(LABEL_MODES)}")
    if tie not in TIES:
        raise DatasetFormatError(f"tie={tie!r}: expected one of {', '.join(TIES)}")


@register_reader("ferplus")
def read_ferplus(root, *, label_mode: str = "majority", tie: str = "skip", fer2013_csv=None,
                 layout: str = "auto", splits: Optional[Iterable[str]] = None, on_error: str = "raise",
                 skipped: Optional[list] = None) -> Iterator[FaceRecord]:
    """Read FER+ labels: ``fer2013new.csv`` + FER2013 pixels, or Microsoft's image layout.

    Parameters
    ----------
    root : path
        ``fer2013new.csv`` or the folder holding it; or the FERPlus checkout
        holding ``data/FER2013Train/label.csv`` + PNGs (or ``data/`` itself).
    label_mode : {"majority", "plurality", "probability"}
        How votes become a label (:mod:`ferdata.datasets.ferplus_labels`);
        ``majority`` is Microsoft's rule behind published FER+ results.
        ``probability`` applies to the train split only: val and test faces
        take the majority rule (faces without a majority are skipped there), as
        Microsoft's FERPlus ``train.py`` reads its validation and test sets;
        ``extra["label_mode"]`` names the rule each face got.
    tie : {"skip", "first"}
        ``plurality`` only: what to do when two columns share the highest count.
    fer2013_csv : path, optional
        The FER2013 csv with the pixels (default: ``fer2013.csv`` beside
        ``fer2013new.csv``); csv layout only.
    layout : {"auto", "csv", "images"}
        ``auto`` takes the image layout when ``data/FER2013*/`` holds PNGs (or
        there is no ``fer2013new.csv``), else the csv layout. The label.csv files
        of the image layout differ from ``fer2013new.csv`` for some faces: the
        choice is logged and kept in ``extra["layout"]``, ``extra["labels_file"]``.
    splits : iterable of {"train", "val", "test"}, optional
        Keep only these splits (Usage Training/PublicTest/PrivateTest, or the
        folders FER2013Train/FER2013Valid/FER2013Test).
    on_error : {"raise", "skip"}
        A bad row (non-numeric votes, bad pixels, unknown Usage, missing PNG)
        raises a DatasetFormatError naming the file and row, or is skipped. In
        the image layout a missing or empty ``label.csv`` of a kept split is an
        error naming it, raised before any record (with ``"skip"``: recorded and
        the other splits read).
    skipped : list, optional
        Receives ``(source, reason)`` for skipped rows, including rows left out by
        design (no image name, unknown / not-a-face / no majority).

    Yields
    ------
    FaceRecord
        ``aligned=True``, ``votes`` (8,) float32 summing to 1 (the emotion vote
        distribution; Microsoft's filtered target with ``probability`` on the
        train split), ``extra["image_name"]`` (``""`` with the 2016 csv),
        ``extra["layout"]``, ``extra["labels_file"]``. csv layout: ``image``
        (48, 48) uint8 and ``source="fer2013new.csv:row<N>"``; image layout:
        ``path`` and ``source`` the PNG's path relative to ``root``.
    """
    policy = ErrorPolicy(on_error, skipped)
    _check_options(label_mode, tie)
    keep = check_splits(splits)
    kind, path = resolve_layout(root, layout)
    _log_layout(kind, path, Path(root), layout)
    if kind == "images":
        yield from _read_images(Path(root), path, label_mode, tie, keep, policy)
    else:
        yield from _read_csv(path, fer2013_csv, label_mode, tie, keep, policy)


def _open_csv_pair(path: Path, fer2013_csv):
    """``(header, rows, pixel csv path, pixel header, pixel rows)``, the row counts checked."""
    if fer2013_csv is None:
        pix_path = path.parent / "fer2013.csv"
        if not pix_path.is_file():
            raise DatasetFormatError(
                f"{pix_path}: FER2013 pixel file not found beside {path.name} "
                f"(put fer2013.csv there or pass fer2013_csv=)")
    else:
        pix_path = locate_csv(fer2013_csv, "fer2013.csv", "FER2013")
    header, rows = csv_rows(path, REQUIRED, "FER+")
    pix_header, pix_rows = csv_rows(pix_path, ("pixels",), "FER2013")
    n_plus, n_pix = _count_rows(path), _count_rows(pix_path)
    if n_plus != n_pix:
        raise DatasetFormatError(
            f"{path}: {n_plus} rows but {pix_path} has {n_pix}; the two files must align row by row")
    if "Image name" not in header:
        log.info("FER+: %s is the 2016 release (no Image name column): rows with all 10 votes NF "
                 "are the not-a-face rows", path)
    return header, rows, pix_path, pix_header, pix_rows


def _all_nf(vote_fields) -> bool:
    try:
        counts = parse_votes(vote_fields)
    except ValueError:
        return False  # reported as a bad row by _voted_label
    return counts[-1] > 0 and not counts[:-1].any()


def _read_csv(path: Path, fer2013_csv, mode, tie, keep, policy) -> Iterator[FaceRecord]:
    header, rows, pix_path, pix_header, pix_rows = _open_csv_pair(path, fer2013_csv)
    i_use, i_pix = header.index("Usage"), pix_header.index("pixels")
    i_name = header.index("Image name") if "Image name" in header else None
    i_votes = [header.index(c) for c in VOTE_COLUMNS]
    for (n, fields), (_m, pfields) in zip(rows, pix_rows):
        source, where = f"{path.name}:row{n}", f"{path} row {n}"
        if not check_row_length(fields, header, where, source, policy):
            continue
        name = fields[i_name].strip() if i_name is not None else ""
        vote_fields = [fields[i] for i in i_votes]
        try:
            split = parse_usage(fields[i_use])
        except ValueError as exc:
            policy.error(where, source, str(exc))
            continue
        if keep is not None and split not in keep:
            continue
        if i_name is not None and not name:
            policy.skip(source, "no image name (face dropped by FER+)")
            continue
        if i_name is None and _all_nf(vote_fields):
            policy.skip(source, "all 10 votes NF (not a face; dropped by FER+)")
            continue
        split_mode = split_label_mode(mode, split)
        voted = _voted_label(vote_fields, split_mode, tie, where, source, policy)
        if voted is None:
            continue
        pwhere = f"{pix_path} row {n}"
        if not check_row_length(pfields, pix_header, pwhere, source, policy):
            continue
        try:
            image = parse_pixels(pfields[i_pix])
        except ValueError as exc:
            policy.error(pwhere, source, str(exc))
            continue
        yield _record(*voted, split, source, split_mode, image=image,
                      extra={"image_name": name, "usage": fields[i_use].strip(),
                             "layout": "csv", "labels_file": path.name})


def _voted_label(vote_fields, mode, tie, where, source, policy):
    """``(label, votes, counts)`` of one row's 10 vote fields, or None when the row is
    skipped (no label under ``mode``) or bad (reported through ``policy``). Both layouts."""
    try:
        counts = parse_votes(vote_fields)
    except ValueError as exc:
        policy.error(where, source, str(exc))
        return None
    label, votes, reason = label_votes(counts, mode, tie)
    if label is None:
        policy.skip(source, reason)
        return None
    return label, votes, counts


def _has_rows(path: Path) -> bool:
    with open(path, "rb") as f:
        return any(line.strip().lstrip(b"\xef\xbb\xbf").strip(b" \t\r\n,") for line in f)


def _label_files(root: Path, data: Path, keep, policy) -> list[tuple[str, str, Path]]:
    """``(folder, split, label.csv)`` of every kept split, checked before any record: a
    missing or empty ``label.csv`` is an error naming it (with ``on_error="skip"``:
    recorded, and that split left out)."""
    out = []
    for folder, split in IMAGE_SPLITS.items():
        if keep is not None and split not in keep:
            continue
        lst = data / folder / "label.csv"
        if not lst.is_file():
            reason = f"FER+ label file of the {split} split does not exist"
        elif not _has_rows(lst):
            reason = f"FER+ label file of the {split} split is empty"
        else:
            out.append((folder, split, lst))
            continue
        policy.error(str(lst), rel_source(lst, root), f"{reason} (Microsoft's image layout: "
                                                      f"{', '.join(f'{d}/label.csv' for d in IMAGE_SPLITS)})")
    return out


def _read_images(root: Path, data: Path, mode, tie, keep, policy) -> Iterator[FaceRecord]:
    for folder, split, lst in _label_files(root, data, keep, policy):
        yield from _read_label_csv(root, data / folder, split, lst, split_label_mode(mode, split), tie, policy)


def _read_label_csv(root: Path, folder: Path, split: str, lst: Path, mode, tie, policy) -> Iterator[FaceRecord]:
    import csv

    lsrc = rel_source(lst, root)
    with open(lst, newline="", encoding="utf-8-sig") as f:
        for n, fields in enumerate((r for r in csv.reader(f) if any(x.strip() for x in r)), 1):
            where = f"{lst} row {n}"
            name = fields[0].strip() if fields else ""
            image_path = folder / name
            source = rel_source(image_path, root) if name else f"{lsrc}:row{n}"
            if len(fields) != 2 + len(VOTE_COLUMNS):
                policy.error(where, source, f"expected {2 + len(VOTE_COLUMNS)} fields "
                                            f"(image name, face box, 10 votes), found {len(fields)}")
                continue
            voted = _voted_label(fields[2:], mode, tie, where, source, policy)
            if voted is None:
                continue
            if not image_path.is_file():
                policy.error(where, source, f"image file {image_path} does not exist "
                                            f"(run FERPlus's generate_training_data.py)")
                continue
            yield _record(*voted, split, source, mode, path=image_path,
                          extra={"image_name": name, "box": fields[1].strip(),
                                 "layout": "images", "labels_file": lsrc})
