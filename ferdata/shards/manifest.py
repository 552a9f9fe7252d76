"""``manifest.json``: the record of which shards of a render are complete.

A shard is listed only after its file was written under a temporary name, fsynced
and renamed; the manifest itself is rewritten by tmp + ``os.replace`` under an
advisory lock, so concurrent array jobs (``render --shards a:b``) merge safely.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import ShardError
from ..atomic import file_lock, write_json_atomic

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


def _locked(folder: Path):
    """The manifest's lock (``manifest.json.lock``); take a shard's lock first, never after."""
    return file_lock(Path(folder) / MANIFEST)


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


def entry_problem(entry) -> str | None:
    """Why a manifest entry cannot be trusted (missing/mistyped n, bytes, sha256), or None."""
    if not isinstance(entry, dict):
        return "manifest entry is not an object"
    bad = [k for k, t in (("n", int), ("bytes", int), ("sha256", str)) if not isinstance(entry.get(k), t)]
    if bad:
        return f"manifest entry has no valid {', '.join(repr(k) for k in bad)} (edited by hand?)"
    return None


def folder_lbp(manifest: dict) -> list:
    """The LBP datasets every listed shard has (the folder-level ``lbp`` list)."""
    shards = manifest.get("shards") or {}
    sets = [set(e.get("lbp", [])) if isinstance(e, dict) else set() for e in shards.values()]
    return sorted(set.intersection(*sets)) if sets else []


def _write_atomic(folder: Path, manifest: dict) -> None:
    manifest["lbp"] = folder_lbp(manifest)
    write_json_atomic(Path(folder) / MANIFEST, manifest)


def _differences(old, new, prefix="") -> list[str]:
    """``key (folder X, now Y)`` for every leaf that differs between two JSON-able dicts."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            out.append(f"{prefix}{k} (folder {_short(a)}, now {_short(b)})")
    return out


def _short(v) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= 40 else s[:37] + "..."


def init_manifest(folder, header: dict, accept=None) -> dict:
    """Create the manifest with ``header`` (config, totals) or check it matches.

    ``header`` holds a ``config_hash`` (a hash of its ``identity``: what the samples
    depend on). A folder whose hash differs is refused with an error naming the keys
    that differ, unless ``accept(manifest)`` says the folder is the same render
    written by an older ferdata: then its header is upgraded in place.
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
        if m.get("config_hash") == header.get("config_hash"):
            return m
        if "identity" not in m and accept is not None and accept(m):
            m.update({k: v for k, v in header.items() if k not in ("shards", "schema_version")})
            _write_atomic(folder, m)
            return m
        old = m.get("identity") or {"config": m.get("config", {})}
        diff = _differences(old, header.get("identity", {})) or ["config_hash"]
        raise ShardError(
            f"{folder / MANIFEST}: this folder holds a render made with a different configuration "
            f"({'; '.join(diff[:8])}{'; ...' if len(diff) > 8 else ''}); "
            "use a new output folder, or the same options as that render to resume it")


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


def shard_lbp(path) -> list:
    """The ``lbp/...`` datasets in a shard file."""
    import h5py

    with h5py.File(path, "r") as f:
        return sorted(f"lbp/{k}" for k in f["lbp"].keys()) if "lbp" in f else []


def rewrite_shard_entry(folder, shard_filename: str) -> dict:
    """Accept a listed shard as it is now: recompute ``bytes``, ``sha256`` and ``lbp``."""
    folder = Path(folder)
    path = folder / shard_filename
    with _locked(folder):
        m = load_manifest(folder)
        if shard_filename not in m["shards"]:
            raise ShardError(f"{path}: not listed in {folder / MANIFEST}")
        e = m["shards"][shard_filename]
        e.update(bytes=path.stat().st_size, sha256=file_sha256(path), lbp=shard_lbp(path))
        e.pop("pending", None)
        _write_atomic(folder, m)
        return e


def set_entry_state(folder, shard_filename: str, expect_sha256: str, **fields) -> dict:
    """Update one entry's fields, only if its sha256 is still ``expect_sha256``.

    The caller holds the shard's lock (:func:`~ferdata.atomic.file_lock`);
    a ``pending`` field announces a file about to replace the listed one, so that a
    crash between the rename and the manifest update can be told from corruption.
    Fields set to None are removed.
    """
    folder = Path(folder)
    with _locked(folder):
        m = load_manifest(folder)
        e = m["shards"].get(shard_filename)
        if e is None or e.get("sha256") != expect_sha256:
            raise ShardError(f"{folder / shard_filename}: its manifest entry changed while it was being updated")
        for k, v in fields.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        _write_atomic(folder, m)
        return dict(e)


def complete_shards(folder, manifest: dict | None = None) -> dict:
    """Entries of shards listed in the manifest whose file exists with the listed size
    (or the size of its ``pending`` change)."""
    folder = Path(folder)
    m = manifest if manifest is not None else load_manifest(folder, required=False)
    if not m:
        return {}
    out = {}
    for name, e in m["shards"].items():
        p = folder / name
        if entry_problem(e) is not None or not p.exists():
            continue
        # a file matching ``pending`` is one an interrupted ``ferdata lbp`` renamed: done, not to remake
        if p.stat().st_size in (e["bytes"], (e.get("pending") or {}).get("bytes")):
            out[name] = e
    return out
