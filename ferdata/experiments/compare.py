"""Compare ``ferdata cv`` runs like FERAtt §4: a Table 1 block and the Demšar tests.

``compare_runs([out_a, out_b, …])`` reads each ``cv.json``, refuses runs whose folds
differ (another fold count, another set of finished folds, or another test side of a
fold — the subjects recorded in each fold's ``config.json`` ``"split"``), and returns
one row per run (mean ± sample sd of accuracy and macro P / R / F1) plus the tests of
:mod:`ferdata.experiments.stats` on the per-fold scores of ``metric`` (default accuracy).
"""
from __future__ import annotations

import json

from pathlib import Path
from typing import List, Sequence

import numpy as np

from ..errors import FerdataError
from . import stats
from .cv_summary import METRICS, fold_dir, load_cv, noise_curves, read_eval, table_header, table_row

__all__ = ["load_runs", "check_same_folds", "compare_runs", "markdown", "plot_noise"]


def load_runs(outs: Sequence) -> List[dict]:
    """The ``cv.json`` of each folder, with ``"path"`` added and names made unique.

    Runs are told apart by resolved folder (``runs/a``, ``runs/a/``, ``./runs/a`` and a
    symlink to it are one run) and by content (a copy of a run is the same run); every
    fold that ``cv.json`` lists must still have its ``eval.json``.
    """
    runs, seen = [], {}
    for o in outs:
        d = load_cv(o)
        d["path"] = str(o)
        for key in (("folder", str(Path(o).resolve())),
                    ("configuration and results",
                     json.dumps([d.get("config_hash"), d["folds"]], sort_keys=True, default=str))):
            if key in seen:
                raise FerdataError(f"{o} and {seen[key]} are the same run (same {key[0]}); compare different runs")
            seen[key] = o
        _check_folds_present(Path(o), d)
        runs.append(d)
    names = [r.get("name") or Path(r["path"]).name for r in runs]
    for r, nm in zip(runs, names):
        r["name"] = nm if names.count(nm) == 1 else r["path"]
    if len({r["name"] for r in runs}) != len(runs):
        raise FerdataError("the same run folder is given twice")
    return runs


def _check_folds_present(out: Path, d: dict) -> None:
    for i in d["folds_done"]:
        if read_eval(fold_dir(out, i)) is None:
            raise FerdataError(f"{fold_dir(out, i) / 'eval.json'}: fold {i} is listed in {out / 'cv.json'} but its "
                               "results are gone; run `ferdata cv` again to retrain it")


def check_same_folds(runs: Sequence[dict]) -> str:
    """Raise FerdataError unless every run has the same, complete folds.

    Returns ``"test subjects"`` when every fold's test side was recorded and is
    identical, ``"fold count"`` when some run lacks the record (nothing contradicts).
    """
    first = runs[0]
    for r in runs:
        if not r.get("complete", True):
            raise FerdataError(f"{r['path']}: only {len(r['folds'])} of {r['n_folds']} folds finished "
                               f"(finish it with `ferdata cv` first)")
        if r["n_folds"] != first["n_folds"] or r["folds_done"] != first["folds_done"]:
            raise FerdataError(f"{r['path']}: {r['n_folds']} folds, but {first['path']} has "
                               f"{first['n_folds']}; runs must share the same folds")
    checked = "test subjects"
    for j, f0 in enumerate(first["folds"]):
        for r in runs[1:]:
            s0, s1 = f0.get("test_split"), r["folds"][j].get("test_split")
            if s0 is None or s1 is None:
                checked = "fold count"
                continue
            if s0 != s1:
                raise FerdataError(f"{r['path']}: fold {f0['fold']} tests on other subjects than in "
                                   f"{first['path']}; runs must share the same folds")
        for r in runs[1:]:
            n0, n1 = f0.get("n"), r["folds"][j].get("n")
            if n0 is not None and n1 is not None and n0 != n1:
                raise FerdataError(f"{r['path']}: fold {f0['fold']} has {n1} test samples, {first['path']} "
                                   f"{n0}; runs must be tested on the same faces")
    return checked


def compare_runs(outs: Sequence, alpha: float = 0.05, metric: str = "accuracy", tails: int = 2) -> dict:
    """Rows and tests for the runs in ``outs`` (see the module doc). The JSON-able result has
    ``rows`` (name, path, mean, std per metric), ``metric``, ``folds_checked_by``,
    ``per_fold`` (name → scores), and the keys of :func:`ferdata.experiments.stats.compare`
    (``friedman_p``, ``nemenyi``, ``bonferroni_dunn``, …)."""
    if len(outs) < 2:
        raise FerdataError("compare needs at least two run folders")
    if metric not in METRICS:
        raise FerdataError(f"metric {metric!r}: expected one of {', '.join(METRICS)}")
    runs = load_runs(outs)
    checked = check_same_folds(runs)
    for r in runs:
        if any(metric not in f for f in r["folds"]):
            raise FerdataError(f"{r['path']}: cv.json has no per-fold {metric!r}")
    names = [r["name"] for r in runs]
    scores = np.array([[np.nan if f[metric] is None else f[metric] for f in r["folds"]] for r in runs],
                      dtype=np.float64).T
    if scores.shape[0] < 2:
        raise FerdataError(f"{scores.shape[0]} fold(s): the tests need at least 2 folds")
    try:
        res = stats.compare(scores, names, alpha=alpha, tails=tails)
    except ValueError as exc:
        raise FerdataError(f"{', '.join(map(str, outs))}: {exc}") from exc
    res.update(metric=metric, folds_checked_by=checked,
               rows=[{"name": r["name"], "path": r["path"], "mean": r["mean"], "std": r["std"],
                      "folds": len(r["folds"])} for r in runs],
               per_fold={nm: scores[:, j].tolist() for j, nm in enumerate(names)},
               table=[table_row(r) for r in runs])
    return res


def _fmt_p(p) -> str:
    return "–" if p is None else (f"{p:.2e}" if p < 1e-4 else f"{p:.4f}")


def markdown(res: dict) -> str:
    """The comparison as Markdown: the table, the omnibus verdict first, then the post-hoc
    tests (differences marked only where the Friedman test rejects H0)."""
    lines = [table_header(), *res["table"], ""]
    n, a, metric = res["n_folds"], res["alpha"], res["metric"]
    ranks = ", ".join(f"{k} {v:.2f}" for k, v in res["average_ranks"].items())
    if res.get("caution"):
        lines.append(f"**Caution:** {res['caution']}.")
    if res["test"] == "wilcoxon":
        verdict = "rejects" if res["rejects_h0"] else "does not reject"
        lines.append(f"Two runs (the Friedman test needs at least 3): Wilcoxon signed-rank (two-sided) "
                     f"p = {_fmt_p(res['wilcoxon_p'])}, {verdict} H0 'equivalent' at alpha = {a}.")
        lines.append(f"Per-fold {metric} over {n} folds (same folds, checked by {res['folds_checked_by']}); "
                     f"average ranks (1 = best): {ranks}.")
        return "\n".join(lines) + "\n"
    lines += _friedman_lines(res, a)
    lines.append(f"Per-fold {metric} over {n} folds (same folds, checked by {res['folds_checked_by']}); "
                 f"average ranks (1 = best): {ranks}.")
    lines += _posthoc_lines(res)
    return "\n".join(lines) + "\n"


def _friedman_lines(res: dict, a: float) -> list:
    verdict = "rejects" if res["rejects_h0"] else "does not reject"
    idv = ("undefined (every fold ranks the runs identically; no p measured)"
           if res["iman_davenport_p"] is None else
           f"F = {res['iman_davenport_statistic']:.3f}, p = {_fmt_p(res['iman_davenport_p'])}")
    return [f"**Friedman test {verdict} H0** 'all runs equivalent' at alpha = {a}: chi2 = "
            f"{res['friedman_statistic']:.3f}, p = {_fmt_p(res['friedman_p'])}; Iman-Davenport {idv}."]


def _posthoc_lines(res: dict) -> list:
    gate = "" if res["rejects_h0"] else " (not marked: the Friedman test did not reject H0)"
    nem = res["nemenyi"]
    sig = [f"{p['a']} vs {p['b']} (|dR| = {p['rank_diff']:.2f}, p = {_fmt_p(p['p'])})"
           for p in nem["pairs"] if p["significant"]]
    lines = [f"Nemenyi (two-tailed): CD = {nem['cd']:.3f} (q = {nem['q_alpha']:.3f}); significant: "
             + ("; ".join(sig) if sig else "none") + gate + "."]
    bd = res["bonferroni_dunn"]
    kind = "two-tailed, differs from" if bd["tails"] == 2 else "one-tailed, better than"
    items = [f"{r['name']} p = {_fmt_p(r['p_adjusted'])}{' *' if r['significant'] else ''}" for r in bd["runs"]]
    lines.append(f"Bonferroni-Dunn ({kind} {bd['control']}; p x {len(bd['runs'])}): " + "; ".join(items) + gate + ".")
    return lines


def plot_noise(outs: Sequence, path) -> str:
    """FERAtt Fig. 9 for the runs: test accuracy vs noise σ (mean ± sd over folds), one
    curve per run and study (``noise_train``: fine-tuned with noise; ``noise``: trained clean)."""
    from ..train.plots import noise_plot

    curves, errors, counts = {}, {}, set()
    for r in load_runs(outs):
        c, e = noise_curves(r, label=r["name"])
        curves.update(c)
        errors.update(e)
        if r.get("classes"):
            counts.add(len(r["classes"]))
    if not curves:
        raise FerdataError("no run has a noise study (set noise = [...] or noise_train = [...] in the recipe)")
    # a chance line where every run has the same number of classes
    return noise_plot(curves, path, errors=errors, title="Test accuracy under Gaussian noise (mean ± sd over folds)",
                      num_classes=counts.pop() if len(counts) == 1 else None)
