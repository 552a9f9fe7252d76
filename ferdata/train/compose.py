"""Dataset composition as the papers used it: a selection over the face store (numpy only).

The readers ingest everything a dataset offers; an experiment keeps a subset:

* ``classes = [...]`` — only these classes (VA-CNN on RaFD drops contempt);
* ``neutral_subjects = N`` — neutral faces: the first frame (first by source path) of
  ``N`` subjects drawn at random with the run's seed, one per subject (FERAtt on CK+:
  "the first frame of the sequence of 33 random selected subjects"). The draw is over
  subject ids only — no label is read to make it, so relabelling any face (a test
  subject's, say) cannot change which subjects are drawn; a drawn subject without a
  neutral face contributes none (reported in the composition);
* ``intensity = k`` — BU-3DFE: expressive faces of intensity ``k`` only, plus the one
  neutral face of each subject (FERAtt: 1 intensity × 6 expressions × 100 subjects +
  100 neutral).

:func:`compose_mask` returns a boolean mask over the face store's faces; the protocol
(:mod:`ferdata.train.split`) then splits the kept faces by subject or official split.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

import numpy as np

from ..errors import FerdataError
from ..labels import CLASS_INDEX, CLASSES

__all__ = ["compose_mask", "describe_composition"]

_BU3DFE = re.compile(r"(?:^|[/\\])[FM]\d{4}_([A-Z]{2})(\d{2})")


def _class_mask(labels: np.ndarray, classes: Optional[Sequence[str]], present: Sequence[str], where: str):
    if classes is None:
        return np.ones(labels.shape, bool)
    unknown = [c for c in classes if c not in CLASS_INDEX]
    if unknown:
        raise FerdataError(f"{where}: classes: unknown class name(s) {unknown} (known: {', '.join(CLASSES)})")
    absent = [c for c in classes if c not in present]
    if absent:
        raise FerdataError(f"{where}: classes: {absent} not in this face store (it has {', '.join(present)})")
    return np.isin(labels, [CLASS_INDEX[c] for c in classes])


def draw_subjects(subjects, n: int, seed: int, where: str) -> list:
    """``n`` subject ids drawn with ``seed`` from the sorted ids (labels play no part)."""
    cand = sorted({s for s in np.asarray(subjects).astype(str).tolist() if s})
    if len(cand) < n:
        raise FerdataError(f"{where}: neutral_subjects={n} but the face store has only {len(cand)} subjects")
    return sorted(np.random.default_rng(seed).permutation(np.array(cand, dtype=object))[:n].tolist())


def _neutral_mask(labels, subjects, sources, n: int, seed: int, where: str) -> np.ndarray:
    """Keep every non-neutral face and the first neutral face of ``n`` seeded-random subjects."""
    neutral = labels == CLASS_INDEX["neutral"]
    keep = ~neutral
    for s in draw_subjects(subjects, n, seed, where):
        idx = np.flatnonzero(neutral & (subjects == s))
        if idx.size:
            keep[idx[np.argsort(sources[idx], kind="stable")[0]]] = True
    return keep


def _intensity_mask(labels, subjects, sources, k: int, where: str) -> np.ndarray:
    keep = np.zeros(labels.shape, bool)
    seen_neutral = set()
    order = np.argsort(sources, kind="stable")
    for i in order.tolist():
        m = _BU3DFE.search(str(sources[i]))
        if m is None:
            raise FerdataError(f"{where}: intensity= needs BU-3DFE file names (like F0001_AN04WH_F2D.bmp); "
                               f"face {i} has source {sources[i]!r}")
        code, level = m.group(1), int(m.group(2))
        if code == "NE":
            if subjects[i] not in seen_neutral:
                seen_neutral.add(subjects[i])
                keep[i] = True
        elif level == k:
            keep[i] = True
    return keep


def compose_mask(labels, subjects, sources, present_classes, *, classes=None, neutral_subjects=None,
                 intensity=None, seed: int = 0, where: str = "face store") -> np.ndarray:
    """Boolean mask over the faces kept by the composition options (all True when none is set).

    ``labels`` canonical class indices, ``subjects`` / ``sources`` the face store's
    string columns, ``present_classes`` its ``classes`` attribute. Raises
    :class:`FerdataError` naming ``where`` when an option cannot apply.
    """
    labels = np.asarray(labels)
    subjects = np.asarray(subjects).astype(str)
    sources = np.asarray(sources).astype(str)
    keep = _class_mask(labels, classes, present_classes, where)
    if intensity is not None:
        keep &= _intensity_mask(labels, subjects, sources, int(intensity), where)
    if neutral_subjects is not None:
        keep &= _neutral_mask(labels, subjects, sources, int(neutral_subjects), seed, where)
    if not keep.any():
        raise FerdataError(f"{where}: the composition (classes={classes}, neutral_subjects={neutral_subjects}, "
                           f"intensity={intensity}) keeps no face")
    return keep


def describe_composition(labels, keep) -> dict:
    """Faces kept per class (JSON-able)."""
    labels = np.asarray(labels)[np.asarray(keep)]
    counts = np.bincount(labels, minlength=len(CLASSES))
    return {"faces": int(labels.size), "per_class": {CLASSES[i]: int(c) for i, c in enumerate(counts) if c}}
