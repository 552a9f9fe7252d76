"""FER+ vote rows -> a label (and a target distribution), three ways.

Every FER+ face has 10 crowd votes over the columns :data:`VOTE_COLUMNS`
(8 emotions, ``unknown``, ``NF`` = not a face). Microsoft's FERPlus code offers
several "label modes"; ferdata implements three:

``majority`` (default, the rule behind every published FER+ accuracy)
    Drop every column with a single vote (outlier removal), then a column wins
    only if it holds *more than half* of the remaining votes; otherwise — and
    when the winner is ``unknown`` or ``NF`` — the face is skipped.
``plurality``
    The column with the most votes wins (ties skipped, or with ``tie="first"``
    broken in column order); ``unknown`` / ``NF`` winners are skipped. This is
    what ferdata did before it followed Microsoft's rule.
``probability``
    Microsoft's PLD target: drop single votes, then take the most voted
    columns (ties together) until they hold >= 75 % of the votes, at most 3
    emotions, stopping at ``unknown`` / ``NF``; the face is skipped if the kept
    emotions hold <= 50 % of the votes or more than 3 were needed. The target
    is the kept votes normalised; the label is its arg-max (first in
    canonical order on a tie).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import labels

VOTE_COLUMNS = labels.FERPLUS_COLUMNS + ("unknown", "NF")
N_EMO = len(labels.FERPLUS_COLUMNS)
LABEL_MODES = ("majority", "plurality", "probability")
TIES = ("skip", "first")


def _named(counts: np.ndarray) -> str:
    return ", ".join(f"{VOTE_COLUMNS[i]} {counts[i]:g}" for i in np.flatnonzero(counts))


def _non_emotion(w: int) -> Optional[str]:
    if VOTE_COLUMNS[w] == "unknown":
        return "majority vote is unknown"
    if VOTE_COLUMNS[w] == "NF":
        return "majority vote is NF (not a face)"
    return None


def drop_single_votes(counts: np.ndarray) -> np.ndarray:
    """A copy of ``counts`` with every column holding at most one vote set to 0."""
    out = np.asarray(counts, np.float64).copy()
    out[out <= 1.0] = 0.0
    return out


def plurality(counts: np.ndarray, tie: str = "skip") -> tuple[Optional[int], str]:
    """The most voted column (``tie``: "skip" or "first"); ``(None, reason)`` if skipped."""
    if counts.sum() <= 0:
        return None, "no votes"
    top = counts.max()
    winners = np.flatnonzero(counts == top)
    if len(winners) > 1 and tie == "skip":
        names = ", ".join(VOTE_COLUMNS[w] for w in winners)
        return None, f"tied vote ({names}: {top:g} each)"
    w = int(winners[0])
    reason = _non_emotion(w)
    return (None, reason) if reason else (w, "")


def majority(counts: np.ndarray) -> tuple[Optional[int], str]:
    """Microsoft's majority rule: drop single votes, then > 50 % of the rest wins."""
    kept = drop_single_votes(counts)
    total = kept.sum()
    if total <= 0:
        return None, f"no class has more than one vote ({_named(counts)})"
    w = int(np.argmax(kept))
    if not kept[w] > 0.5 * total:
        return None, f"no majority: no class has more than half of {total:g} votes " \
                     f"after dropping single votes ({_named(kept)})"
    reason = _non_emotion(w)
    return (None, reason) if reason else (w, "")


def probability(counts: np.ndarray) -> tuple[Optional[np.ndarray], str]:
    """Microsoft's "probability" target (see the module doc); ``(None, reason)`` if skipped."""
    raw = drop_single_votes(counts)
    total = raw.sum()
    if total <= 0:
        return None, f"no class has more than one vote ({_named(counts)})"
    kept = np.zeros_like(raw)
    part, count, valid = 0.0, 0, True
    while part < 0.75 * total and count < 3 and valid:
        top = raw.max()
        for i in range(len(raw)):
            if raw[i] == top:
                kept[i], raw[i] = top, 0.0
                part += top
                count += 1
                if i >= N_EMO:  # unknown / NF share the top count: stop here
                    valid = False
                    if kept.sum() > top:  # emotions came first: drop unknown/NF
                        kept[i] = 0.0
                        count -= 1
                    break
    if kept.sum() <= 0.5 * total or count > 3:
        return None, f"no stable vote distribution ({_named(drop_single_votes(counts))})"
    emo = kept[:N_EMO]
    if emo.sum() <= 0 or int(np.argmax(kept)) >= N_EMO:
        return None, _non_emotion(int(np.argmax(kept))) or "no emotion votes"
    return (emo / emo.sum()).astype(np.float32), ""


def label_votes(counts, mode: str = "majority", tie: str = "skip"):
    """Label and target of one FER+ vote row.

    Parameters
    ----------
    counts : (10,) array
        Votes in :data:`VOTE_COLUMNS` order.
    mode : {"majority", "plurality", "probability"}
    tie : {"skip", "first"}
        Ties of ``plurality`` only.

    Returns
    -------
    (label, votes, reason)
        ``label`` is the canonical class index (None when the face is skipped,
        with ``reason``); ``votes`` the (8,) float32 target: the emotion vote
        distribution, or Microsoft's filtered distribution for ``probability``.
    """
    counts = np.asarray(counts, np.float64)
    if mode == "probability":
        target, reason = probability(counts)
        if target is None:
            return None, None, reason
        return int(np.argmax(target)), target, ""
    w, reason = majority(counts) if mode == "majority" else plurality(counts, tie)
    if w is None:
        return None, None, reason
    emo = counts[:N_EMO]
    return w, (emo / emo.sum()).astype(np.float32), ""
