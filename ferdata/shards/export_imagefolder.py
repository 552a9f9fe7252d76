"""``ferdata export --to imagefolder``: ``OUT/<split>/<class_name>/<key>.jpg`` + metadata.

Per split folder, ``metadata.jsonl`` has one row per image: ``file_name`` (relative to the
split folder, as Hugging Face's ``imagefolder`` loader expects), ``mask_path`` (relative
to OUT) and every other field. Masks are ``OUT/masks/<key>.png``, outside the class
folders (torchvision's ``ImageFolder`` would take them for images). Samples whose face
has no split (or no face store was found) go to ``OUT/all/``. Each shard's rows are kept
in ``OUT/.parts/<shard>.jsonl`` (written last: the shard is then complete); the
``metadata.jsonl`` files are rebuilt from all parts at the end of every run.
"""
from __future__ import annotations

import json
import re
from collections import deque
from concurrent.futures import wait
from pathlib import Path
from typing import Callable, Iterable

from ..atomic import atomic_write_bytes, atomic_write_text
from ..parallel import thread_pool
from ..signals import check

PARTS, MASKS, NO_SPLIT, METADATA = ".parts", "masks", "all", "metadata.jsonl"
THREADS = 8


def outputs(name: str) -> list[str]:
    """The file that marks shard ``name`` done (images and masks are listed in it)."""
    return [f"{PARTS}/{Path(name).stem}.jsonl"]


def split_folder(split) -> str:
    """A split name as a folder name: ``all`` when empty or unknown, unsafe characters as ``_``."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(split or "")).strip(".") or NO_SPLIT
    return name + "_split" if name in (MASKS, PARTS.strip(".")) else name


def _write_files(out: Path, folder: str, rel: str, s: dict) -> None:
    (out / folder / rel).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / folder / rel, s["image"])
    atomic_write_bytes(out / MASKS / f"{s['key']}.png", s["mask"])


def write_shard(name: str, samples: Iterable[dict], out: Path, tick: Callable[[int], None]) -> int:
    """Write shard ``name``'s images and masks (each atomically, on ``THREADS`` threads: most of
    the time is the fsync of each file), then its part file."""
    rows, pending = [], deque()
    (out / MASKS).mkdir(parents=True, exist_ok=True)
    pool = thread_pool(THREADS, "export-files")
    try:
        for s in samples:
            check(f"{name}, sample {s['key']}")
            meta = s["meta"]
            folder = split_folder(meta["split"])
            rel = f"{meta['class_name']}/{s['key']}.{s['image_ext']}"
            pending.append(pool.submit(_write_files, out, folder, rel, s))
            rows.append({"split_folder": folder, "file_name": rel, "mask_path": f"{MASKS}/{s['key']}.png", **meta})
            while len(pending) > 2 * THREADS or (pending and pending[0].done()):
                pending.popleft().result()
                tick(1)
        while pending:
            pending.popleft().result()
            tick(1)
    finally:  # an error or Ctrl-C: let the writes in flight finish (each is a whole file or none)
        wait(pending)
    (out / PARTS).mkdir(exist_ok=True)
    atomic_write_text(out / outputs(name)[0], "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows))
    return len(rows)


def finish(out: Path, shard_names: Iterable[str]) -> list[str]:
    """Rebuild ``OUT/<split>/metadata.jsonl`` from the parts of ``shard_names`` (in order)."""
    per_split: dict[str, list[str]] = {}
    for name in sorted(shard_names):
        part = out / outputs(name)[0]
        for line in part.read_text().splitlines():
            row = json.loads(line)
            folder = row.pop("split_folder")
            per_split.setdefault(folder, []).append(json.dumps(row, allow_nan=False) + "\n")
    for folder, lines in sorted(per_split.items()):
        path, text = out / folder / METADATA, "".join(lines)
        if not (path.is_file() and path.read_text() == text):  # a rerun with nothing new rewrites nothing
            atomic_write_text(path, text)
    return [f"{folder}/{METADATA}" for folder in sorted(per_split)]
