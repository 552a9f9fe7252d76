"""Summaries, verification and sample loading for shard folders."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import h5py
import numpy as np

from ..errors import ShardError
from ..labels import CLASSES
from .manifest import file_sha256, load_manifest
from .reader import read_images
from .schema import FIELDS, SCHEMA_VERSION, unpack_masks

REQUIRED = tuple(FIELDS)


def summarize(folder) -> dict:
    """Class / subject balance, size on disk, bytes per sample."""
    folder = Path(folder)
    m = load_manifest(folder)
    shards = m["shards"]
    n = sum(e["n"] for e in shards.values())
    nbytes = sum(e["bytes"] for e in shards.values())
    per_class, per_subject, lbp = Counter(), Counter(), set()
    for name in sorted(shards):
        with h5py.File(folder / name, "r") as f:
            lab = f["label"][:]
            for i, c in zip(*np.unique(lab, return_counts=True)):
                per_class[CLASSES[int(i)]] += int(c)
            subs = json.loads(f.attrs["subjects"])
            for i, c in zip(*np.unique(f["subject"][:], return_counts=True)):
                per_subject[subs[int(i)]] += int(c)
            if "lbp" in f:
                lbp |= set(f["lbp"].keys())
    return {
        "path": str(folder),
        "shards": f"{len(shards)} of {m['num_shards']} complete",
        "samples": f"{n} of {m['total_samples']}",
        "size": m["size"], "encoding": m["encoding"], "channels": m.get("channels", 3),
        "faces": m["face_store"]["faces"], "per_face": m["config"]["per_face"],
        "backgrounds": m["backgrounds"]["count"],
        "classes": m["classes"],
        "per_class": dict(per_class),
        "per_subject": dict(sorted(per_subject.items())),
        "bytes": nbytes,
        "bytes_per_sample": round(nbytes / n, 1) if n else None,
        "lbp": sorted(lbp),
        "config_hash": m["config_hash"],
    }


def verify(folder) -> dict:
    """Recompute every shard's sha256 and check counts, schema and attrs."""
    folder = Path(folder)
    m = load_manifest(folder)
    problems, ok, samples = [], 0, 0
    for name, e in sorted(m["shards"].items()):
        p = folder / name
        if not p.exists():
            problems.append((name, "listed in the manifest but missing"))
            continue
        if p.stat().st_size != e["bytes"]:
            problems.append((name, f"size {p.stat().st_size} != manifest {e['bytes']}"))
            continue
        if file_sha256(p) != e["sha256"]:
            problems.append((name, "sha256 differs from the manifest (corrupt or modified)"))
            continue
        try:
            with h5py.File(p, "r") as f:
                if int(f.attrs.get("schema_version", -1)) != SCHEMA_VERSION:
                    problems.append((name, f"schema_version {f.attrs.get('schema_version')}"))
                    continue
                missing = [d for d in REQUIRED if d not in f]
                if missing:
                    problems.append((name, f"missing datasets {missing}"))
                    continue
                n = e["n"]
                for d in REQUIRED:
                    if d != "image" and f[d].shape[0] != n:
                        problems.append((name, f"{d} has {f[d].shape[0]} rows, manifest says {n}"))
                if f.attrs.get("encoding") == "jpeg" and f["image_offsets"].shape[0] != n + 1:
                    problems.append((name, "image_offsets length != n+1"))
                for d in f.get("lbp", {}):
                    if f["lbp"][d].shape[0] != n:
                        problems.append((name, f"lbp/{d} has {f['lbp'][d].shape[0]} rows"))
                if int(f.attrs["first_sample"]) != e["first_sample"]:
                    problems.append((name, "first_sample differs from the manifest"))
        except OSError as exc:
            problems.append((name, f"unreadable HDF5 ({exc})"))
            continue
        ok += 1
        samples += e["n"]
    extra = sorted(p.name for p in folder.glob("shard-*.h5") if p.name not in m["shards"])
    for name in extra:
        problems.append((name, "shard file not listed in the manifest (incomplete run? rerun render to resume)"))
    return {"ok": ok, "problems": problems, "samples": samples}


def load_samples(folder, n: int, seed: int = 0) -> dict:
    """``n`` samples (random if seed >= 0, else the first n) for contact sheets."""
    folder = Path(folder)
    m = load_manifest(folder)
    names = sorted(m["shards"])
    if not names:
        raise ShardError(f"{folder}: no complete shard yet")
    sizes = [m["shards"][k]["n"] for k in names]
    total = sum(sizes)
    idx = np.arange(min(n, total)) if seed < 0 else np.sort(np.random.default_rng(seed).permutation(total)[:n])
    starts = np.cumsum([0] + sizes)
    out = {"image": [], "mask": [], "landmarks": [], "label": []}
    for s, name in enumerate(names):
        sel = idx[(idx >= starts[s]) & (idx < starts[s + 1])] - starts[s]
        if len(sel) == 0:
            continue
        with h5py.File(folder / name, "r") as f:
            size = int(f.attrs["size"])
            for j in sel:
                out["image"].append(read_images(f, int(j), int(j) + 1)[0])
            out["mask"].append(unpack_masks(f["mask"][np.sort(sel)], size))
            out["landmarks"].append(f["landmarks"][np.sort(sel)].astype(np.float32))
            out["label"].append(f["label"][np.sort(sel)])
    return {"image": np.stack(out["image"]), "mask": np.concatenate(out["mask"]),
            "landmarks": np.concatenate(out["landmarks"]), "label": np.concatenate(out["label"])}
