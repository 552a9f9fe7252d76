"""PyTorch datasets over ferdata shard folders and face stores.

* :class:`ShardDataset` — map-style, random access by sample index (``len(ds)``
  samples after filters); ``__getitems__`` reads a whole sampler batch in one go.
* :class:`ShardIterableDataset` — the training source: contiguous block reads, block +
  buffer shuffle, epoch order a pure function of ``(seed, epoch)``, the same number of
  samples on every DDP rank, split over DataLoader workers without duplicates, and
  ``state_dict()`` / ``load_state_dict()`` to resume in the middle of an epoch.
* :class:`FaceStoreDataset` — the real aligned faces of a ``faces.h5`` (the evaluation set).

All return dicts of tensors: ``image`` uint8 ``(C,H,W)`` (``(N,C,H,W)`` batched), ``label``
int64, ``mask`` / LBP codes ``(1,H,W)``, ``landmarks`` float32 ``(68,2)``, other integers
int64. Normalise and augment on the GPU with :mod:`ferdata.torch.transforms`. See
``docs/torch.md`` for recipes (single GPU, DDP, resume, Lightning).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
from torch.utils.data import Dataset

from ..errors import FerdataError
from .specs import Decode, Select, specs_from
from ._base import _Base, _face_keep, _names, _ShardBase, _split_names, _to_tensors  # noqa: F401  (_to_tensors: re-exported)
from ._io import FaceStoreSource
from .iterable import ShardIterableDataset

__all__ = ["ShardDataset", "ShardIterableDataset", "FaceStoreDataset"]


# ---------------------------------------------------------------------------------------
# map-style
# ---------------------------------------------------------------------------------------
class ShardDataset(_ShardBase, Dataset):
    """Map-style dataset over a shard folder: ``ds[i]`` is the ``i``-th selected sample.

    Parameters
    ----------
    path : str or Path
        A folder written by ``ferdata render`` (``shard-*.h5`` + ``manifest.json``).
    fields : sequence of str, default ("image", "label")
        Any of ``image``, ``label``, ``landmarks``, ``mask``, ``subject``, ``params``,
        ``face_index``, ``background``, ``bg_box``, ``index`` (the render's global sample
        index), ``lbp/<name>`` (codes stored by ``ferdata lbp``, e.g. ``lbp/circle_P8_R1``)
        and ``lbp:<variant>_P<P>_R<R>`` (codes computed on the fly from the returned gray
        image with :func:`ferdata.features.lbp`, e.g. ``lbp:uniform_P8_R1``, ``lbp:original``).
    transform : callable, optional
        Applied to each sample dict (after conversion to tensors).
    resize : int or (height, width), optional
        Output image size, e.g. ``32``, ``(48, 48)``, ``(144, 112)`` for seed 002's
        112×144 (width × height) input. Images: area (down) / bilinear (up) interpolation;
        JPEG shrunk ≥2× is decoded at 1/2, 1/4 or 1/8 scale first (much faster; pass
        ``reduced_decode=False`` for a full decode). Masks and stored LBP codes: nearest.
        Landmarks are scaled. On-the-fly LBP is computed on the resized image.
    gray : bool
        Return 1-channel images (JPEG decoded straight to luma; raw via ``COLOR_RGB2GRAY``).
    label_map : 'canonical' (default), 'present' or dict
        ``'canonical'``: the index in :data:`ferdata.labels.CLASSES`; ``'present'``:
        ``0..len(ds.classes)-1`` in the order of ``ds.classes``; a dict maps class names
        to the labels you want.
    subjects : list of str, optional
        Keep only samples of these subject names (e.g. the training subjects of a fold).
    face_indices : array of int, optional
        Keep only samples rendered from these face-store indices (e.g. ``fold.train`` of
        :func:`ferdata.train.folds.subject_kfold` run on the face store).
    split : str or list of str, optional
        Keep only faces of this official split (``train``/``val``/``test``); needs the
        face store (``faces=``, default: the path recorded in the manifest).
    verify : bool
        Check every shard's sha256 against the manifest on open (reads everything once).
        File sizes are always checked.
    allow_partial : bool
        Read an interrupted render (only the shards listed complete).
    locking : bool, optional
        ``h5py.File(locking=...)``; default: the ``HDF5_USE_FILE_LOCKING`` environment variable.

    Raises
    ------
    ferdata.errors.ShardError
        Missing manifest or shard, a shard whose size differs from the manifest (or
        sha256 with ``verify=True``), an unknown shard schema version, a missing field
        — each naming the file.
    ferdata.errors.FerdataError
        Bad options (unknown field, subject, split, resize, label_map).

    Examples
    --------
    >>> ds = ShardDataset("shards/", fields=("image", "label"), resize=32)  # doctest: +SKIP
    >>> ds[0]["image"].shape, ds[0]["label"].dtype                            # doctest: +SKIP
    (torch.Size([3, 32, 32]), torch.int64)
    """

    def __init__(self, path, fields: Optional[Iterable[str]] = None, *, select: Optional[Select] = None,
                 decode: Optional[Decode] = None, **kw):
        """``select`` / ``decode`` specs (:mod:`ferdata.torch.specs`), or their keys as keywords
        (``transform``, ``resize``, ``gray``, ``label_map``, ``subjects``, ``face_indices``,
        ``split``, ``faces``, ``verify``, ``allow_partial``, ``locking``, ``reduced_decode``)."""
        self._init_shards(path, *specs_from("ShardDataset", select, decode, fields, kw))

    def __len__(self) -> int:
        return self._n_selected()

    def __getitem__(self, i) -> dict:
        return self._getitem(i)

    def __getitems__(self, indices) -> list:
        """A sampler batch read in one pass (sorted, contiguous runs) — used by the DataLoader."""
        return self._getitems(indices)

    def __repr__(self):
        return f"ShardDataset({str(self.path)!r}, samples={len(self)}, fields={self.fields})"


# ---------------------------------------------------------------------------------------
# face store
# ---------------------------------------------------------------------------------------
class FaceStoreDataset(_Base, Dataset):
    """Map-style dataset over a face store (``faces.h5``): the real aligned faces.

    The evaluation set of the train-on-renders protocol: filter it to the held-out
    subjects of a fold and apply the same ``resize`` / ``gray`` / ``label_map`` as the
    training :class:`ShardIterableDataset`, so the model sees the same conventions.

    Parameters
    ----------
    path : str or Path
        A face store written by ``ferdata ingest`` / ``ferdata sample``.
    fields : sequence of str, default ("image", "label")
        Any of ``image``, ``label``, ``subject`` (index into ``ds.subjects``: the sorted
        subject names, the same indices as in shards rendered from this store),
        ``landmarks`` (float32, NaN where unknown), ``mask``, ``index`` (face index),
        ``votes`` (FER+), ``lbp/<name>`` (stored) and ``lbp:<spec>`` (on the fly).
    split : str or list of str, optional
        Official split(s) to keep (``train``, ``val``, ``test``).
    subjects : list of str, optional
        Subject names to keep.
    face_indices : array of int, optional
        Face indices to keep (e.g. ``fold.test``).
    transform, resize, gray, label_map, locking, reduced_decode
        As :class:`ShardDataset`.
    """

    def __init__(self, path, fields: Iterable[str] = ("image", "label"), transform: Optional[Callable] = None,
                 resize=None, gray: bool = False, label_map="canonical", split=None, subjects=None,
                 face_indices=None, locking=None, reduced_decode: bool = True):
        source = FaceStoreSource(path, locking=locking)
        self.path = Path(path)
        self._setup(source, fields, transform, resize, gray, label_map, reduced_decode)
        keep = np.ones(source.n, bool)
        if split is not None:
            keep &= np.isin(source.split_names.astype(str), _split_names(split))
        if subjects is not None:
            names = _names(subjects, "subjects")
            unknown = sorted(set(names) - set(source.subjects))
            if unknown:
                raise FerdataError(f"{self.path}: subject(s) {', '.join(map(repr, unknown[:5]))} "
                                   "not in this face store")
            keep &= np.isin(source.subject_names.astype(str), names)
        if face_indices is not None:
            keep &= _face_keep(source.n, face_indices, self.path)
        if not keep.all():
            self._sel = np.flatnonzero(keep).astype(np.int64)
            if self._sel.size == 0:
                raise FerdataError(f"{self.path}: no face matches the filters (split={split!r}, subjects={subjects!r})")
        source.close()

    @property
    def face_indices(self) -> np.ndarray:
        """Face-store index of each item."""
        return np.arange(self._source.n) if self._sel is None else self._sel.copy()

    @property
    def labels(self) -> np.ndarray:
        """Returned label of every item (for class weights / samplers), without reading images."""
        v = self._source.labels[self.face_indices]
        return v if self._pipe.lut is None else self._pipe.lut[v]

    def __len__(self) -> int:
        return self._n_selected()

    def __getitem__(self, i) -> dict:
        return self._getitem(i)

    def __getitems__(self, indices) -> list:
        return self._getitems(indices)

    def __repr__(self):
        return f"FaceStoreDataset({str(self.path)!r}, faces={len(self)}, fields={self.fields})"
