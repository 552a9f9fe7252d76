"""Aggregating the folds of a ``ferdata cv`` run (see :mod:`ferdata.experiments.cv`).

:func:`summarize` reads every finished ``fold-NN/eval.json`` and returns the
``cv.json`` dict: per-fold test accuracy and macro precision / recall / F1 (plus
``f1_of_macro``, FERAtt Table 1's F1), their mean and **sample** standard deviation
(``ddof = 1``), the test side of each fold's split, the summed confusion matrix and
the noise studies averaged over folds. :func:`write_outputs` writes ``cv.json``,
``cv.md`` (the Table 1 row), ``cv_confusion.json`` + ``confusion.png`` and
``noise.png``. Every file is written atomically.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from ..config import config_hash
from ..errors import FerdataError
from ..atomic import atomic_write
from ..train.plots import noise_accuracies
from ..atomic import write_json_atomic as _write_json

log = logging.getLogger(__name__)

CV_VERSION = 1
#: scalars kept per fold and aggregated: accuracy and the macro averages.
METRICS = ("accuracy", "precision", "recall", "f1", "f1_of_macro")

__all__ = ["CV_VERSION", "METRICS", "write_text_atomic", "write_json_atomic", "fold_dir", "read_eval",
           "fold_split", "fold_record", "mean_std", "noise_accuracies", "summarize", "table_header",
           "table_row", "write_outputs", "noise_curves", "load_cv"]


# ---------------------------------------------------------------- small IO helpers

def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`ferdata.atomic.atomic_write`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text), "w")
    return path


def _finite(obj):
    """``obj`` with NaN / infinite floats replaced by ``None`` (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json_atomic(path, obj) -> Path:
    """Strict JSON (NaN -> null, keys in insertion order) written atomically."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, _finite(obj), allow_nan=False, sort_keys=False)
    return Path(path)


def _read_json(path) -> Optional[dict]:
    try:
        with open(path) as fh:
            d = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable (%s); treated as absent", path, exc)
        return None
    return d if isinstance(d, dict) else None


# ---------------------------------------------------------------- folds

def fold_dir(out, i: int) -> Path:
    return Path(out) / f"fold-{int(i):02d}"


def read_eval(d) -> Optional[dict]:
    """A fold's ``eval.json`` if it is complete (has a test accuracy), else ``None``."""
    ev = _read_json(Path(d) / "eval.json")
    if ev is None or not isinstance(ev.get("test"), dict) or "accuracy" not in ev["test"]:
        return None
    return ev


def fold_split(d) -> Optional[dict]:
    """The test side of a fold's split from its ``config.json`` (``"split"`` record), if any."""
    c = _read_json(Path(d) / "config.json") or {}
    split = c.get("split") or (c.get("resolved") or {}).get("split")
    if not isinstance(split, dict):
        return None
    return {k: v for k, v in split.items() if k.startswith("test")} or None


# ---------------------------------------------------------------- summary

def fold_record(i: int, ev: dict, split: Optional[dict]) -> dict:
    t = ev["test"]
    mac = t.get("macro") or {}
    rec = {"fold": int(i), "accuracy": float(t["accuracy"])}
    for k in ("precision", "recall", "f1", "f1_of_macro"):
        if k in mac:
            rec[k] = float(mac[k])
    if "f1_of_macro" not in rec and "precision" in rec and "recall" in rec:
        p, r = rec["precision"], rec["recall"]
        rec["f1_of_macro"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    rec.update(n=t.get("n"), best_epoch=ev.get("best_epoch"), epochs_run=ev.get("epochs_run"), test_split=split)
    return rec


def mean_std(values: Sequence[float]):
    """Mean and the sample standard deviation (``ddof=1``; ``None`` for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return None, None
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None)


def _noise_summary(evs: List[dict], key: str) -> Optional[dict]:
    """Mean and sample sd over folds of :func:`noise_accuracies` (same σ in every fold)."""
    per = [noise_accuracies(e, key) for e in evs]
    if not per or any(p is None for p in per) or any(set(p) != set(per[0]) for p in per):
        return None
    out = {}
    for s in sorted(per[0], key=float):
        m, sd = mean_std([p[s] for p in per])
        out[s] = {"mean": m, "std": sd}
    return out


def summarize(out, n_folds: int, name: str, identity: Optional[dict] = None, meta: Optional[dict] = None) -> dict:
    """The ``cv.json`` dict over every fold of ``out`` with a complete ``eval.json``."""
    out = Path(out)
    recs, evs = [], []
    for i in range(n_folds):
        ev = read_eval(fold_dir(out, i))
        if ev is not None:
            recs.append(fold_record(i, ev, fold_split(fold_dir(out, i))))
            evs.append(ev)
    if not recs:
        raise FerdataError(f"{out}: no finished fold (no fold-NN/eval.json)")
    keys = [k for k in METRICS if all(k in r for r in recs)]
    mean, std = {}, {}
    for k in keys:
        mean[k], std[k] = mean_std([r[k] for r in recs])
    summary = {"version": CV_VERSION, "name": name, "n_folds": int(n_folds),
               "folds_done": [r["fold"] for r in recs], "complete": len(recs) == n_folds,
               "folds": recs, "mean": mean, "std": std, "std_ddof": 1,
               "classes": evs[0]["test"].get("classes"),
               "config": identity, "config_hash": config_hash(identity) if identity is not None else None,
               **(meta or {})}
    for key in ("noise", "noise_train"):
        noise = _noise_summary(evs, key)
        if noise:
            summary[key] = noise
    cm = _summed_confusion(evs)
    if cm is not None:
        summary["confusion_matrix"] = cm
    return summary


def _summed_confusion(evs: List[dict]) -> Optional[list]:
    mats, classes = [], evs[0]["test"].get("classes")
    for e in evs:
        m = e["test"].get("confusion_matrix")
        if m is None or e["test"].get("classes") != classes:
            log.warning("folds differ in classes or lack a confusion matrix: no summed confusion")
            return None
        mats.append(np.asarray(m, dtype=np.int64))
    if len({m.shape for m in mats}) != 1:
        return None
    return np.sum(mats, axis=0).astype(int).tolist()


def _pm(mean, std) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if std is not None else f"{100 * mean:.2f}"


def table_header() -> str:
    """Columns in FERAtt Table 1's terms: macro P and R, F1 = 2PR/(P+R) of those (the paper's F1),
    and the mean of per-class F1 (scikit-learn's macro F1) beside it."""
    return ("| name | folds | Acc. | Prec. (macro) | Rec. (macro) | F1 = 2PR/(P+R) | F1 (mean per class) |\n"
            "|---|---|---|---|---|---|---|")


def table_row(summary: dict) -> str:
    """``| name | folds | acc | P | R | F1 of macro P, R | mean per-class F1 |``, each mean ± sd in percent."""
    m, s = summary["mean"], summary["std"]
    k = len(summary["folds"])
    folds = f"{k}" if summary.get("complete", True) else f"{k} of {summary['n_folds']}"
    cells = [_pm(m.get(key), s.get(key)) for key in ("accuracy", "precision", "recall", "f1_of_macro", "f1")]
    return f"| {summary['name']} | {folds} | " + " | ".join(cells) + " |"


def write_outputs(out, summary: dict) -> None:
    """``cv.json``, ``cv.md``, ``cv_confusion.json`` + ``confusion.png`` (and ``noise.png``)."""
    from ..train.metrics import plot_confusion

    out = Path(out)
    write_json_atomic(out / "cv.json", summary)
    note = (f"\nTest metrics over {len(summary['folds'])} of {summary['n_folds']} folds: mean ± sample sd "
            "(ddof=1), percent. Macro averages run over the run's classes present in a fold's test side "
            "(a class with no test face and no prediction there is left out; 0/0 counts as 0). "
            "F1 = 2PR/(P+R) is FERAtt Table 1's F1 (harmonic mean of macro P and R); the last column is "
            "the mean of per-class F1.\n")
    write_text_atomic(out / "cv.md", table_header() + "\n" + table_row(summary) + "\n" + note)
    cm = summary.get("confusion_matrix")
    if cm is not None:
        write_json_atomic(out / "cv_confusion.json", {"classes": summary["classes"], "matrix": cm,
                                                      "folds": summary["folds_done"]})
        plot_confusion(np.asarray(cm), summary["classes"], out / "confusion.png", run=summary["name"],
                       split=f"test (all {len(summary['folds'])} folds)")   # n, accuracy: of the summed matrix
    curves, errors = noise_curves(summary)
    if curves:
        from ..train.plots import noise_plot

        classes = summary.get("classes")
        noise_plot(curves, out / "noise.png", errors=errors, num_classes=len(classes) if classes else None,
                   title=f"{summary['name']}: test accuracy under noise (mean ± sd over folds)")


def noise_curves(summary: dict, label: Optional[str] = None):
    """``({curve: {sigma: mean}}, {curve: {sigma: sd}})`` of a cv summary's noise studies;
    each curve starts at σ = 0 with the clean test accuracy (the same selected model)."""
    curves, errors = {}, {}
    clean_m, clean_sd = summary["mean"].get("accuracy"), summary["std"].get("accuracy")
    for key, what in (("noise_train", "fine-tuned with noise"), ("noise", "trained clean")):
        if summary.get(key):
            name = f"{label}: {what}" if label else what
            curves[name] = {s: v["mean"] for s, v in summary[key].items()}
            errors[name] = {s: v["std"] or 0.0 for s, v in summary[key].items()}
            if clean_m is not None and not any(float(s) == 0.0 for s in curves[name]):
                curves[name] = {"0": clean_m, **curves[name]}
                errors[name] = {"0": clean_sd or 0.0, **errors[name]}
    return curves, errors


def load_cv(out) -> dict:
    """Read ``out/cv.json`` (FerdataError if it is missing or not a ``ferdata cv`` summary)."""
    path = Path(out) / "cv.json"
    if not path.exists():
        raise FerdataError(f"{path}: does not exist (run `ferdata cv -o {out}` first)")
    d = _read_json(path)
    missing = [k for k in ("folds", "mean", "std", "n_folds", "folds_done") if d is None or k not in d]
    if missing:
        raise FerdataError(f"{path}: not a ferdata cv summary (corrupt or unreadable; "
                           f"{'missing ' + ', '.join(missing) if d is not None else 'not JSON'})")
    return d
