"""Comparing classifiers over the same folds, as FERAtt §4 does after Demšar (2006).

Input: a score matrix ``(N folds, k runs)`` (e.g. per-fold test accuracy), higher is
better. Runs are ranked within each fold (1 = best, ties share the mean rank) and the
average ranks ``R_j`` feed every test:

* **Friedman** (``scipy.stats.friedmanchisquare``): H0 "all runs are equivalent";
  needs k ≥ 3 runs. Its Iman-Davenport F form (less conservative) is given beside it. With two runs the paired **Wilcoxon signed-rank** test
  (``scipy.stats.wilcoxon``, two-sided) is given instead.
* **Nemenyi** post-hoc, two-tailed, every pair: two runs differ when
  ``|R_i − R_j| > CD``, ``CD = q_α · sqrt(k(k+1) / (6N))`` with
  ``q_α = studentized_range.ppf(1 − α, k, ∞) / √2`` (Demšar's Table 5a values:
  1.960, 2.343, 2.569, 2.728 … for k = 2, 3, 4, 5). The pair's p-value is
  ``studentized_range.sf(√2 · |R_i − R_j| / se, k, ∞)``.
* **Bonferroni-Dunn** post-hoc, each run against the first (the control, e.g. the
  baseline): ``z = (R_1 − R_i) / se`` — positive when run *i* ranks better. Two-tailed
  by default, as Demšar's Table 5b (``p = 2·(1 − Φ(|z|))``); one-tailed (``p = 1 − Φ(z)``,
  H1 "run *i* is better") only when asked (FERAtt's wording). Adjusted ``× (k − 1)``
  (capped at 1).

``se = sqrt(k(k+1) / (6N))``. Demšar: the post-hoc tests are meaningful only when the
Friedman test rejects H0, so :func:`compare` marks a post-hoc difference significant only
then (``significant``; the test's own decision is ``significant_alone``). The chi-square
and normal approximations need enough folds: with N < 5 folds or N < k runs the result
carries a ``caution``. When every fold ranks the runs identically the Iman-Davenport F is
undefined: its p is ``None`` (not measured), never a printed 0. numpy + scipy only.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ["average_ranks", "friedman", "iman_davenport", "wilcoxon_pair", "nemenyi", "bonferroni_dunn", "compare", "rank_se", "significant_pairs"]


def _scores(scores) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be (N folds, k runs), got shape {s.shape}")
    if s.shape[0] < 2 or s.shape[1] < 2:
        raise ValueError(f"need at least 2 folds and 2 runs, got {s.shape[0]} folds and {s.shape[1]} runs")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    return s


def average_ranks(scores) -> np.ndarray:
    """``(k,)`` mean rank of each run over the folds (1 = best in a fold, ties averaged)."""
    from scipy.stats import rankdata

    s = _scores(scores)
    return rankdata(-s, axis=1).mean(axis=0)


def rank_se(k: int, n: int) -> float:
    """Standard error of a difference of average ranks: ``sqrt(k(k+1) / (6N))``."""
    return math.sqrt(k * (k + 1) / (6.0 * n))


def friedman(scores) -> Dict[str, float]:
    """Friedman test over ``(N, k)`` scores (k ≥ 3): ``{"statistic", "p"}``.

    Every fold fully tied (all runs equal in every fold) gives statistic 0, p 1
    (scipy's tie correction divides by zero there).
    """
    from scipy.stats import friedmanchisquare

    s = _scores(scores)
    if s.shape[1] < 3:
        raise ValueError(f"the Friedman test needs at least 3 runs, got {s.shape[1]}")
    if np.all(s == s[:, :1]):
        return {"statistic": 0.0, "p": 1.0}
    res = friedmanchisquare(*s.T)
    return {"statistic": float(res.statistic), "p": float(res.pvalue)}


def iman_davenport(chi2: float, n: int, k: int) -> Dict[str, float]:
    """Iman-Davenport's F form of the Friedman statistic (Demšar 2006 §3.2.2, less conservative):
    ``F = (N−1)·χ² / (N(k−1) − χ²)`` on ``(k−1, (k−1)(N−1))`` degrees of freedom."""
    from scipy.stats import f as f_dist

    denom = n * (k - 1) - chi2
    if denom <= 0:  # every fold ranks the runs identically: F is undefined, no p to measure
        return {"statistic": math.inf, "p": None}
    stat = (n - 1) * chi2 / denom
    return {"statistic": float(stat), "p": float(f_dist.sf(stat, k - 1, (k - 1) * (n - 1)))}


def wilcoxon_pair(a, b) -> Dict[str, float]:
    """Two-sided Wilcoxon signed-rank test of paired per-fold scores: ``{"statistic", "p"}``.

    All differences zero gives statistic 0, p 1.
    """
    from scipy.stats import wilcoxon

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError("wilcoxon_pair needs two 1-D score lists of equal length >= 2")
    if np.all(a == b):
        return {"statistic": 0.0, "p": 1.0}
    res = wilcoxon(a, b)
    return {"statistic": float(res.statistic), "p": float(res.pvalue)}


def nemenyi(ranks: Sequence[float], n: int, alpha: float = 0.05, names: Optional[Sequence[str]] = None) -> dict:
    """Nemenyi two-tailed post-hoc test from the average ``ranks`` of k runs over ``n`` folds.

    Returns ``{"alpha", "q_alpha", "cd", "pairs": [{"a", "b", "rank_diff", "p", "significant"}]}``
    (pairs in index order; ``significant`` is ``rank_diff > cd``).
    """
    from scipy.stats import studentized_range

    r = np.asarray(ranks, dtype=np.float64)
    k = r.size
    names = list(names) if names is not None else [str(i) for i in range(k)]
    se = rank_se(k, n)
    q = float(studentized_range.ppf(1.0 - alpha, k, np.inf) / math.sqrt(2.0))
    cd = q * se
    pairs = []
    for i in range(k):
        for j in range(i + 1, k):
            d = float(abs(r[i] - r[j]))
            p = float(studentized_range.sf(math.sqrt(2.0) * d / se, k, np.inf)) if d > 0 else 1.0
            pairs.append({"a": names[i], "b": names[j], "rank_diff": d, "p": min(1.0, p),
                          "significant": bool(d > cd)})
    return {"alpha": alpha, "q_alpha": q, "cd": cd, "pairs": pairs}


def bonferroni_dunn(ranks: Sequence[float], n: int, alpha: float = 0.05,
                    names: Optional[Sequence[str]] = None, control: int = 0, tails: int = 2) -> dict:
    """Bonferroni-Dunn post-hoc test of every run against run ``control``.

    ``tails=2`` (default, Demšar's Table 5b): H1 "run *i* differs from the control";
    ``tails=1``: H1 "run *i* ranks better". Returns ``{"alpha", "control", "tails",
    "runs": [{"name", "z", "p", "p_adjusted", "significant"}]}`` (the control excluded).
    """
    if tails not in (1, 2):
        raise ValueError(f"tails must be 1 or 2, got {tails}")
    from scipy.stats import norm

    r = np.asarray(ranks, dtype=np.float64)
    k = r.size
    names = list(names) if names is not None else [str(i) for i in range(k)]
    se = rank_se(k, n)
    out = []
    for i in range(k):
        if i == control:
            continue
        z = float((r[control] - r[i]) / se)
        p = float(norm.sf(z)) if tails == 1 else float(min(1.0, 2.0 * norm.sf(abs(z))))
        p_adj = min(1.0, p * (k - 1))
        out.append({"name": names[i], "z": z, "p": p, "p_adjusted": p_adj, "significant": bool(p_adj < alpha)})
    return {"alpha": alpha, "control": names[control], "tails": tails, "runs": out}


def caution(n: int, k: int) -> Optional[str]:
    """Why the tests' approximations are unreliable for ``n`` folds and ``k`` runs (None when fine)."""
    why = [w for w, bad in ((f"{n} folds < 5", n < 5), (f"{n} folds < {k} runs", n < k)) if bad]
    if not why:
        return None
    return (f"{' and '.join(why)}: the chi-square and normal approximations behind these tests are unreliable "
            "(Demšar 2006); read the p-values as indicative only")


def _gate(posthoc: Optional[dict], rejects: bool, key: str) -> Optional[dict]:
    """Post-hoc decisions count only when the omnibus test rejects H0 (Demšar 2006 §3.2.2)."""
    if posthoc is None:
        return None
    for item in posthoc[key]:
        item["significant_alone"] = item["significant"]
        item["significant"] = bool(item["significant"] and rejects)
    return posthoc


def compare(scores, names: Sequence[str], alpha: float = 0.05, tails: int = 2) -> dict:
    """All of the above over ``(N folds, k runs)`` scores.

    Returns ``{"n_folds", "runs", "average_ranks", "test", "friedman_p", "friedman_statistic",
    "rejects_h0", "nemenyi", "bonferroni_dunn"}``; with k = 2: ``test = "wilcoxon"``,
    ``friedman_p = None``, ``wilcoxon_p`` and no post-hoc tests (``None``).
    """
    s = _scores(scores)
    n, k = s.shape
    names = list(names)
    if len(names) != k:
        raise ValueError(f"{len(names)} names for {k} runs")
    ranks = average_ranks(s)
    res: dict = {"n_folds": n, "runs": names, "alpha": alpha, "caution": caution(n, k),
                 "average_ranks": {nm: float(r) for nm, r in zip(names, ranks)}}
    if k == 2:
        w = wilcoxon_pair(s[:, 0], s[:, 1])
        res.update(test="wilcoxon", friedman_p=None, friedman_statistic=None, wilcoxon_p=w["p"],
                   wilcoxon_statistic=w["statistic"], rejects_h0=bool(w["p"] < alpha),
                   nemenyi=None, bonferroni_dunn=None,
                   note="the Friedman test needs at least 3 runs; two-sided Wilcoxon signed-rank test instead")
        return res
    f = friedman(s)
    idv = iman_davenport(f["statistic"], n, k)
    rejects = bool(f["p"] < alpha)
    res.update(test="friedman", friedman_p=f["p"], friedman_statistic=f["statistic"],
               iman_davenport_p=idv["p"], iman_davenport_statistic=idv["statistic"], rejects_h0=rejects,
               nemenyi=_gate(nemenyi(ranks, n, alpha, names), rejects, "pairs"),
               bonferroni_dunn=_gate(bonferroni_dunn(ranks, n, alpha, names, tails=tails), rejects, "runs"))
    return res


def significant_pairs(result: dict) -> List[tuple]:
    """The Nemenyi pairs flagged significant, as ``(a, b)`` tuples."""
    nem = result.get("nemenyi") or {}
    return [(p["a"], p["b"]) for p in nem.get("pairs", []) if p["significant"]]
