"""Run-folder files: checkpoints and JSON written tmp -> fsync -> rename; the run-folder guard."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import FerdataError
from ..atomic import append_line, atomic_write

__all__ = ["CKPT_VERSION", "save_checkpoint", "load_checkpoint", "write_json", "append_jsonl",
           "prepare_run_folder", "RUN_FILES"]

CKPT_VERSION = 1
RUN_FILES = ("config.json", "metrics.jsonl", "last.pt", "best.pt", "eval.json", "confusion.json",
             "confusion.png", "embeddings.npz")


def save_checkpoint(path, state: dict) -> None:
    """``torch.save`` to a temporary file, fsync, rename over ``path``."""
    atomic_write(path, lambda f: torch.save(state, f))


def write_json(path, obj) -> None:
    """JSON to a temporary file, fsync, rename over ``path``."""
    blob = json.dumps(obj, indent=1, default=str).encode()
    atomic_write(path, lambda f: f.write(blob))


def append_jsonl(path, rec: dict) -> None:
    """Append one JSON line and fsync (the metrics log; a torn last line is dropped on resume)."""
    append_line(path, json.dumps(rec))


def load_checkpoint(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FerdataError(f"{path}: checkpoint does not exist")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt files
        raise FerdataError(f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ck, dict) or ck.get("ckpt_version") != CKPT_VERSION or "model" not in ck:
        raise FerdataError(f"{path}: not a ferdata checkpoint (version {CKPT_VERSION})")
    return ck


def prepare_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """Create ``out``; refuse to start a new run over an old one unless ``overwrite``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        if not (out / "last.pt").exists():
            raise FerdataError(f"{out / 'last.pt'}: nothing to resume (no last.pt in {out})")
        return
    present = [n for n in RUN_FILES if (out / n).exists()]
    if present and not overwrite:
        raise FerdataError(f"{out}: already holds a run ({', '.join(present)}); "
                           "continue it with --resume or replace it with --overwrite")
    for n in present:
        (out / n).unlink()
