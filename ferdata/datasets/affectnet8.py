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

Checked before the first record: ``train_set/images`` and ``val_set/images``
exist and hold images (``test_set/`` is optional), and every ``N_exp.npy`` has
its image ``images/N.*``. A failure is a bad item naming the folder or file:
raised, or with ``on_error="skip"`` recorded in ``skipped`` (the rest is read).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .. import labels
from .base import IMAGE_EXTENSIONS, ErrorPolicy, FaceRecord, rel_source

SET_SPLITS = {"train_set": "train", "val_set": "val", "test_set": "test"}
#: The sets of the published release: a missing or empty one is an error (test_set is optional).
REQUIRED_SETS = ("train_set", "val_set")
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


def _set_images(root: Path, set_name: str, policy: ErrorPolicy) -> Optional[list[Path]]:
    """The sorted images of ``set_name``; None (reported) when a published set has none."""
    img_dir = root / set_name / "images"
    images = sorted((p for p in img_dir.iterdir()
                     if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")),
                    key=lambda p: (len(p.stem), p.stem)) if img_dir.is_dir() else []
    if images or (set_name not in REQUIRED_SETS and not img_dir.is_dir()):
        return images
    what = "holds no images" if img_dir.is_dir() else "does not exist"
    policy.error(str(img_dir), rel_source(img_dir, root),
                 f"AffectNet-8 {set_name}/images {what}; the {SET_SPLITS[set_name]} split would be missing")
    return None


def _orphan_annotations(root: Path, set_name: str, images: list[Path], policy: ErrorPolicy) -> None:
    """Report every ``N_exp.npy`` of ``set_name`` whose image ``images/N.*`` is not there."""
    ann = root / set_name / "annotations"
    if not ann.is_dir():
        return
    stems = {p.stem for p in images}
    orphans = sorted((p for p in ann.glob("*_exp.npy")
                      if not p.name.startswith(".") and p.name[:-len("_exp.npy")] not in stems),
                     key=lambda p: (len(p.name), p.name))
    for p in orphans:
        policy.error(str(p), rel_source(p, root),
                     f"annotation without its image: no {set_name}/images/{p.name[:-len('_exp.npy')]}.* file")


def read_affectnet8(root: Path, policy: ErrorPolicy) -> Iterator[FaceRecord]:
    """Records of every ``*_set/images`` folder under ``root`` (see the module doc).

    Checked before the first record: ``train_set/images`` and ``val_set/images``
    must hold images, and every ``annotations/N_exp.npy`` must have its image; each
    failure is a bad item (raised, or recorded in ``skipped``; an empty set is then
    left out)."""
    sets = []
    for set_name, split in SET_SPLITS.items():
        images = _set_images(root, set_name, policy)
        if images is None:
            continue
        _orphan_annotations(root, set_name, images, policy)
        sets.append((set_name, split, images))
    for set_name, split, images in sets:
        yield from _set_records(root, root / set_name / "annotations", split, images, policy)


def _set_records(root: Path, ann: Path, split: str, images: list[Path],
                 policy: ErrorPolicy) -> Iterator[FaceRecord]:
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
