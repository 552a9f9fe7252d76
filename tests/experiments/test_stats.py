"""Friedman / Nemenyi / Bonferroni-Dunn (Demšar 2006, FERAtt §4) checked against scipy.stats."""
import math

import numpy as np
import pytest
from scipy import stats as ss

from ferdata.experiments import stats


def ordered_scores(n_folds=10, seed=0):
    """Three runs, C > B > A on every fold, with fold-to-fold variation."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.6, 0.8, n_folds)
    return np.stack([base, base + 0.03 + rng.uniform(0, 0.01, n_folds),
                     base + 0.06 + rng.uniform(0, 0.01, n_folds)], axis=1)


def test_known_ordering_friedman_and_posthoc_match_scipy():
    s = ordered_scores()
    n, k = s.shape
    res = stats.compare(s, ["A", "B", "C"])
    ref = ss.friedmanchisquare(s[:, 0], s[:, 1], s[:, 2])
    assert res["test"] == "friedman"
    assert res["friedman_p"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert res["friedman_p"] < 0.05 and res["rejects_h0"]
    chi2 = ref.statistic                                  # Iman-Davenport: (N-1)chi2 / (N(k-1) - chi2)
    assert chi2 == pytest.approx(2 * n)                   # perfect agreement: chi2 = N(k-1)
    assert res["iman_davenport_p"] is None          # F undefined: not printed as a measured p = 0
    assert res["average_ranks"] == {"A": 3.0, "B": 2.0, "C": 1.0}
    # Nemenyi: CD from the studentized range; Demšar's table gives q_0.05 = 2.343 for k = 3
    se = math.sqrt(k * (k + 1) / (6 * n))
    q = ss.studentized_range.ppf(0.95, k, np.inf) / math.sqrt(2)
    assert q == pytest.approx(2.343, abs=1e-3)
    assert res["nemenyi"]["cd"] == pytest.approx(q * se)
    # rank differences 1, 2, 1 with CD ≈ 1.048: only A vs C differ
    assert stats.significant_pairs(res) == [("A", "C")]
    for p in res["nemenyi"]["pairs"]:
        assert p["p"] == pytest.approx(ss.studentized_range.sf(math.sqrt(2) * p["rank_diff"] / se, k, np.inf))
        assert (p["p"] < 0.05) == p["significant"]
    # Bonferroni-Dunn against A, two-tailed by default (Demšar Table 5b): p = 2(1 - Phi(|z|)), x (k - 1)
    bd = {r["name"]: r for r in res["bonferroni_dunn"]["runs"]}
    assert set(bd) == {"B", "C"} and res["bonferroni_dunn"]["tails"] == 2
    assert bd["B"]["z"] == pytest.approx(1 / se)
    assert bd["B"]["p_adjusted"] == pytest.approx(2 * 2 * ss.norm.sf(1 / se))   # 0.0506: not significant two-tailed
    assert bd["C"]["p_adjusted"] == pytest.approx(2 * 2 * ss.norm.sf(2 / se))
    assert not bd["B"]["significant"] and bd["C"]["significant"]
    # Demšar's two-tailed critical value for k = 3 at 0.05 is 2.241: C's z = 4.47 passes, B's 2.24 does not
    assert ss.norm.isf(0.05 / (2 * (k - 1))) == pytest.approx(2.241, abs=1e-3)
    one = {r["name"]: r for r in stats.compare(s, ["A", "B", "C"], tails=1)["bonferroni_dunn"]["runs"]}
    assert one["B"]["p_adjusted"] == pytest.approx(2 * ss.norm.sf(1 / se)) and one["B"]["significant"]  # 0.0253


def test_one_tailed_direction_worse_run_is_not_significant():
    s = ordered_scores()[:, ::-1]            # now A is best, C worst: nothing beats the control
    res = stats.compare(s, ["A", "B", "C"], tails=1)
    assert all(r["z"] < 0 and r["p"] > 0.5 and not r["significant"] for r in res["bonferroni_dunn"]["runs"])
    two = stats.compare(s, ["A", "B", "C"])             # two-tailed: C is significantly *worse*
    assert {r["name"]: r["significant"] for r in two["bonferroni_dunn"]["runs"]} == {"B": False, "C": True}


def test_posthoc_marked_only_where_friedman_rejects_and_small_samples_flagged():
    ph = {"pairs": [{"a": "A", "b": "C", "significant": True}, {"a": "A", "b": "B", "significant": False}]}
    gated = stats._gate(ph, False, "pairs")["pairs"]
    assert [(p["significant"], p["significant_alone"]) for p in gated] == [(False, True), (False, False)]
    s = ordered_scores()
    res = stats.compare(s, ["A", "B", "C"])
    assert res["rejects_h0"] and all(p["significant"] == p["significant_alone"] for p in res["nemenyi"]["pairs"])
    assert res["caution"] is None
    assert "4 folds < 5" in stats.compare(s[:4], ["A", "B", "C"])["caution"]
    assert "3 folds < 4 runs" in stats.compare(np.random.default_rng(0).uniform(size=(3, 4)), list("ABCD"))["caution"]


def test_ties_share_ranks_like_scipy_rankdata():
    s = np.array([[0.7, 0.7, 0.8], [0.6, 0.65, 0.65], [0.9, 0.8, 0.85], [0.5, 0.5, 0.5]])
    expected = ss.rankdata(-s, axis=1).mean(axis=0)
    np.testing.assert_allclose(stats.average_ranks(s), expected)
    assert stats.average_ranks(s).tolist() == [2.125, 2.25, 1.625]   # (2.5+3+1+2)/4, (2.5+1.5+3+2)/4, (1+1.5+2+2)/4


def test_demsar_worked_example_critical_difference():
    # Demšar (2006) §3.2.4: k = 4 classifiers, N = 14 data sets, alpha = 0.05 -> CD = 1.25
    res = stats.nemenyi([3.143, 2.000, 2.893, 1.964], 14)
    assert res["cd"] == pytest.approx(1.25, abs=0.01)
    assert not any(p["significant"] for p in res["pairs"])   # largest difference 1.179 < CD


def test_two_runs_use_wilcoxon():
    s = ordered_scores()[:, :2]
    res = stats.compare(s, ["A", "B"])
    assert res["test"] == "wilcoxon" and res["friedman_p"] is None and res["nemenyi"] is None
    assert res["wilcoxon_p"] == pytest.approx(ss.wilcoxon(s[:, 0], s[:, 1]).pvalue)
    assert res["wilcoxon_p"] < 0.05


def test_identical_runs_are_equivalent():
    s = np.tile(np.array([[0.7], [0.8], [0.6]]), (1, 3))
    res = stats.compare(s, ["A", "B", "C"])
    assert res["friedman_p"] == 1.0 and not res["rejects_h0"]
    assert stats.significant_pairs(res) == []


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least 2 folds"):
        stats.compare(np.ones((1, 3)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="NaN"):
        stats.compare(np.array([[0.5, np.nan, 0.2], [0.1, 0.2, 0.3]]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="names"):
        stats.compare(np.ones((3, 3)), ["a", "b"])


def test_iman_davenport_against_the_f_distribution():
    s = np.array([[0.70, 0.72, 0.71], [0.60, 0.66, 0.61], [0.80, 0.79, 0.83], [0.50, 0.56, 0.55], [0.65, 0.70, 0.64]])
    n, k = s.shape
    chi2 = ss.friedmanchisquare(*s.T).statistic
    res = stats.compare(s, ["a", "b", "c"])
    f = (n - 1) * chi2 / (n * (k - 1) - chi2)
    assert res["iman_davenport_statistic"] == pytest.approx(f)
    assert res["iman_davenport_p"] == pytest.approx(ss.f.sf(f, k - 1, (k - 1) * (n - 1)))
