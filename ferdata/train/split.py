"""The three disjoint sides of an experiment — train / val / test — built once (numpy only).

``resolve_split(cfg)`` turns a :class:`~ferdata.config.TrainConfig` into a :class:`Split`:

``kfold``     the face store's subjects (after the composition of
              :mod:`ferdata.train.compose`) are dealt into folds (``folds`` = k, or
              ``subjects_per_fold`` — CK+ leave-10-subjects-out); fold ``fold`` is the
              **test** side; from the other subjects ``val_subjects`` (or ``val_fraction``
              of them, at least one) are drawn with the run's seed as the **val** side;
              the rest is **train**.
``official``  the dataset's own splits: train = ``train`` (FER2013 Training), val =
              ``val`` (PublicTest), test = ``test`` (PrivateTest).
``holdout``   renders only (the built-in sample): train = ``data``, val = ``val_data``,
              test = ``test_data``, three renders with three different seeds.

Every side of ``kfold`` / ``official`` is a sorted array of face-store indices; the
data builder reads those faces (real faces) or the renders made from them, so a
subject on the test side is never rendered into, nor read by, training. Overlap of two
sides (a face, or for ``kfold`` a subject) raises :class:`FerdataError`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import FerdataError
from .compose import compose_mask, describe_composition
from .folds import check_subject_disjoint, subject_kfold

__all__ = ["Side", "Split", "resolve_split", "n_folds", "kfold_folds", "SIDES"]

SIDES = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Side:
    """One side: face-store indices (``kfold`` / ``official``) or a render folder (``holdout``)."""

    name: str
    faces: Optional[np.ndarray] = None
    renders: Optional[str] = None
    subjects: tuple = ()
    split: Optional[str] = None

    def __len__(self) -> int:
        return 0 if self.faces is None else int(self.faces.size)


@dataclasses.dataclass(frozen=True)
class Split:
    protocol: str
    train: Side
    val: Side
    test: Side
    faces: Optional[str] = None          # the face store the indices refer to
    n_folds: int = 1
    composition: Optional[dict] = None
    same_faces: bool = False             # holdout: the three sides render the same faces (allowed, flagged)

    def sides(self):
        return (self.train, self.val, self.test)

    def check(self, subjects: Optional[np.ndarray] = None) -> "Split":
        """Raise FerdataError if two sides share a face (or, given ``subjects``, a subject)."""
        if self.protocol == "holdout":
            paths = [Path(s.renders).resolve() for s in self.sides()]
            if len(set(paths)) != 3:
                raise FerdataError("holdout: data, val_data and test_data must be three different render folders")
            return self
        idx = [s.faces for s in self.sides()]
        for s in self.sides():
            if s.faces is None or s.faces.size == 0:
                raise FerdataError(f"{self.protocol}: the {s.name} side is empty")
        try:
            if subjects is not None:
                check_subject_disjoint(subjects, *idx)
            elif np.intersect1d(idx[0], idx[1]).size or np.intersect1d(idx[0], idx[2]).size \
                    or np.intersect1d(idx[1], idx[2]).size:
                raise ValueError("a face is on two sides")
        except ValueError as exc:
            raise FerdataError(f"{self.protocol} split overlaps: {exc}") from None
        return self

    def describe(self) -> dict:
        """What config.json records under ``"split"``."""
        d: dict = {"protocol": self.protocol}
        for s in self.sides():
            if self.protocol == "kfold":
                d[f"{s.name}_subjects"] = list(s.subjects)
            elif self.protocol == "official":
                d[f"{s.name}_split"] = s.split
            else:
                d[f"{s.name}_renders"] = s.renders
            if s.faces is not None:
                d[f"{s.name}_faces"] = len(s)
        if self.protocol == "kfold":
            d["folds"] = self.n_folds
        if self.same_faces:
            d["same_faces"] = True  # renders of the training faces on every side: not a FER result
        if self.composition is not None:
            d["composition"] = self.composition
        return d


def _read_store(path):
    from ..faces.store import FaceStore

    with FaceStore(path) as fs:
        return (fs.labels, np.asarray(fs.subjects).astype(str), np.asarray(fs.sources).astype(str),
                np.asarray(fs.splits).astype(str), list(fs.classes))


def _kept(cfg, path):
    labels, subjects, sources, splits, classes = _read_store(path)
    keep = compose_mask(labels, subjects, sources, classes, classes=cfg.classes,
                        neutral_subjects=cfg.neutral_subjects, intensity=cfg.intensity, seed=cfg.seed,
                        where=str(path))
    return np.flatnonzero(keep), labels, subjects, splits, keep


def kfold_folds(cfg, subjects: np.ndarray, where: str):
    """The subject-independent folds of ``subjects`` (one id per kept face)."""
    if (subjects == "").any():
        raise FerdataError(f"{where}: protocol=kfold needs a subject id for every face "
                           f"({int((subjects == '').sum())} have none; use protocol=official)")
    try:
        if cfg.subjects_per_fold is not None:
            return subject_kfold(subjects, subjects_per_fold=cfg.subjects_per_fold, seed=cfg.seed)
        return subject_kfold(subjects, k=cfg.folds or 5, seed=cfg.seed)
    except ValueError as exc:
        raise FerdataError(f"{where}: {exc}") from None


def _val_subjects(cfg, train_subjects: list, where: str) -> set:
    n = cfg.val_subjects if cfg.val_subjects is not None else max(1, int(round(cfg.val_fraction * len(train_subjects))))
    if n >= len(train_subjects):
        raise FerdataError(f"{where}: {n} validation subject(s) leave no training subject "
                           f"(the training side of fold {cfg.fold} has {len(train_subjects)})")
    rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), int(cfg.fold), 1]))
    return set(np.asarray(train_subjects, dtype=object)[rng.permutation(len(train_subjects))[:n]].tolist())


def _kfold(cfg, path) -> Split:
    idx, labels, subjects, _, keep = _kept(cfg, path)
    folds = kfold_folds(cfg, subjects[idx], str(path))
    if not 0 <= cfg.fold < len(folds):
        raise FerdataError(f"fold {cfg.fold} out of range: {path} gives {len(folds)} folds")
    f = folds[cfg.fold]
    test, rest = idx[f.test], idx[f.train]
    rest_subj = sorted(set(subjects[rest].tolist()))
    val_s = _val_subjects(cfg, rest_subj, str(path))
    in_val = np.isin(subjects[rest], sorted(val_s))
    val, train = rest[in_val], rest[~in_val]

    def side(name, faces):
        return Side(name, np.sort(faces), subjects=tuple(sorted(set(subjects[faces].tolist()))))

    sp = Split("kfold", side("train", train), side("val", val), side("test", test), str(path), len(folds),
               describe_composition(labels, keep))
    return sp.check(subjects)


def _official(cfg, path) -> Split:
    idx, labels, _, splits, keep = _kept(cfg, path)
    sides = []
    for name in SIDES:
        faces = idx[splits[idx] == name]
        if faces.size == 0:
            have = sorted(set(splits[idx].tolist()) - {""})
            raise FerdataError(f"{path}: protocol=official needs faces in the '{name}' split "
                               f"(this store has {have or 'no splits'})")
        sides.append(Side(name, faces, split=name))
    return Split("official", *sides, faces=str(path), composition=describe_composition(labels, keep)).check()


def _holdout(cfg, data, val_data, test_data, faces=None, same_faces: bool = False) -> Split:
    if not val_data or not test_data:
        raise FerdataError("protocol=holdout needs val_data and test_data (render folders made with two other seeds)")
    sp = Split("holdout", Side("train", renders=str(data)), Side("val", renders=str(val_data)),
               Side("test", renders=str(test_data)), faces=str(faces) if faces else None)
    sp.check()
    from ..shards.manifest import load_manifest

    manifests = [load_manifest(s.renders) for s in sp.sides()]
    seeds = [m["config"]["seed"] for m in manifests]
    if len(set(seeds)) != 3:
        raise FerdataError(f"holdout: train/val/test renders must use three different seeds, got {seeds}")
    stores = [m.get("face_store", {}).get("content_sha256") for m in manifests]
    shared = [s.name for s, h in zip(sp.sides()[1:], stores[1:]) if h is not None and h == stores[0]]
    if shared and not same_faces:
        raise FerdataError(f"holdout: the {' and '.join(shared)} renders are of the same faces as the training renders "
                           "(same face store content): the test would measure render generalisation, not FER. "
                           "Render them from held-out faces, use protocol kfold/official, or set "
                           "holdout_same_faces = true to run it anyway (recorded)")
    return dataclasses.replace(sp, same_faces=bool(shared))


def resolve_split(cfg, faces=None, data=None, val_data=None, test_data=None, builtin_sample: bool = False) -> Split:
    """The :class:`Split` of ``cfg`` (paths default to the config's; the built-in sample passes its own
    and ``builtin_sample``: its two faces are on every side, a loop check, recorded as such)."""
    faces = faces if faces is not None else cfg.faces
    if cfg.protocol == "holdout":
        return _holdout(cfg, data or cfg.data, val_data or cfg.val_data, test_data or cfg.test_data, faces,
                        same_faces=cfg.holdout_same_faces or builtin_sample)
    if faces is None:
        raise FerdataError(f"protocol={cfg.protocol} needs the face store (faces = ...)")
    return _kfold(cfg, Path(faces)) if cfg.protocol == "kfold" else _official(cfg, Path(faces))


def n_folds(cfg) -> int:
    """Number of folds ``cfg`` resolves to (``kfold``); 1 for ``official`` / ``holdout``."""
    if cfg.protocol != "kfold":
        return 1
    if cfg.faces is None:
        raise FerdataError("protocol=kfold needs the face store (faces = ...)")
    idx, _, subjects, _, _ = _kept(cfg, Path(cfg.faces))
    return len(kfold_folds(cfg, subjects[idx], str(cfg.faces)))
