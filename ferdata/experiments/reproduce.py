"""``ferdata reproduce TABLE``: every cell of a paper's table that the given data allows.

From each dataset as published: ingest (``OUT/data/NAME/faces.h5``), render when the table
trains on renders (``renders/`` with seed 0 for training, ``renders-test/`` with seed 1 for the
Synthetic columns), then each cell as a ``ferdata cv`` run in ``OUT/cells/<cell>/`` — its
recipe, the cell's overrides, then the user's ``--set``. Everything resumes: a finished
step or fold is skipped; a face store, render or cell made with other settings is refused
(naming what differs) by the step that made it. ``OUT/table.md`` and ``OUT/table.json`` lay
the results out like the paper: per cell the paper's number, ours (mean ± sd over folds) and
the difference (``docs/training.md``, "Reproducing a table").
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Callable, Dict, Optional

from ..atomic import atomic_write_text, file_lock, write_json_atomic
from ..errors import FerdataError
from ..signals import check as check_stop
from .cv_summary import load_cv
from .tables import Cell, Table, table

log = logging.getLogger(__name__)

__all__ = ["reproduce", "recipes_dir", "plan"]


def recipes_dir() -> Path:
    """The repo's ``recipes/`` (beside the package in a checkout)."""
    d = Path(__file__).resolve().parents[2] / "recipes"
    if not d.is_dir():
        raise FerdataError(f"{d}: the recipes folder is missing (ferdata reproduce runs from a checkout)")
    return d


def plan(t: Table, data: Dict[str, str]) -> dict:
    """Which cells run with ``data`` (``{name: root}``) and which wait for a ``--data``."""
    unknown = sorted(set(data) - set(t.datasets))
    if unknown:
        raise FerdataError(f"--data {unknown[0]}: {t.name} reads {', '.join(t.datasets)} (not {', '.join(unknown)})")
    for name, root in data.items():
        if not Path(root).exists():
            raise FerdataError(f"--data {name}={root}: does not exist")
    run = [c for c in t.cells if c.data in data]
    if not run:
        raise FerdataError(f"{t.name}: no cell can run; add --data " + " or --data ".join(f"{n}=ROOT" for n in t.datasets))
    return {"run": run, "missing": sorted({c.data for c in t.cells if c.data not in data})}


def _faces(name: str, t: Table, root: str, out: Path, ingest_sets: dict, tell=None) -> Path:
    from ..config import IngestConfig
    from ..datasets import read_dataset
    from ..faces.ingest import ingest

    store = out / "data" / name / "faces.h5"
    spec = json.loads(json.dumps({"reader": t.datasets[name].reader, "root": str(Path(root).resolve()),
                                  "options": dict(t.datasets[name].options), "ingest": ingest_sets},
                                 default=list))  # as source.json holds it (tuples as lists)
    record = store.with_name("source.json")
    if store.exists():
        old = json.loads(record.read_text()) if record.exists() else None
        if old != spec:
            raise FerdataError(f"{store}: made from other data or settings ({record}); use another -o folder")
        return store
    store.parent.mkdir(parents=True, exist_ok=True)
    records = read_dataset(spec["reader"], root, on_error="skip", skipped=(skipped := []), **spec["options"])
    stage = f"ingesting {name}"
    tell = tell or (lambda e: None)
    tell({"stage": stage, "done": 0, "total": None, "unit": "face"})
    ingest(records, store, spec["reader"], IngestConfig(**ingest_sets), root=root, skipped=skipped,
           on_progress=lambda ok, failed: tell({"stage": stage, "done": ok + failed}))
    write_json_atomic(record, spec)
    return store


def _renders(store: Path, backgrounds: str, render_sets: dict, tell=None) -> Dict[str, str]:
    from ..config import RenderConfig
    from ..render.run import render

    out = {}
    for key, seed in (("train", 0), ("test", 1)):
        folder = store.parent / ("renders" if key == "train" else "renders-test")
        stage = f"rendering {store.parent.name} ({key})"
        render(store, backgrounds, folder, RenderConfig(**{**render_sets, "seed": seed}),
               on_progress=None if tell is None else (lambda e, s=stage: tell({**e, "stage": s, "unit": "sample"})))
        out[key] = str(folder)
    return out


def _cell_config(t: Table, cell: Cell, store: Path, renders: Optional[dict], sets: dict):
    from ..train.recipe import train_config

    over = {k: v for k, v in cell.overrides}
    merge, only = over.pop("model_kwargs", None), over.pop("model_kwargs_only", None)
    drop = over.pop("model_kwargs_drop", ())
    over.update(faces=str(store), name=f"{cell.column}: {cell.row}")
    if renders:
        over["data"] = renders["train"]
        if cell.synthetic:
            over.update(eval_on="renders", test_data=renders["test"])
    recipe = str(recipes_dir() / cell.recipe)
    if "model_kwargs" not in sets:  # the user's model_kwargs win outright
        kw = dict(only) if only is not None else {**train_config(recipe).model_kwargs, **(merge or {})}
        over["model_kwargs"] = {k: v for k, v in kw.items() if k not in drop}
    return train_config(recipe, {**over, **sets})


def _row(t: Table, cell: Cell, out: Path) -> dict:
    row = {"row": cell.row, "column": cell.column, "data": cell.data, "cell": cell.id, "paper": {},
           "ours": {}, "difference": {}}
    path = out / "cells" / cell.id
    summary = load_cv(path) if (path / "cv.json").exists() else None
    for m in t.metrics:
        paper = cell.paper.get(m)
        row["paper"][m] = None if paper is None else {"mean": paper[0], "sd": paper[1]}
        if summary is None or summary["mean"].get(m) is None:
            row["ours"][m] = None
            continue
        mean, sd = 100 * summary["mean"][m], summary["std"].get(m)
        row["ours"][m] = {"mean": mean, "sd": None if sd is None else 100 * sd, "folds": len(summary["folds"]),
                          "complete": summary["complete"]}
        row["difference"][m] = None if paper is None else mean - paper[0]
    return row


def reproduce(name: str, data: Dict[str, str], out, sets: Optional[dict] = None,
              render_sets: Optional[dict] = None, ingest_sets: Optional[dict] = None,
              backgrounds: Optional[str] = None, fit: Optional[Callable] = None,
              on_cell: Optional[Callable[[dict], None]] = None,
              on_progress: Optional[Callable[[dict], None]] = None) -> dict:
    """Run table ``name`` on ``data`` into ``out``; returns the ``table.json`` dict.

    ``fit``: what trains one fold (``ferdata.train.fit``; the CLI's adds a bar);
    ``on_cell({"cell", "row", "column", "index", "cells"})`` before each cell;
    ``on_progress({"stage", "done", "total", "unit"})`` while the faces are ingested and rendered."""
    from .cv import run_cv

    t = table(name)
    p = plan(t, data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sets, render_sets, ingest_sets = dict(sets or {}), dict(render_sets or {}), dict(ingest_sets or {})
    with file_lock(out / "reproduce"):
        stores = {n: _faces(n, t, data[n], out, ingest_sets, on_progress) for n in sorted({c.data for c in p["run"]})}
        renders = {}
        if t.renders:
            bgs = backgrounds or _sample_backgrounds(out)
            renders = {n: _renders(s, bgs, render_sets, on_progress) for n, s in stores.items()}
        for i, cell in enumerate(p["run"]):
            check_stop(f"before cell {cell.id}")
            cfg = _cell_config(t, cell, stores[cell.data], renders.get(cell.data), sets)
            if on_cell:
                on_cell({"cell": cell.id, "row": cell.row, "column": cell.column, "index": i, "cells": len(p["run"])})
            run_cv(dataclasses.replace(cfg, fold=0), out / "cells" / cell.id, fit=fit, name=cfg.name,
                   meta={"table": t.name, "cell": cell.id})
        return write_table(t, out, p["missing"])


def _sample_backgrounds(out: Path) -> str:
    from ..render.backgrounds import make_sample_backgrounds

    d = out / "data" / "backgrounds"
    if not (d / "annotations").exists():
        make_sample_backgrounds(d)
    return str(d)


def write_table(t: Table, out: Path, missing) -> dict:
    """``table.json`` and ``table.md`` from the cells' ``cv.json`` (cells not run are listed)."""
    rows = [_row(t, c, out) for c in t.cells]
    res = {"table": t.name, "title": t.title, "metrics": list(t.metrics), "rows": rows, "paper_stats": t.stats,
           "missing_data": [f"--data {m}=ROOT" for m in missing]}
    write_json_atomic(out / "table.json", res)
    atomic_write_text(out / "table.md", markdown(res))
    return res


def _cell_text(r: dict, m: str) -> str:
    p, o, d = r["paper"][m], r["ours"][m], r["difference"].get(m)
    pt = "–" if p is None else f"{p['mean']:.2f}" + (f" ± {p['sd']:.2f}" if p["sd"] is not None else "")
    if o is None:
        return f"{pt} / not run"
    ot = f"{o['mean']:.2f}" + (f" ± {o['sd']:.2f}" if o["sd"] is not None else "")
    if not o["complete"]:
        ot += f" ({o['folds']} folds so far)"
    return f"{pt} / {ot}" + ("" if d is None else f" ({d:+.2f})")


def markdown(res: dict) -> str:
    names = {"accuracy": "Acc.", "precision": "Prec. (macro)", "recall": "Rec. (macro)",
             "f1_of_macro": "F1 = 2PR/(P+R)", "f1": "F1 (mean per class)"}
    head = "| column | method | " + " | ".join(names.get(m, m) for m in res["metrics"]) + " |"
    lines = [f"# {res['title']}", "", "Each cell: paper / ours (mean ± sd over folds, percent) (ours − paper).", "",
             head, "|" + "---|" * (2 + len(res["metrics"]))]
    for r in res["rows"]:
        lines.append(f"| {r['column']} | {r['row']} | " + " | ".join(_cell_text(r, m) for m in res["metrics"]) + " |")
    if res["paper_stats"]:
        lines += ["", f"The paper's statistics: {res['paper_stats']}. Ours: `ferdata compare` over the cells of a "
                  "column (cells/<cell>)."]
    if res["missing_data"]:
        lines += ["", "Not run for lack of data: add " + ", ".join(res["missing_data"]) + "."]
    return "\n".join(lines) + "\n"
