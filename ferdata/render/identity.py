"""What a render depends on, by content: the resume identity of a shard folder.

Two invocations may resume each other's folder exactly when their identity is the
same: the face store's *content* (its datasets, not its path, and not the ``lbp/*``
datasets ``ferdata lbp`` may add to it), the background ids and the resolved
configuration. Paths are recorded in the manifest for information only.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..config import config_hash
from ..errors import FerdataError

FACE_STORE_DATASETS = ("image", "mask", "landmarks", "label", "subject", "source", "split")
_BLOCK_BYTES = 64 << 20


def _hash_dataset(h, name: str, ds) -> None:
    h.update(f"{name}|{ds.dtype.str if ds.dtype.kind != 'O' else 'str'}|{ds.shape}|".encode())
    if ds.shape == ():
        h.update(np.asarray(ds[()]).tobytes())
        return
    n = ds.shape[0]
    row = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * max(1, ds.dtype.itemsize))
    step = max(1, _BLOCK_BYTES // row)
    for a in range(0, n, step):
        block = ds[a:a + step]
        if block.dtype.kind == "O":  # variable-length strings
            for v in block.ravel():
                b = v if isinstance(v, bytes) else str(v).encode()
                h.update(len(b).to_bytes(8, "little") + b)
        else:
            h.update(np.ascontiguousarray(block).tobytes())


def face_store_hash(path) -> str:
    """sha256 over the face store's datasets image, mask, landmarks, label, subject,
    source and split (names, dtypes, shapes and values; ``lbp/*`` and attrs excluded)."""
    import h5py

    path = Path(path)
    h = hashlib.sha256()
    try:
        with h5py.File(path, "r") as f:
            for name in FACE_STORE_DATASETS:
                if name in f:
                    _hash_dataset(h, name, f[name])
                else:
                    h.update(f"{name}|absent|".encode())
    except OSError as exc:
        raise FerdataError(f"{path}: cannot read the face store ({exc})") from exc
    return h.hexdigest()


def render_identity(cfg: dict, face_store_sha256: str, background_ids_sha256: str) -> dict:
    """The dict a render folder's ``config_hash`` is the hash of."""
    return {"config": cfg, "face_store_sha256": face_store_sha256,
            "background_ids_sha256": background_ids_sha256}


def identity_hash(identity: dict) -> str:
    return config_hash(identity)


def legacy_matches(manifest: dict, identity: dict, faces_path) -> bool:
    """True if a manifest written before content identities describes the same render.

    Such a manifest stores the face store's *file* sha256; it is accepted when the
    configuration and background ids are the same and the face store file still has
    that sha256 (so a folder from an older ferdata resumes once and is upgraded).
    """
    from ..shards.manifest import file_sha256

    fs, bg = manifest.get("face_store") or {}, manifest.get("backgrounds") or {}
    if json.dumps(manifest.get("config"), sort_keys=True) != json.dumps(identity["config"], sort_keys=True):
        return False
    if bg.get("ids_sha256") != identity["background_ids_sha256"] or not fs.get("sha256"):
        return False
    return file_sha256(faces_path) == fs["sha256"]
