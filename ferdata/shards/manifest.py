"""``manifest.json``: the record of which shards of a render are complete.

A shard is listed only after its file was written under a temporary name, fsynced
and renamed; the manifest itself is rewritten by tmp + ``os.replace`` under an
advisory lock, so concurrent array jobs (``render --shards a:b``) merge safely.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from ..errors import ShardError

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1


def shard_name(k: int) -> str:
    return f"shard-{k:06d}.h5"


def file_sha256(path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(bufsize)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


@contextlib.contextmanager
def _locked(folder: Path):
    lock = Path(folder) / (MANIFEST + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl
            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - non-POSIX
            pass
        yield
    finally:
        os.close(fd)


def load_manifest(folder, required: bool = True) -> dict | None:
    """Read ``folder/manifest.json`` (None if absent and not ``required``)."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        if required:
            raise ShardError(f"{path}: no manifest (is {folder} a ferdata shard folder?)")
        return None
    try:
        with open(path) as f:
            m = json.load(f)
    except (OSError, ValueError) as exc:
        raise ShardError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(m, dict) or "shards" not in m:
        raise ShardError(f"{path}: not a ferdata manifest (no 'shards')")
    if m.get("schema_version") != SCHEMA_VERSION:
        raise ShardError(f"{path}: unknown manifest schema_version {m.get('schema_version')!r} "
                         f"(this ferdata reads {SCHEMA_VERSION})")
    return m


def _write_atomic(folder: Path, manifest: dict) -> None:
    path = Path(folder) / MANIFEST
    tmp = path.with_name(f"{MANIFEST}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def init_manifest(folder, header: dict) -> dict:
    """Create the manifest with ``header`` (config, totals) or check it matches.

    ``header`` must hold a ``config_hash``; a folder rendered with another
    configuration is refused with a clear error.
    """
    folder = Path(folder)
    with _locked(folder):
        m = load_manifest(folder, required=False)
        if m is None:
            m = dict(header)
            m["schema_version"] = SCHEMA_VERSION
            m["shards"] = {}
            _write_atomic(folder, m)
            return m
        if m.get("config_hash") != header.get("config_hash"):
            raise ShardError(
                f"{folder / MANIFEST}: this folder holds a render made with a different "
                f"configuration (config_hash {m.get('config_hash')} != {header.get('config_hash')}); "
                "use a new output folder or delete this one")
        return m


def record_shard(folder, name: str, entry: dict) -> None:
    """Add or replace the entry of one complete shard (merge under lock)."""
    folder = Path(folder)
    with _locked(folder):
        m = load_manifest(folder)
        m["shards"][name] = entry
        _write_atomic(folder, m)


def update_manifest(folder, **fields) -> None:
    """Set top-level manifest fields (e.g. the list of added LBP datasets)."""
    folder = Path(folder)
    with _locked(folder):
        m = load_manifest(folder)
        m.update(fields)
        _write_atomic(folder, m)


def rewrite_shard_entry(folder, shard_filename: str) -> dict:
    """Recompute ``bytes`` and ``sha256`` of one listed shard after it was changed."""
    folder = Path(folder)
    path = folder / shard_filename
    with _locked(folder):
        m = load_manifest(folder)
        if shard_filename not in m["shards"]:
            raise ShardError(f"{path}: not listed in {folder / MANIFEST}")
        e = m["shards"][shard_filename]
        e["bytes"] = path.stat().st_size
        e["sha256"] = file_sha256(path)
        _write_atomic(folder, m)
        return e


def complete_shards(folder, manifest: dict | None = None) -> dict:
    """Entries of shards listed in the manifest whose file exists with the listed size."""
    folder = Path(folder)
    m = manifest if manifest is not None else load_manifest(folder, required=False)
    if not m:
        return {}
    out = {}
    for name, e in m["shards"].items():
        p = folder / name
        if p.exists() and p.stat().st_size == e.get("bytes"):
            out[name] = e
    return out
