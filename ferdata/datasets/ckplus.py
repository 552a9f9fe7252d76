"""CK+ (Extended Cohn-Kanade) reader.

Layout (the CK+ distribution, unzipped side by side)::

    ROOT/cohn-kanade-images/S005/001/S005_001_00000001.png ... S005_001_00000011.png
    ROOT/Emotion/S005/001/S005_001_00000011_emotion.txt      "   3.0000000e+00"
    ROOT/Landmarks/S005/001/S005_001_00000011_landmarks.txt  68 rows "   x   y"

Each sequence goes from a neutral face (first frame) to the peak expression (last
frame). Only sequences with an emotion file are labelled (327 of 593). Emotion
codes: 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise
(:data:`ferdata.labels.CKPLUS`). The last ``peak_frames`` frames take the label;
with ``include_neutral`` the first frame is a neutral sample. Subject = the
``Sxxx`` folder. CK+ defines no split (use subject-independent folds).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .. import labels
from ..errors import DatasetFormatError
from .base import IMAGE_EXTENSIONS, ErrorPolicy, FaceRecord, register_reader, rel_source

IMAGES_DIR = "cohn-kanade-images"
EMOTION_DIR = "Emotion"
LANDMARKS_DIR = "Landmarks"
_FRAME_RE = re.compile(r"_(\d+)$")


def read_emotion_file(path: Path) -> int:
    """The CK+ code (1..7) in an ``*_emotion.txt`` file; ValueError with a reason."""
    text = path.read_text(errors="replace").strip()
    if not text:
        raise ValueError("empty emotion file")
    try:
        value = float(text.split()[0])
    except ValueError:
        raise ValueError(f"not a number: {text[:30]!r}") from None
    if value != int(value) or int(value) not in labels.CKPLUS or int(value) == 0:
        raise ValueError(f"emotion code {value:g} is not a CK+ code (1-7)")
    return int(value)


def read_landmarks_file(path: Path, n_points: int = 68) -> np.ndarray:
    """A CK+ landmark file (``n_points`` rows of "x y") as (n_points, 2) float32."""
    try:
        values = np.array(path.read_text(errors="replace").split(), dtype=np.float64)
    except ValueError:
        raise ValueError("landmark values must be numbers") from None
    if values.size != 2 * n_points:
        raise ValueError(f"expected {n_points} landmark rows of 'x y', found {values.size} values")
    if not np.all(np.isfinite(values)):
        raise ValueError("landmark values must be finite")
    return values.reshape(n_points, 2).astype(np.float32)


def _frames(seq_dir: Path) -> list[Path]:
    files = [p for p in seq_dir.iterdir()
             if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    return sorted(files)


def _subdirs(folder: Path) -> list[Path]:
    """Sub-folders, without macOS debris (``__MACOSX``, ``._*``, hidden)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")


def _emotion_files(seq_dir: Path) -> list[Path]:
    """``*_emotion.txt`` files, without macOS ``._*`` resource forks."""
    return sorted(p for p in seq_dir.glob("*_emotion.txt") if p.is_file() and not p.name.startswith("."))


def _frame_number(path: Path) -> Optional[int]:
    m = _FRAME_RE.search(path.stem)
    return int(m.group(1)) if m else None


@register_reader("ckplus")
def read_ckplus(root, *, peak_frames: int = 1, include_neutral: bool = True,
                landmarks: bool = True, on_error: str = "raise",
                skipped: Optional[list] = None) -> Iterator[FaceRecord]:
    """Read the labelled CK+ sequences.

    Parameters
    ----------
    root : path
        Folder holding ``cohn-kanade-images/`` and ``Emotion/`` (``Landmarks/``
        optional: without it the records carry no landmarks).
    peak_frames : int
        The last ``peak_frames`` frames of each labelled sequence take its label
        (default 1: the peak frame only). At most ``len(frames) - 1`` are taken
        when ``include_neutral`` is set, so the first frame stays neutral.
    include_neutral : bool
        Also yield the first frame of each labelled sequence as ``neutral``.
    landmarks : bool
        Read ``Landmarks/.../*_landmarks.txt`` for each yielded frame (default True).
    on_error : {"raise", "skip"}
        An unreadable emotion / landmark file, or an emotion file without its
        image sequence, raises a DatasetFormatError naming the file, or is skipped
        and recorded.
    skipped : list, optional
        Receives ``(source, reason)`` for every skipped item.

    Yields
    ------
    FaceRecord
        ``path`` to the frame, ``subject="S005"``, ``split=""``, ``landmarks``
        (68, 2) float32 when available, ``extra={"sequence", "frame", "role"}``
        with role ``"peak"`` or ``"neutral"``. macOS debris (``._*`` files,
        ``__MACOSX/``) is ignored, not even listed as skipped.
    """
    policy = ErrorPolicy(on_error, skipped)
    if isinstance(peak_frames, bool) or not isinstance(peak_frames, (int, np.integer)) or peak_frames < 1:
        raise DatasetFormatError(f"peak_frames={peak_frames!r}: expected an integer >= 1")
    root = Path(root)
    if not root.exists():
        raise DatasetFormatError(f"{root}: CK+ folder does not exist")
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: expected the CK+ folder, found a file")
    img_root, emo_root = root / IMAGES_DIR, root / EMOTION_DIR
    lmk_root = root / LANDMARKS_DIR
    for sub in (img_root, emo_root):
        if not sub.is_dir():
            raise DatasetFormatError(
                f"{root}: not a CK+ folder: missing {sub.name}/ "
                f"(expected {IMAGES_DIR}/, {EMOTION_DIR}/ and optionally {LANDMARKS_DIR}/)")
    use_landmarks = bool(landmarks) and lmk_root.is_dir()
    neutral = labels.CLASS_INDEX["neutral"]

    for subj_dir in _subdirs(emo_root):
        for seq_dir in _subdirs(subj_dir):
            emo_files = _emotion_files(seq_dir)
            if not emo_files:
                continue  # unlabelled sequence
            emo_file = emo_files[-1]
            esrc = rel_source(emo_file, root)
            if len(emo_files) > 1:
                policy.error(str(seq_dir), esrc, f"{len(emo_files)} emotion files in one sequence")
                continue
            try:
                code = read_emotion_file(emo_file)
            except ValueError as exc:
                policy.error(str(emo_file), esrc, str(exc))
                continue
            frame_dir = img_root / subj_dir.name / seq_dir.name
            frames = _frames(frame_dir) if frame_dir.is_dir() else []
            if not frames:
                policy.error(str(emo_file), esrc,
                             f"labelled sequence has no images in {rel_source(frame_dir, root)}/")
                continue
            label = labels.CLASS_INDEX[labels.CKPLUS[code]]
            n = len(frames)
            with_neutral = bool(include_neutral) and n > 1
            k = min(int(peak_frames), n - 1 if with_neutral else n)
            chosen = [(frames[0], neutral, "neutral")] if with_neutral else []
            chosen += [(f, label, "peak") for f in frames[n - k:]]
            for frame, lab, role in chosen:
                source = rel_source(frame, root)
                lmk = None
                if use_landmarks:
                    lpath = lmk_root / subj_dir.name / seq_dir.name / f"{frame.stem}_landmarks.txt"
                    if lpath.is_file():
                        try:
                            lmk = read_landmarks_file(lpath)
                        except ValueError as exc:
                            policy.error(str(lpath), source, str(exc))
                            continue
                yield FaceRecord(
                    source=source,
                    label=lab,
                    subject=subj_dir.name,
                    split="",
                    path=frame,
                    landmarks=lmk,
                    extra={"sequence": seq_dir.name, "frame": _frame_number(frame), "role": role,
                           "ckplus_code": code if role == "peak" else 0},
                )
