"""Evaluation protocols as index splits (numpy only).

* Subject-independent k-fold — "person-independent" FER (seed 000 §4.1, §4.3: CK+ and
  BU-3DFE with leave-10-subjects-out, L-10-SO; seed 001: 5-fold on CK+ / JAFFE;
  seed 002: RaFD 5 folds of disjoint subjects): :func:`subject_kfold`.
* A single subject-disjoint train / (val) / test split: :func:`split_by_subject`.
* The official FER2013 splits (``Usage``: Training / PublicTest / PrivateTest →
  ``"train"`` / ``"val"`` / ``"test"``): :func:`fer2013_official_split`, :func:`official_split`.

Guarantee: no subject is ever on both sides of a split, and in :func:`subject_kfold`
every sample is in exactly one test fold (:func:`check_subject_disjoint` verifies it and
is run on every split made here).

Subjects may be any hashable-as-numpy values (strings such as ``"S005"``, ints). Folds
are deterministic in ``(subjects, k / subjects_per_fold, seed)``: the unique subjects
are sorted, then shuffled with ``numpy.random.default_rng(seed)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np

__all__ = [
    "Fold", "subject_kfold", "split_by_subject", "check_subject_disjoint", "fold_ids",
    "FER2013_USAGE", "SPLIT_NAMES", "official_split", "fer2013_official_split",
]

#: FER2013 ``Usage`` column → ferdata split name (same mapping as ``ferdata.datasets.fer2013``).
FER2013_USAGE: Dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Fold:
    """One fold: sample indices (sorted int64) and the held-out subjects.

    Unpacks like scikit-learn's ``(train, test)``: ``for train, test in folds: …``.
    """

    train: np.ndarray
    test: np.ndarray
    test_subjects: np.ndarray = field(default_factory=lambda: np.array([]))

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.train
        yield self.test

    def to_dict(self) -> dict:
        """JSON-able form (lists)."""
        return {"train": self.train.tolist(), "test": self.test.tolist(),
                "test_subjects": [s.item() if hasattr(s, "item") else s for s in self.test_subjects]}


def _subjects(subjects) -> np.ndarray:
    s = np.asarray(subjects)
    if s.ndim != 1:
        raise ValueError(f"subjects must be 1-D (one id per sample), got shape {s.shape}")
    if s.size == 0:
        raise ValueError("subjects is empty")
    if s.dtype == object:
        if any(v is None for v in s):
            raise ValueError("subjects contains None: every sample needs a subject id for subject-independent splits")
        s = s.astype(str)
    if s.dtype.kind in "US" and np.any(s == ""):
        raise ValueError("subjects contains empty ids: every sample needs a subject id "
                         "(datasets without subjects, e.g. FER2013, use their official split)")
    if s.dtype.kind == "f" and np.isnan(s).any():
        raise ValueError("subjects contains NaN ids")
    return s


def _codes(s: np.ndarray):
    """Unique subjects (sorted) and each sample's integer code into them."""
    uniq, codes = np.unique(s, return_inverse=True)
    return uniq, codes.ravel().astype(np.int64)


def _check_codes(uniq: np.ndarray, codes: np.ndarray, sets: Sequence[np.ndarray]) -> None:
    n = codes.size
    seen = np.zeros(n, dtype=bool)
    owner = np.full(uniq.size, -1, dtype=np.int64)
    for k, idx in enumerate(sets):
        idx = np.asarray(idx, dtype=np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"sample index out of range [0, {n})")
        if (idx.size and np.bincount(idx, minlength=n).max() > 1) or seen[idx].any():
            raise ValueError("a sample index is in more than one split")
        seen[idx] = True
        present = np.flatnonzero(np.bincount(codes[idx], minlength=uniq.size))
        clash = present[owner[present] >= 0]
        if clash.size:
            j = int(clash[0])
            raise ValueError(f"subject {uniq[j].item()!r} is in split {int(owner[j])} and split {k}")
        owner[present] = k


def check_subject_disjoint(subjects, *index_sets: Sequence[int]) -> None:
    """Raise ``ValueError`` if a subject occurs in two of the index sets, or a sample index in two."""
    uniq, codes = _codes(_subjects(subjects))
    _check_codes(uniq, codes, index_sets)


def subject_kfold(subjects, k: Optional[int] = None, subjects_per_fold: Optional[int] = None,
                  seed: int = 0, shuffle: bool = True) -> List[Fold]:
    """Subject-independent k-fold cross-validation.

    Give exactly one of

    * ``k`` — the subjects are dealt into ``k`` groups of near-equal subject counts
      (sizes differ by at most one), e.g. ``k=5`` for JAFFE / CK+ 5-fold;
    * ``subjects_per_fold`` — groups of that many subjects (the last group takes the
      remainder), e.g. ``subjects_per_fold=10`` for CK+ leave-10-subjects-out
      (118 subjects → 12 folds, the last with 8).

    Parameters
    ----------
    subjects : (N,) array-like — the subject id of every sample.
    k, subjects_per_fold : int
    seed : int — shuffles the (sorted) unique subjects before grouping.
    shuffle : bool — ``False`` keeps the sorted subject order (e.g. RaFD's contiguous
        subject ranges).

    Returns
    -------
    list of :class:`Fold` — ``fold.test`` are the samples of the held-out subjects,
    ``fold.train`` all others; every sample is in exactly one ``test``.

    Examples
    --------
    >>> subj = ["a", "a", "b", "c", "c", "d"]
    >>> folds = subject_kfold(subj, k=2, seed=0)
    >>> sorted(np.concatenate([f.test for f in folds]).tolist())
    [0, 1, 2, 3, 4, 5]
    """
    s = _subjects(subjects)
    if (k is None) == (subjects_per_fold is None):
        raise ValueError("give exactly one of k and subjects_per_fold")
    uniq, codes = _codes(s)
    n_subj = uniq.size
    order = np.random.default_rng(seed).permutation(n_subj) if shuffle else np.arange(n_subj)
    if k is not None:
        k = int(k)
        if k < 2:
            raise ValueError(f"k must be >= 2, got {k}")
        if k > n_subj:
            raise ValueError(f"k={k} folds need at least {k} subjects, got {n_subj}")
        groups = np.array_split(order, k)
    else:
        spf = int(subjects_per_fold)
        if spf < 1:
            raise ValueError(f"subjects_per_fold must be >= 1, got {spf}")
        if spf >= n_subj:
            raise ValueError(f"subjects_per_fold={spf} leaves no training subject ({n_subj} subjects)")
        groups = [order[i:i + spf] for i in range(0, n_subj, spf)]
    folds = []
    for g in groups:
        lut = np.zeros(n_subj, dtype=bool)
        lut[g] = True
        in_test = lut[codes]
        fold = Fold(np.flatnonzero(~in_test), np.flatnonzero(in_test), uniq[np.sort(g)])
        _check_codes(uniq, codes, (fold.train, fold.test))
        folds.append(fold)
    _check_codes(uniq, codes, [f.test for f in folds])     # every sample tested once at most …
    if sum(f.test.size for f in folds) != s.size:           # … and at least once
        raise AssertionError("folds do not cover every sample")
    return folds


def fold_ids(n_samples: int, folds: Sequence[Fold]) -> np.ndarray:
    """``(N,)`` int array: the fold in which each sample is tested (−1 if none)."""
    out = np.full(int(n_samples), -1, dtype=np.int64)
    for i, f in enumerate(folds):
        if np.any(out[f.test] >= 0):
            raise ValueError(f"fold {i} re-tests samples of an earlier fold")
        out[f.test] = i
    return out


def split_by_subject(subjects, test_subjects: Optional[Iterable] = None, *, test_fraction: Optional[float] = None,
                     val_fraction: float = 0.0, seed: int = 0) -> Dict[str, np.ndarray]:
    """One subject-disjoint split: ``{"train": idx, "test": idx}`` (+ ``"val"`` if asked).

    Either name the ``test_subjects`` explicitly, or give ``test_fraction`` of the
    subjects (rounded, at least one) to hold out at random. ``val_fraction`` of the
    subjects (rounded, at least one when > 0) are further held out of training as
    ``"val"`` (subject-disjoint from both). Fractions count subjects, not samples.
    """
    s = _subjects(subjects)
    uniq, codes = _codes(s)
    rng = np.random.default_rng(seed)
    if (test_subjects is None) == (test_fraction is None):
        raise ValueError("give exactly one of test_subjects and test_fraction")
    if test_subjects is not None:
        wanted = np.unique(np.asarray(list(test_subjects)).astype(s.dtype))
        unknown = np.setdiff1d(wanted, uniq)
        if unknown.size:
            raise ValueError(f"test subject(s) not in subjects: {unknown[:5].tolist()}")
        test_c = np.searchsorted(uniq, wanted)
        rest = np.setdiff1d(np.arange(uniq.size), test_c)
    else:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        perm = rng.permutation(uniq.size)
        n_test = max(1, int(round(test_fraction * uniq.size)))
        test_c, rest = perm[:n_test], np.sort(perm[n_test:])
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    val_c = rest[:0]
    if val_fraction > 0:
        rest = rest[rng.permutation(rest.size)]
        n_val = max(1, int(round(val_fraction * uniq.size)))
        val_c, rest = rest[:n_val], rest[n_val:]
    if rest.size == 0:
        raise ValueError("no subject left for training")
    role = np.zeros(uniq.size, dtype=np.int8)            # 0 train, 1 val, 2 test
    role[val_c] = 1
    role[test_c] = 2
    r = role[codes]
    out = {"train": np.flatnonzero(r == 0)}
    if val_fraction > 0:
        out["val"] = np.flatnonzero(r == 1)
    out["test"] = np.flatnonzero(r == 2)
    _check_codes(uniq, codes, list(out.values()))
    return out


def official_split(splits) -> Dict[str, np.ndarray]:
    """Indices per official split from a per-sample split-name array (``"train"`` / ``"val"`` / ``"test"``).

    FER2013 ``Usage`` strings (``Training`` / ``PublicTest`` / ``PrivateTest``) are
    accepted and mapped too. Returns ``{"train": idx, "val": idx, "test": idx}`` (every
    key present, possibly empty). An unknown or empty name raises ``ValueError``.
    """
    a = np.asarray(splits)
    if a.ndim != 1:
        raise ValueError(f"splits must be 1-D, got shape {a.shape}")
    if a.dtype.kind == "S":
        a = np.char.decode(a, "utf-8")
    a = a.astype(str)
    mapped = np.array([FER2013_USAGE.get(v.strip(), v.strip()) for v in a.tolist()], dtype=object)
    bad = sorted({v for v in mapped.tolist() if v not in SPLIT_NAMES})
    if bad:
        raise ValueError(f"unknown split name(s) {bad[:5]}; expected {list(SPLIT_NAMES)} "
                         f"or FER2013 Usage {list(FER2013_USAGE)}")
    return {name: np.flatnonzero(mapped == name) for name in SPLIT_NAMES}


def fer2013_official_split(usage) -> Dict[str, np.ndarray]:
    """The official FER2013 split from its ``Usage`` column (or already-mapped names):
    Training → ``"train"`` (28,709), PublicTest → ``"val"`` (3,589), PrivateTest →
    ``"test"`` (3,589). Same as :func:`official_split`."""
    return official_split(usage)
