"""Summaries, verification and sample loading for shard folders."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import h5py
import numpy as np

from ..errors import ShardError
from ..labels import CLASSES
from .manifest import entry_problem, file_sha256, folder_lbp, load_manifest, shard_name
from .reader import read_images
from .schema import FIELDS, SCHEMA_VERSION, unpack_masks
from ..atomic import describe_temp, temp_files

REQUIRED = tuple(FIELDS)


def summarize(folder) -> dict:
    """Class / subject balance, size on disk, bytes per sample."""
    folder = Path(folder)
    m = load_manifest(folder)
    shards = m["shards"]
    for name, e in shards.items():
        why = entry_problem(e)
        if why:
            raise ShardError(f"{folder / name}: {why}; run `ferdata verify {folder}`")
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
        "renderer": m.get("renderer", "cpu"),
        "config_hash": m["config_hash"],
    }


def _check_file(f, e) -> list[str]:
    """Problems of one open shard against its manifest entry (schema, counts, LBP claims)."""
    if int(f.attrs.get("schema_version", -1)) != SCHEMA_VERSION:
        return [f"schema_version {f.attrs.get('schema_version')}"]
    missing = [d for d in REQUIRED if d not in f]
    if missing:
        return [f"missing datasets {missing}"]
    n, out = e["n"], []
    for d in REQUIRED:
        if d != "image" and f[d].shape[0] != n:
            out.append(f"{d} has {f[d].shape[0]} rows, manifest says {n}")
    if f.attrs.get("encoding") == "jpeg" and f["image_offsets"].shape[0] != n + 1:
        out.append("image_offsets length != n+1")
    for d in f.get("lbp", {}):
        if f["lbp"][d].shape[0] != n:
            out.append(f"lbp/{d} has {f['lbp'][d].shape[0]} rows")
    absent = [d for d in e.get("lbp", []) if d not in f]
    if absent:
        out.append(f"manifest says it holds {', '.join(absent)} but the file does not")
    if int(f.attrs["first_sample"]) != e.get("first_sample"):
        out.append("first_sample differs from the manifest")
    return out


def _check_shard(folder: Path, name: str, e) -> list[str]:
    p = folder / name
    why = entry_problem(e)
    if why:
        return [why]
    if not p.exists():
        return ["listed in the manifest but missing"]
    pending = e.get("pending")
    if p.stat().st_size != e["bytes"]:
        if pending and p.stat().st_size == pending.get("bytes") and file_sha256(p) == pending.get("sha256"):
            return ["changed by an interrupted `ferdata lbp` (manifest not updated); rerun it to finish"]
        return [f"size {p.stat().st_size} != manifest {e['bytes']}"]
    if file_sha256(p) != e["sha256"]:
        return ["sha256 differs from the manifest (corrupt or modified)"]
    try:
        with h5py.File(p, "r") as f:
            return _check_file(f, e)
    except (OSError, RuntimeError, KeyError) as exc:
        return [f"unreadable HDF5 ({exc})"]


def verify(folder, partial: bool = False) -> dict:
    """Recompute every shard's sha256 and check counts, schema, attrs and LBP claims.

    Also reported: shard files the manifest does not list, temporary files left by
    interrupted runs, a folder-level ``lbp`` list that claims more than every shard
    holds, and — unless ``partial`` (an array job's share, a render still running) — the
    shards an unfinished render has not made yet (``missing``).
    """
    folder = Path(folder)
    m = load_manifest(folder)
    problems, ok, samples = [], 0, 0
    for name, e in sorted(m["shards"].items()):
        found = _check_shard(folder, name, e)
        problems += [(name, why) for why in found]
        if not found:
            ok += 1
            samples += e["n"]
    extra = sorted(p.name for p in folder.glob("shard-*.h5") if p.name not in m["shards"])
    for name in extra:
        problems.append((name, "shard file not listed in the manifest (incomplete run? rerun render to resume)"))
    for p in temp_files(folder):
        problems.append((p.name, describe_temp(p)))
    over = sorted(set(m.get("lbp", [])) - set(folder_lbp(m)))
    if over:
        problems.append(("manifest.json", f"lbp lists {', '.join(over)}, which not every shard has"))
    n = int(m.get("num_shards") or 0)
    missing = [shard_name(k) for k in range(n) if shard_name(k) not in m["shards"]]
    if missing and not partial:
        shown = ", ".join(missing[:5]) + (f", … ({len(missing) - 5} more)" if len(missing) > 5 else "")
        problems.append(("manifest.json", f"unfinished render: {len(missing)} of {n} shards not made ({shown}); "
                                          "rerun render to finish it, or verify --partial"))
    return {"ok": ok, "problems": problems, "samples": samples, "missing": missing, "num_shards": n}


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
    out = {k: [] for k in ("image", "mask", "landmarks", "label", "index", "face_index", "subject")}
    for s, name in enumerate(names):
        sel = idx[(idx >= starts[s]) & (idx < starts[s + 1])] - starts[s]
        if len(sel) == 0:
            continue
        with h5py.File(folder / name, "r") as f:
            size = int(f.attrs["size"])
            for j in sel:
                out["image"].append(read_images(f, int(j), int(j) + 1)[0])
            out["mask"].append(unpack_masks(f["mask"][sel], size))
            out["landmarks"].append(f["landmarks"][sel].astype(np.float32))
            out["label"].append(f["label"][sel])
            # the render's global sample index, the source face and its subject (docs/shards.md)
            out["index"].append(int(f.attrs.get("first_sample", starts[s])) + sel)
            out["face_index"].append(f["face_index"][sel] if "face_index" in f else np.full(len(sel), -1))
            names_ = json.loads(f.attrs["subjects"]) if "subjects" in f.attrs else []
            ids = f["subject"][sel] if "subject" in f else np.full(len(sel), -1)
            out["subject"].append([names_[i] if 0 <= i < len(names_) else "" for i in ids.tolist()])
    res = {"image": np.stack(out["image"]), "mask": np.concatenate(out["mask"])}
    for k in ("landmarks", "label", "index", "face_index"):
        res[k] = np.concatenate(out[k])
    res["subject"] = [x for part in out["subject"] for x in part]
    return res
