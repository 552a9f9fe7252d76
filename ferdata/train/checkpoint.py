"""Run-folder files: checkpoints and JSON written tmp -> fsync -> rename; the run-folder guard."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Optional

import torch

from ..errors import FerdataError
from ..atomic import append_line, atomic_write, file_lock, publish

__all__ = ["CKPT_VERSION", "save_checkpoint", "save_epoch", "settle_best", "load_checkpoint", "write_json",
           "append_jsonl", "prepare_run_folder", "run_lock", "RUN_FILES"]

CKPT_VERSION = 1
RUN_FILES = ("config.json", "metrics.jsonl", "last.pt", "best.pt", "best.next.pt", "eval.json", "confusion.json",
             "confusion.png", "embeddings.npz", "attention.png", "steps.csv", "epochs.csv", "pictures.json",
             "noise.png", "tsne.png", "retrieval.png")


def save_checkpoint(path, state: dict) -> None:
    """``torch.save`` to a temporary file, fsync, rename over ``path``.

    Serialised in memory first: a write error (a full disk) is then an OSError naming the
    file and its cause, not a RuntimeError from inside torch's writer.
    """
    buf = io.BytesIO()
    torch.save(state, buf)
    try:
        atomic_write(path, lambda f: f.write(buf.getbuffer()))
    except OSError as exc:
        raise FerdataError(f"{path}: cannot write the checkpoint ({exc.strerror or exc}); "
                           "the previous one is unchanged") from exc


BEST_NEXT = "best.next.pt"
RESUME_ONLY = ("optimizer", "scheduler", "scaler", "rng")   # in last.pt only


def save_epoch(out: Path, state: dict, improved: bool) -> None:
    """Checkpoint an epoch so that the set on disk is consistent whatever the kill point.

    A new best goes to ``best.next.pt`` first, then ``last.pt`` (which names the best
    epoch), then ``best.next.pt`` is renamed over ``best.pt``. Killed before ``last.pt``:
    the old ``best.pt`` still matches the old ``last.pt``; killed after it:
    :func:`settle_best` finishes the rename on resume. ``best.pt`` keeps the weights and what
    reads them (config, classes, inputs, epoch), not the optimiser, scheduler, scaler and RNG
    states that only ``last.pt`` needs to resume.
    """
    out = Path(out)
    if improved:
        save_checkpoint(out / BEST_NEXT, {k: v for k, v in state.items() if k not in RESUME_ONLY})
    save_checkpoint(out / "last.pt", state)
    if improved:
        publish(out / BEST_NEXT, out / "best.pt")


def settle_best(out: Path, best_epoch: int) -> Optional[dict]:
    """Make ``best.pt`` the weights of ``best_epoch`` (what ``last.pt`` records) after a kill.

    A ``best.next.pt`` of that epoch is put in place; one of a later, unfinished epoch
    is removed. A ``best.pt`` of another epoch is an error naming both files. Returns the
    ``best.pt`` checkpoint it read to check that (None when no epoch was selected).
    """
    out = Path(out)
    nxt = out / BEST_NEXT
    if nxt.exists():
        try:
            epoch = torch.load(nxt, map_location="cpu", weights_only=False).get("epoch")
        except Exception:  # noqa: BLE001 - a torn temp of a killed run
            epoch = None
        if epoch == best_epoch:
            publish(nxt, out / "best.pt")
        else:
            nxt.unlink()
    if best_epoch < 0:
        return None
    best = out / "best.pt"
    ck = load_checkpoint(best) if best.exists() else None
    held = None if ck is None else ck.get("epoch")
    if held != best_epoch:
        raise FerdataError(f"{best}: holds epoch {held}, but {out / 'last.pt'} selected epoch {best_epoch}; "
                           "the checkpoint set is inconsistent (start again with --overwrite)")
    return ck


@contextlib.contextmanager
def run_lock(out: Path):
    """Hold ``<out>/run.lock`` while training into ``out``: a second run into the same folder
    (another ``ferdata train``, a cv of the same fold) is one error, not two writers."""
    from filelock import Timeout

    try:
        with file_lock(Path(out) / "run", timeout=0):
            yield
    except Timeout:
        raise FerdataError(f"{out}: another run is writing this folder (lock {Path(out) / 'run.lock'}); "
                           "wait for it to finish or choose another -o") from None


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
