"""The samples of a shard as export records: stored image bytes, a PNG mask, and every field.

One record per sample (``ferdata export``, docs/export.md)::

    key          "000000012"  the render's global sample index, 9 digits (more if needed)
    image        bytes        the JPEG bytes as stored (jpeg shards), else a lossless PNG
    image_ext    "jpg" | "png"
    mask         bytes        PNG, 8-bit gray, 0 / 255
    meta         dict         JSON-able: index, label, class_name, subject, split, source,
                              face_index, sample, master_seed, landmarks, params, background,
                              bg_box, shard

``split`` and ``source`` live only in the face store the render was made from: without it
they are None. Landmarks the face store did not have (NaN) are None in ``meta``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import cv2
import h5py
import numpy as np

from ..errors import FerdataError
from ..labels import CLASSES
from .reader import shard_encoding
from .schema import unpack_masks

BLOCK = 256


@dataclass(frozen=True)
class FaceMeta:
    """``split`` and ``source`` of each face of the face store (None: store not available)."""

    path: Optional[str]
    split: Optional[list]
    source: Optional[list]
    subject: Optional[list]
    label: Optional[np.ndarray]


NO_FACES = FaceMeta(None, None, None, None, None)


def _strings(ds) -> list:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in ds[:]]


def find_face_store(src: Path, manifest: dict, faces=None) -> Optional[Path]:
    """``faces`` if given (must exist), else the store the manifest records, or one of that
    name beside or inside the render folder; None when none is found."""
    if faces is not None:
        p = Path(faces)
        if not p.is_file():
            raise FerdataError(f"{p}: --faces: no such face store")
        return p
    recorded = str((manifest.get("face_store") or {}).get("path") or "")
    if not recorded:
        return None
    name = Path(recorded).name
    for p in (Path(recorded), src / name, src.parent / name):
        if p.is_file():
            return p
    return None


def load_face_meta(path: Optional[Path], manifest: dict) -> FaceMeta:
    """Read split/source (and subject/label, to check each sample) from a face store."""
    if path is None:
        return NO_FACES
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("split", "source", "subject", "label") if k not in f]
            if missing:
                raise FerdataError(f"{path}: not a face store (no {', '.join(missing)})")
            meta = FaceMeta(str(path), _strings(f["split"]), _strings(f["source"]), _strings(f["subject"]),
                            f["label"][:].astype(np.int64))
    except OSError as exc:
        raise FerdataError(f"{path}: cannot read the face store ({exc})") from exc
    want = (manifest.get("face_store") or {}).get("faces")
    if want is not None and len(meta.split) != int(want):
        raise FerdataError(f"{path}: has {len(meta.split)} faces but the render was made from {want}: "
                           "not its face store (pass the right one with --faces)")
    return meta


def sample_key(index: int) -> str:
    return f"{int(index):09d}"


def _png(img: np.ndarray) -> bytes:
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3:
        img = img[..., 0]
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover
        raise FerdataError("PNG encoding failed")
    return buf.tobytes()


def _finite(values) -> list:
    return [None if math.isnan(v) else v for v in (float(x) for x in values)]


class _Block:
    """The fields of samples ``a:b`` of one open shard, read at once."""

    def __init__(self, f, a: int, b: int, size: int):
        self.label = f["label"][a:b]
        self.landmarks = f["landmarks"][a:b].astype(np.float32)
        self.face_index = f["face_index"][a:b]
        self.subject = f["subject"][a:b]
        self.params = f["params"][a:b]
        self.background = f["background"][a:b]
        self.bg_box = f["bg_box"][a:b]
        self.mask = unpack_masks(f["mask"][a:b], size)
        if shard_encoding(f) == "jpeg":
            off = f["image_offsets"][a:b + 1]
            blob = f["image"][off[0]:off[-1]].tobytes()
            self.images = [blob[x - off[0]:y - off[0]] for x, y in zip(off[:-1], off[1:])]
            self.ext = "jpg"
        elif shard_encoding(f) == "raw":
            self.images = [_png(im) for im in f["image"][a:b]]
            self.ext = "png"
        else:
            raise FerdataError(f"{f.filename}: unknown image encoding {shard_encoding(f)!r}")


def _attr_json(f, name: str):
    v = f.attrs.get(name, "[]")
    return json.loads(v.decode() if isinstance(v, bytes) else v)


def iter_samples(path, faces: FaceMeta = NO_FACES) -> Iterator[dict]:
    """The export records of shard ``path`` in order (read in blocks of 256)."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        n, size = int(f["label"].shape[0]), int(f.attrs["size"])
        subjects, names = _attr_json(f, "subjects"), _attr_json(f, "param_names")
        first, seed = int(f.attrs["first_sample"]), int(f.attrs.get("master_seed", 0))
        n_faces = int(f.attrs.get("n_faces", 0)) or None
        for a in range(0, n, BLOCK):
            blk = _Block(f, a, min(n, a + BLOCK), size)
            for j in range(len(blk.label)):
                yield _record(path, blk, j, first + a + j, subjects, names, seed, n_faces, faces)


def _record(path: Path, blk: _Block, j: int, index: int, subjects, names, seed, n_faces, faces: FaceMeta) -> dict:
    fi, label = int(blk.face_index[j]), int(blk.label[j])
    subject = subjects[int(blk.subject[j])] if 0 <= int(blk.subject[j]) < len(subjects) else None
    if faces.split is not None:
        if not (0 <= fi < len(faces.split)) or faces.subject[fi] != (subject or "") or int(faces.label[fi]) != label:
            raise FerdataError(f"{faces.path}: face {fi} does not match sample {index} of {path} (subject or "
                               "label differ): not the face store the render was made from; pass it with --faces")
    meta = {
        "index": index, "label": label, "class_name": CLASSES[label] if label < len(CLASSES) else None,
        "subject": subject,
        "split": faces.split[fi] if faces.split is not None else None,
        "source": faces.source[fi] if faces.source is not None else None,
        "face_index": fi, "sample": index // n_faces if n_faces else None, "master_seed": seed,
        "landmarks": _finite(blk.landmarks[j].reshape(-1)),
        "params": {k: float(v) for k, v in zip(names, blk.params[j])},
        "background": int(blk.background[j]), "bg_box": [int(v) for v in blk.bg_box[j]],
        "shard": path.name,
    }
    return {"key": sample_key(index), "image": blk.images[j], "image_ext": blk.ext,
            "mask": _png(blk.mask[j]), "meta": meta}
