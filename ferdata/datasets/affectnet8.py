"""AffectNet-8: the current AffectNet release, one ``.npy`` file per annotation.

Layout (ROOT = the folder holding ``train_set/`` and ``val_set/``)::

    ROOT/train_set/images/0.jpg
    ROOT/train_set/annotations/0_exp.npy   expression code, e.g. array('3', dtype='<U1')
    ROOT/train_set/annotations/0_lnd.npy   136 values x1,y1,...,x68,y68
    ROOT/train_set/annotations/0_val.npy   valence
    ROOT/train_set/annotations/0_aro.npy   arousal
    ROOT/val_set/...                       the same (split "val"); test_set/ -> "test"

Expression codes are AffectNet's (0 neutral 1 happy 2 sad 3 surprise 4 fear
5 disgust 6 anger 7 contempt; 8-10 none / uncertain / non-face are skipped).
Images are already face crops; the landmarks are used for alignment. No
subject ids (``subject=""``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .. import labels
from .base import IMAGE_EXTENSIONS, ErrorPolicy, FaceRecord, rel_source

SET_SPLITS = {"train_set": "train", "val_set": "val", "test_set": "test"}
NOT_FACES = {8: "none", 9: "uncertain", 10: "non-face"}


def is_affectnet8(root: Path) -> bool:
    return any((root / s / "images").is_dir() for s in SET_SPLITS)


def _load_value(path: Path) -> np.ndarray:
    """An annotation ``.npy`` (numbers or numeric strings) as float64."""
    if not path.is_file():
        raise ValueError(f"annotation file {path.name} does not exist")
    try:
        arr = np.load(path, allow_pickle=False)
        return np.asarray(arr).astype(np.float64).ravel()
    except (ValueError, OSError, TypeError) as exc:
        raise ValueError(f"{path.name}: not a numeric .npy file ({exc})") from None


def _code(ann: Path, stem: str) -> int:
    v = _load_value(ann / f"{stem}_exp.npy")
    if v.size != 1 or v[0] != int(v[0]):
        raise ValueError(f"{stem}_exp.npy: expected one integer expression code, found {v[:4].tolist()}")
    return int(v[0])


def _landmarks(ann: Path, stem: str) -> Optional[np.ndarray]:
    p = ann / f"{stem}_lnd.npy"
    if not p.is_file():
        return None
    v = _load_value(p)
    if v.size != 136 or not np.all(np.isfinite(v)):
        raise ValueError(f"{stem}_lnd.npy: expected 136 finite values (68 points), found {v.size}")
    return v.reshape(68, 2).astype(np.float32)


def read_affectnet8(root: Path, policy: ErrorPolicy) -> Iterator[FaceRecord]:
    """Records of every ``*_set/images`` folder under ``root`` (see the module doc)."""
    for set_name, split in SET_SPLITS.items():
        img_dir, ann = root / set_name / "images", root / set_name / "annotations"
        if not img_dir.is_dir():
            continue
        images = sorted((p for p in img_dir.iterdir()
                         if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")),
                        key=lambda p: (len(p.stem), p.stem))
        for path in images:
            source = rel_source(path, root)
            try:
                code = _code(ann, path.stem)
                if code in NOT_FACES:
                    policy.skip(source, f"expression {code} ({NOT_FACES[code]})")
                    continue
                if code not in labels.AFFECTNET:
                    raise ValueError(f"expression {code} is not an AffectNet code (0-10)")
                lmk = _landmarks(ann, path.stem)
                extra = {"expression": code}
                for key in ("val", "aro"):
                    p = ann / f"{path.stem}_{key}.npy"
                    if p.is_file():
                        extra["valence" if key == "val" else "arousal"] = float(_load_value(p)[0])
            except ValueError as exc:
                policy.error(str(path), source, str(exc))
                continue
            yield FaceRecord(source=source, label=labels.CLASS_INDEX[labels.AFFECTNET[code]],
                             subject="", split=split, path=path, landmarks=lmk, extra=extra)
