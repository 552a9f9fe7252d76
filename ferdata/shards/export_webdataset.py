"""``ferdata export --to webdataset``: one tar per shard, written with :mod:`tarfile`.

``OUT/shard-000000.tar`` holds, per sample, ``<key>.jpg`` (or ``.png``), ``<key>.cls``
(the label as decimal text), ``<key>.json`` (every other field) and ``<key>.mask.png``;
``webdataset.WebDataset(urls).decode()`` reads it back (docs/export.md).
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Callable, Iterable

from ..atomic import atomic_write
from ..signals import check

EXT = ".tar"


def outputs(name: str) -> list[str]:
    """The files shard ``name`` (``shard-000000.h5``) becomes, relative to OUT."""
    return [Path(name).stem + EXT]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def write_shard(name: str, samples: Iterable[dict], out: Path, tick: Callable[[int], None]) -> int:
    """Write shard ``name``'s samples to its tar (atomically); returns the count."""
    done = [0]

    def write(fh):
        with tarfile.open(fileobj=fh, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for s in samples:
                check(f"{name}, sample {s['key']}")
                k, meta = s["key"], s["meta"]
                _add(tar, f"{k}.{s['image_ext']}", s["image"])
                _add(tar, f"{k}.cls", str(meta["label"]).encode())
                _add(tar, f"{k}.json", json.dumps(meta, allow_nan=False).encode())
                _add(tar, f"{k}.mask.png", s["mask"])
                done[0] += 1
                tick(1)

    atomic_write(out / outputs(name)[0], write)
    return done[0]
