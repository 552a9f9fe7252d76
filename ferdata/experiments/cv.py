"""Every fold of a cross-validation in one call: ``run_cv(cfg, out)`` (``ferdata cv``).

Each fold trains into ``out/fold-00``, ``out/fold-01``, … with
:func:`ferdata.train.fit` (``cfg.fold = i``). The run is resumable: a fold whose
``eval.json`` is complete is skipped, a fold with ``last.pt`` but no ``eval.json``
continues with ``resume=True``, any other fold starts afresh. ``out/cv_run.json``
records the configuration; running again into the same folder with a different one
is an error (mixing folds of two configurations would be a meaningless mean).

When the folds are done, ``out`` receives

* ``cv.json`` — per-fold test accuracy and macro precision / recall / F1 (and
  ``f1_of_macro``, FERAtt Table 1's F1: the harmonic mean of macro P and R), their
  mean and **sample** standard deviation (``ddof = 1``, the papers' ±), the test
  side of every fold's split (for ``compare``), the configuration and its hash;
* ``cv.md`` — the Table 1 row ``| name | Acc. | Prec. | Rec. | F1 |`` in percent;
* ``cv_confusion.json`` + ``confusion.png`` — the folds' test confusion matrices summed.

Aggregates cover every fold finished in ``out`` (also by earlier calls, e.g. one per
GPU with ``folds=``); ``"complete"`` says whether all folds are there.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable, Iterable, List, Optional

from ..config import config_hash
from ..errors import FerdataError
from ..signals import check as check_stop
from .cv_summary import (CV_VERSION, METRICS, _read_json, fold_dir, fold_record, fold_split, load_cv,  # noqa: F401
                         mean_std, read_eval, summarize, table_header, table_row, write_json_atomic,
                         write_outputs, write_text_atomic)

#: TrainConfig keys that do not change the experiment (left out of its identity).
RUNTIME_KEYS = ("fold", "name", "num_workers", "device", "compile", "eval_batch_size", "overwrite", "logger")

__all__ = ["run_cv", "summarize", "fold_dir", "fold_state", "parse_folds", "config_identity", "n_folds_of",
           "load_cv", "table_header", "table_row", "write_json_atomic", "write_text_atomic", "mean_std", "METRICS"]


# ---------------------------------------------------------------- folds

def fold_state(d) -> str:
    """``"done"`` (complete eval.json), ``"resume"`` (last.pt, no eval.json) or ``"new"``."""
    d = Path(d)
    if read_eval(d) is not None:
        return "done"
    return "resume" if (d / "last.pt").exists() else "new"


def parse_folds(spec, n: int) -> List[int]:
    """Fold indices from ``"a:b"`` (half-open, like Python; either end may be empty),
    ``"3"`` or ``"0,2,5"``; ``None`` / ``""`` means all ``n``. Out of range is an error."""
    if spec is None or str(spec).strip() == "":
        return list(range(n))
    if isinstance(spec, Iterable) and not isinstance(spec, str):
        idx = [int(i) for i in spec]
    else:
        s = str(spec).strip()
        try:
            if ":" in s:
                a, _, b = s.partition(":")
                idx = list(range(int(a) if a.strip() else 0, int(b) if b.strip() else n))
            else:
                idx = [int(t) for t in s.split(",") if t.strip()]
        except ValueError:
            raise FerdataError(f"folds {spec!r}: expected a:b, N or N,M,…") from None
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise FerdataError(f"folds {spec!r}: fold(s) {bad} outside 0..{n - 1} ({n} folds)")
    if not idx:
        raise FerdataError(f"folds {spec!r}: selects no fold ({n} folds)")
    return sorted(set(idx))


def config_identity(cfg) -> dict:
    """The JSON form of ``cfg`` without the keys that do not change the experiment."""
    d = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    for k in RUNTIME_KEYS:
        d.pop(k, None)
    return d


def _check_run_record(out: Path, ident: dict, n: int, meta: dict) -> dict:
    """Refuse another configuration or fold count in ``out``; returns the record."""
    path = out / "cv_run.json"
    rec = _read_json(path)
    h = config_hash(ident)
    if rec is not None:
        if rec.get("config_hash") != h:
            old = rec.get("config") or {}
            diff = sorted(k for k in set(old) | set(ident) if old.get(k) != ident.get(k))
            raise FerdataError(f"{out}: holds folds of a different configuration (differs in: "
                               f"{', '.join(diff) or '?'}); use another -o folder")
        if rec.get("n_folds") != n:
            raise FerdataError(f"{out}: was run with {rec.get('n_folds')} folds, now {n}; use another -o folder")
        return rec
    rec = {"version": CV_VERSION, "config": ident, "config_hash": h, "n_folds": n, **meta}
    write_json_atomic(path, rec)
    return rec


def check_fold_configs(out: Path, ident: dict, n: int) -> None:
    """Each fold folder's own ``config.json`` is the truth: a fold trained with another
    configuration is refused, naming the keys (whatever ``cv_run.json`` says or lacks)."""
    for i in range(n):
        path = fold_dir(out, i) / "config.json"
        if not path.exists():
            continue
        got = _read_json(path)
        if got is None:
            raise FerdataError(f"{path}: unreadable; the fold cannot be matched to this configuration "
                               "(delete the fold folder to train it again)")
        diff = sorted(k for k in ident if k in got and got[k] != ident[k])
        if diff:
            raise FerdataError(f"{path}: fold {i} was trained with another configuration ({', '.join(diff)} "
                               "differ); use another -o folder")


# ---------------------------------------------------------------- run

def _default_fit():
    from ..train import fit

    return fit


def n_folds_of(cfg) -> int:
    from .. import train

    nf = getattr(train, "n_folds", None)
    if nf is None:
        raise FerdataError("ferdata.train.n_folds is not available in this version: pass n_folds")
    return int(nf(cfg))


def run_cv(cfg, out, fit: Optional[Callable] = None, folds=None, n_folds: Optional[int] = None,
           name: Optional[str] = None, meta: Optional[dict] = None,
           on_fold: Optional[Callable[[dict], None]] = None) -> dict:
    """Run (or resume) the folds of ``cfg`` into ``out`` and write the summary files.

    Parameters
    ----------
    cfg : TrainConfig — ``cfg.fold`` is ignored (each fold sets it).
    fit : ``fit(cfg, out, resume=bool)`` writing ``out/eval.json``; default :func:`ferdata.train.fit`.
    folds : which folds to run now (``"a:b"``, ``"3"``, ``"0,2"`` or a list); default all.
    n_folds : number of folds; default :func:`ferdata.train.n_folds` ``(cfg)``.
    name : the row label in ``cv.md`` / ``compare`` (default: the folder name).
    meta : extra JSON-able identity recorded in ``cv.json`` (e.g. recipe path, ``--set`` list).
    on_fold : called with ``{"fold", "status": "skipped"|"resumed"|"started"|"done", "record"?}``.

    Returns the ``cv.json`` dict (``{}`` on a DDP rank other than 0).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fit = fit or _default_fit()
    n = int(n_folds) if n_folds is not None else n_folds_of(cfg)
    if n < 1:
        raise FerdataError(f"{n} folds: nothing to run")
    todo = parse_folds(folds, n)
    ident = config_identity(cfg)
    meta = dict(meta or {})
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        rec = _check_run_record(out, ident, n, {"name": name, **meta})
        check_fold_configs(out, ident, n)
        name = name or rec.get("name")              # a later call without --name keeps the label
    emit = on_fold or (lambda ev: None)
    for i in todo:
        check_stop(f"before fold {i}")
        d = fold_dir(out, i)
        state = fold_state(d)
        if state == "done":
            emit({"fold": i, "status": "skipped"})
            continue
        emit({"fold": i, "status": "resumed" if state == "resume" else "started"})
        # a "new" fold folder may hold the remains of a start that died before its first
        # checkpoint (config.json, …): it belongs to this cv run, so it is replaced
        fit(dataclasses.replace(cfg, fold=i, overwrite=(state == "new") or (cfg.overwrite and state != "resume")),
            d, resume=(state == "resume"))
        if rank == 0:
            ev = read_eval(d)
            if ev is None:
                raise FerdataError(f"{d}: training finished without a complete eval.json")
            emit({"fold": i, "status": "done", "record": fold_record(i, ev, fold_split(d))})
    if rank != 0:
        return {}
    summary = summarize(out, n, name=name or out.resolve().name, identity=ident, meta=meta)
    write_outputs(out, summary)
    return summary

