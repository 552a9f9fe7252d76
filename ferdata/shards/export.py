"""``ferdata export``: a render's shards as WebDataset tars, an image folder or Parquet files.

Every field of every sample is kept (docs/export.md): the image (JPEG bytes as stored, else
a PNG), the mask (PNG), the label and class name, subject, split and source (from the face
store the render was made from), landmarks, render parameters, the source face index and
what seeds the sample. Each output file is written to a temporary name and renamed when
complete; ``OUT/ferdata_export.json`` records the shards done, so a rerun skips them (and
resumes an interrupted export, or a render that has since made more shards).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Optional

from ..atomic import remove_dead_temps, write_json_atomic
from ..errors import FerdataError, ShardError
from ..signals import check
from . import export_imagefolder, export_parquet, export_webdataset
from .export_samples import find_face_store, iter_samples, load_face_meta
from .manifest import complete_shards, load_manifest, shard_name

FORMATS = {"webdataset": export_webdataset, "imagefolder": export_imagefolder, "parquet": export_parquet}
RECORD = "ferdata_export.json"

OnProgress = Callable[[dict], None]  # {"stage": str, "done": int, "total": int | None}


def _check_out(src: Path, out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FerdataError(f"{out}: -o is a file, not a folder")
    s, o = src.resolve(), out.resolve()
    if o == s or s in o.parents:
        raise FerdataError(f"{out}: -o is inside the render folder {src}; export to a folder outside it")
    if out.is_dir() and not (out / RECORD).exists() and any(out.iterdir()):
        raise FerdataError(f"{out}: -o is not empty and holds no ferdata export ({RECORD}); use a new folder")


def _identity(to: str, manifest: dict, face_store) -> dict:
    return {"format": to, "config_hash": manifest.get("config_hash"), "with_face_store": face_store is not None}


def _open_record(out: Path, identity: dict) -> dict:
    """The export record of OUT (new, or the one a previous run left: it must be the same export)."""
    import json

    path = out / RECORD
    if not path.exists():
        return {**identity, "shards": {}}
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FerdataError(f"{path}: unreadable export record ({exc}); use a new folder") from None
    diff = [f"{k} (folder {rec.get(k)!r}, now {v!r})" for k, v in identity.items() if rec.get(k) != v]
    if diff or not isinstance(rec.get("shards"), dict):
        raise FerdataError(f"{path}: this folder holds another export ({'; '.join(diff) or 'no shards'}); "
                           "use a new folder, or the same render, format and face store to resume it")
    return rec


def _missing(manifest: dict, done: dict) -> list[str]:
    n = int(manifest.get("num_shards") or 0)
    return [shard_name(k) for k in range(n) if shard_name(k) not in done]


def _is_done(out: Path, rec: dict, name: str, entry: dict, fmt) -> bool:
    r = rec["shards"].get(name)
    return (isinstance(r, dict) and r.get("source_sha256") == entry["sha256"]
            and all((out / f).is_file() for f in fmt.outputs(name)))


def _remove_dead_temps(out: Path) -> None:
    for folder, _, _ in os.walk(out):
        remove_dead_temps(folder)


class _Reporter:
    """``on_progress({"stage", "done", "total"})`` events (cumulative ``done``, as the render's):
    at each stage change and at most every ``every`` seconds while samples are written."""

    def __init__(self, on_progress: Optional[OnProgress], every: float = 0.25):
        self.cb, self.every = on_progress, every
        self.stage, self.done, self.total, self.last = "", 0, None, 0.0

    def emit(self, stage=None, done=None, total=None) -> None:
        self.stage = self.stage if stage is None else stage
        self.done = self.done if done is None else done
        self.total = self.total if total is None else total
        self.last = time.monotonic()
        if self.cb:
            self.cb({"stage": self.stage, "done": self.done, "total": self.total})

    def sample(self, n: int = 1) -> None:
        self.done += n
        if time.monotonic() - self.last >= self.every:
            self.emit()


def _sources(src: Path, partial: bool) -> tuple[dict, dict, list]:
    """The manifest, the complete shards' entries and the shards not made yet."""
    m = load_manifest(src)
    done = complete_shards(src, m)
    missing = _missing(m, done)
    if missing and not partial:
        shown = ", ".join(missing[:5]) + (f", … ({len(missing) - 5} more)" if len(missing) > 5 else "")
        raise ShardError(f"{src}: unfinished render: {len(missing)} of {m.get('num_shards')} shards not made "
                         f"({shown}); finish the render, or export what exists with --partial")
    if not done:
        raise ShardError(f"{src}: no complete shard to export yet")
    return m, done, missing


def export_shards(src, out, to: str, *, faces=None, partial: bool = False,
                  on_progress: Optional[OnProgress] = None) -> dict:
    """Export the shards of render folder ``src`` to ``out`` in format ``to``
    (``webdataset`` | ``imagefolder`` | ``parquet``); returns a summary dict.

    ``faces``: the face store the render was made from (for ``split`` and ``source``);
    by default the one the manifest records, if it is found; else those two are None.
    An unfinished render (shards not made yet) is an error naming them unless ``partial``.
    ``on_progress``: ``{"stage", "done", "total"}`` events, ``done`` counting the samples
    of shards exported before (skipped at once) and of this run, at least every 0.25 s.
    """
    if to not in FORMATS:
        raise FerdataError(f"unknown export format {to!r}; use one of {', '.join(FORMATS)}")
    fmt = FORMATS[to]
    if to == "parquet":
        export_parquet.pyarrow()
    src, out = Path(src), Path(out)
    report = _Reporter(on_progress)
    report.emit("reading the render")
    _check_out(src, out)
    m, done_src, missing = _sources(src, partial)
    fs_path = find_face_store(src, m, faces)
    face_meta = load_face_meta(fs_path, m)
    out.mkdir(parents=True, exist_ok=True)
    rec = _open_record(out, _identity(to, m, fs_path))
    _remove_dead_temps(out)
    names = sorted(done_src)
    todo = [k for k in names if not _is_done(out, rec, k, done_src[k], fmt)]
    total = sum(int(done_src[k]["n"]) for k in names)
    report.emit(done=total - sum(int(done_src[k]["n"]) for k in todo), total=total)
    t, written = time.perf_counter(), 0
    for name in todo:
        check(f"before {name}")
        report.emit(f"exporting {name}")
        n = fmt.write_shard(name, iter_samples(src / name, face_meta), out, report.sample)
        rec["shards"][name] = {"n": n, "source_sha256": done_src[name]["sha256"], "files": fmt.outputs(name)}
        write_json_atomic(out / RECORD, rec)
        written += n
    extra = fmt.finish(out, rec["shards"]) if hasattr(fmt, "finish") else []
    report.emit("done")
    dt = time.perf_counter() - t
    return {"out": str(out), "format": to, "shards_written": len(todo), "shards_skipped": len(names) - len(todo),
            "samples": total, "samples_written": written, "missing": missing,
            "face_store": str(fs_path) if fs_path else None, "files": extra,
            "seconds": round(dt, 3), "samples_per_s": round(written / dt, 1) if dt > 0 and written else None}
