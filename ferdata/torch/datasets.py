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

import multiprocessing
import multiprocessing.context
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from ..errors import FerdataError
from ..labels import CLASSES
from . import _order
from ._fields import DecodeError, Pipeline
from ._io import FaceStoreSource, ShardSource

__all__ = ["ShardDataset", "ShardIterableDataset", "FaceStoreDataset"]

_STATE_FORMAT = "ferdata.ShardIterableDataset/1"
_DECODE_BATCH = 128  # per-sample mode decodes this many samples at a time


# ---------------------------------------------------------------------------------------
# numpy batch -> tensors
# ---------------------------------------------------------------------------------------
def _to_tensors(batch: dict, channels_last: bool = False) -> dict:
    """Batch-first numpy arrays -> tensors; images NHWC -> NCHW, (n,H,W) planes -> (n,1,H,W).

    ``channels_last``: the image tensor is a zero-copy NCHW view of the NHWC array (batch
    mode). Otherwise images are transposed once per batch so that each sample is a
    contiguous CHW tensor: collating contiguous tensors is a plain copy, while stacking
    strided views is ~10x slower and, with several intra-op threads on a busy machine,
    pathologically so.
    """
    out = {}
    for k, v in batch.items():
        if v.ndim == 4:  # images (n,h,w,C)
            if channels_last:
                t = torch.from_numpy(np.ascontiguousarray(v)).permute(0, 3, 1, 2)
            elif v.shape[-1] == 1:
                t = torch.from_numpy(np.ascontiguousarray(v).reshape(v.shape[0], 1, *v.shape[1:3]))
            else:
                t = torch.from_numpy(np.ascontiguousarray(v.transpose(0, 3, 1, 2)))
        else:
            t = torch.from_numpy(np.ascontiguousarray(v))
            if t.ndim == 3 and (k == "mask" or k.startswith("lbp")):
                t = t.unsqueeze(1)
        out[k] = t
    return out


def _split(batch_t: dict, n: int):
    keys = list(batch_t)
    cols = [batch_t[k] for k in keys]
    for i in range(n):
        yield {k: c[i] for k, c in zip(keys, cols)}


def _names(values, what) -> list:
    if isinstance(values, (str, bytes)):
        raise FerdataError(f"{what} must be a list of names, not a single string {values!r}")
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _split_names(split) -> list:
    return [split] if isinstance(split, str) else _names(split, "split")


def _face_keep(n_faces: int, face_indices, source_path) -> np.ndarray:
    keep = np.zeros(n_faces, bool)
    idx = np.asarray(list(face_indices) if not isinstance(face_indices, np.ndarray) else face_indices)
    if idx.size and (idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= n_faces):
        raise FerdataError(f"{source_path}: face_indices must be integers in 0..{n_faces - 1} "
                           "(indices into the face store, e.g. a Fold's train/test arrays)")
    keep[idx.astype(np.int64)] = True
    return keep


# ---------------------------------------------------------------------------------------
# common base
# ---------------------------------------------------------------------------------------
class _Base:
    _source = None
    _sel: Optional[np.ndarray] = None

    def _setup(self, source, fields, transform, resize, gray, label_map, reduced_decode):
        self._source = source
        self._pipe = Pipeline(fields, source, resize=resize, gray=gray, label_map=label_map,
                              reduced_decode=reduced_decode)
        self.transform = transform
        self.label_map = label_map

    # -- metadata ---------------------------------------------------------------------------
    @property
    def decode_threads(self):
        """JPEG decode threads per process: None (default) = every core in the main process,
        one inside a DataLoader worker; an int forces it (docs/torch.md, "Decoding")."""
        return self._pipe.decode_threads

    @decode_threads.setter
    def decode_threads(self, n) -> None:
        if n is not None and (isinstance(n, bool) or int(n) < 1):
            raise FerdataError(f"decode_threads must be >= 1 or None (automatic), got {n!r}")
        self._pipe.decode_threads = n

    def _process(self, raw: dict, positions: np.ndarray) -> dict:
        """``Pipeline.process`` with a decode failure named by file and sample."""
        try:
            return self._pipe.process(raw)
        except DecodeError as exc:
            where = self._source.describe(int(positions[exc.item])) if exc.item is not None else str(self._source.path)
            raise FerdataError(f"{where}: {exc}") from exc

    @property
    def fields(self) -> tuple:
        return self._pipe.fields

    @property
    def classes(self) -> list:
        """Names of the classes present (canonical order): ``label_map='present'`` indexes this."""
        return list(self._source.classes)

    @property
    def label_names(self) -> list:
        """Class name of each returned label value (``CLASSES`` for canonical labels)."""
        if self._pipe.lut is None:
            return list(CLASSES)
        names = [None] * (int(self._pipe.lut.max()) + 1)
        for ci, li in enumerate(self._pipe.lut.tolist()):
            if li >= 0:
                names[li] = CLASSES[ci]
        return names

    @property
    def num_classes(self) -> int:
        """Size of a classifier's output for the returned labels."""
        return len(self.label_names)

    @property
    def subjects(self) -> list:
        """Subject names; the ``subject`` field is an index into this list."""
        return list(self._source.subjects)

    @property
    def image_shape(self) -> tuple:
        """(C, H, W) of the returned images."""
        return (self._pipe.out_c,) + tuple(self._pipe.out_hw)

    def _n_selected(self) -> int:
        return self._source.n if self._sel is None else int(self._sel.size)

    def _positions(self, sel_idx: np.ndarray) -> np.ndarray:
        return sel_idx if self._sel is None else self._sel[sel_idx]

    def _read(self, sel_idx: np.ndarray) -> dict:
        """Selection indices -> processed numpy batch (request order)."""
        pos = self._positions(np.asarray(sel_idx, np.int64))
        return self._process(self._source.read(self._pipe.stored, pos), pos)

    def close(self):
        """Close this process's open HDF5 files (reopened on the next read)."""
        if self._source is not None:
            self._source.close()

    # map-style access shared by ShardDataset and FaceStoreDataset
    def _getitem(self, i):
        n = self._n_selected()
        if isinstance(i, (torch.Tensor, np.integer)):
            i = int(i)
        if not isinstance(i, int):
            raise TypeError(f"index must be an int, got {type(i).__name__}")
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} samples")
        sample = next(_split(_to_tensors(self._read(np.array([i]))), 1))
        return self.transform(sample) if self.transform is not None else sample

    def _getitems(self, indices):
        idx = np.asarray([int(i) for i in indices], np.int64)
        n = self._n_selected()
        idx = np.where(idx < 0, idx + n, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"index out of range for a dataset of {n} samples")
        samples = list(_split(_to_tensors(self._read(idx)), idx.size))
        if self.transform is not None:
            samples = [self.transform(s) for s in samples]
        return samples


class _ShardBase(_Base):
    def _init_shards(self, path, fields, transform, resize, gray, label_map, subjects, face_indices, split,
                     faces, verify, allow_partial, locking, reduced_decode):
        source = ShardSource(path, verify=verify, allow_partial=allow_partial, locking=locking)
        self.path = Path(path)
        self._setup(source, fields, transform, resize, gray, label_map, reduced_decode)
        self._sel = self._select(subjects, face_indices, split, faces)
        self._shard_counts = (np.diff(np.searchsorted(self._sel, source.start)) if self._sel is not None
                              else source.counts.copy())
        source.close()  # validated; each process (DataLoader worker) opens what it reads, lazily

    @property
    def param_names(self) -> list:
        return list(self._source.param_names)

    @property
    def manifest(self) -> dict:
        """The manifest header (config, face store, totals)."""
        return dict(self._source.manifest)

    @property
    def labels(self) -> np.ndarray:
        """Returned label of every selected sample (for class weights / samplers), without reading images."""
        v = self._source.column("label").astype(np.int64)
        if self._sel is not None:
            v = v[self._sel]
        return v if self._pipe.lut is None else self._pipe.lut[v]

    def _select(self, subjects, face_indices, split, faces) -> Optional[np.ndarray]:
        src = self._source
        if subjects is None and face_indices is None and split is None:
            return None
        keep = np.ones(src.n, bool)
        if subjects is not None:
            names = _names(subjects, "subjects")
            known = {s: i for i, s in enumerate(src.subjects)}
            unknown = [s for s in names if s not in known]
            if unknown:
                raise FerdataError(f"{self.path}: subject(s) {', '.join(map(repr, unknown[:5]))} not in this render "
                                   f"(it has {len(known)} subjects, e.g. {', '.join(list(known)[:5])})")
            keep &= np.isin(src.column("subject"), [known[s] for s in names])
        if face_indices is not None or split is not None:
            fidx = src.column("face_index").astype(np.int64)
            n_faces = int(src.manifest.get("face_store", {}).get("faces") or (fidx.max() + 1))
            face_ok = np.ones(n_faces, bool)
            if face_indices is not None:
                face_ok &= _face_keep(n_faces, face_indices, self.path)
            if split is not None:
                face_ok &= self._split_faces(n_faces, _split_names(split), faces)
            keep &= face_ok[fidx]
        sel = np.flatnonzero(keep).astype(np.int64)
        if sel.size == 0:
            raise FerdataError(f"{self.path}: no sample matches the filters (subjects={subjects!r}, "
                               f"split={split!r}, face_indices given: {face_indices is not None})")
        return sel

    def _split_faces(self, n_faces, splits, faces) -> np.ndarray:
        from ..facestore import FaceStore

        fs_info = self._source.manifest.get("face_store", {})
        cands = [Path(faces)] if faces is not None else [Path(fs_info.get("path", "")),
                                                         self.path / Path(fs_info.get("path", "")).name,
                                                         self.path.parent / Path(fs_info.get("path", "")).name]
        path = next((p for p in cands if str(p) and p.is_file()), None)
        if path is None:
            raise FerdataError(f"{self.path}: split= needs the face store the render was made from "
                               f"(manifest says {fs_info.get('path')!r}, not found); pass faces='path/to/faces.h5'")
        want = fs_info.get("content_sha256")
        if want:  # by content (docs/shards.md): the path may be spelled differently or the store moved
            from ..render.identity import face_store_hash

            if face_store_hash(path) != want:
                raise FerdataError(f"{path}: its content differs from the face store the render in {self.path} "
                                   "was made from (content sha256 in manifest.json): not its face store")
        with FaceStore(path) as fs:
            if len(fs) != n_faces:  # manifests before content hashes: the face count is all there is
                raise FerdataError(f"{path}: has {len(fs)} faces but the render in {self.path} was made from "
                                   f"{n_faces}: not its face store")
            return np.isin(fs.splits.astype(str), splits)


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

    def __init__(self, path, fields: Iterable[str] = ("image", "label"), transform: Optional[Callable] = None,
                 resize=None, gray: bool = False, label_map="canonical", subjects=None, face_indices=None,
                 split=None, faces=None, verify: bool = False, allow_partial: bool = False, locking=None,
                 reduced_decode: bool = True):
        self._init_shards(path, fields, transform, resize, gray, label_map, subjects, face_indices, split, faces,
                          verify, allow_partial, locking, reduced_decode)

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
# iterable
# ---------------------------------------------------------------------------------------
class _SharedInt:
    """An int shared with DataLoader workers, also persistent ones (fork, spawn, forkserver)."""

    def __init__(self, value: int = 0):
        self._v = multiprocessing.RawValue("q", int(value))

    @property
    def value(self) -> int:
        return int(self._v.value)

    @value.setter
    def value(self, v: int):
        self._v.value = int(v)

    def __getstate__(self):
        if multiprocessing.context.get_spawning_popen() is not None:
            return {"shared": self._v}  # inherited by a starting worker process: stays shared
        return {"value": self.value}    # any other pickling (copy, torch.save): a plain copy

    def __setstate__(self, state):
        self._v = state["shared"] if "shared" in state else multiprocessing.RawValue("q", state["value"])


def _dist_info(rank, world_size):
    if rank is None and world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1
    if rank is None or world_size is None:
        raise FerdataError("pass both rank and world_size (or neither, to read them from torch.distributed)")
    rank, world_size = int(rank), int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise FerdataError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return rank, world_size


class ShardIterableDataset(_ShardBase, IterableDataset):
    """Iterable dataset over a shard folder for training: fast, shuffled, resumable, DDP-ready.

    Epoch order. The selected samples are cut into *blocks* of ``block`` consecutive
    samples inside one shard (each read with one h5py call); the blocks are put in a
    random order and the result is shuffled again within windows of ``buffer`` samples
    (a shuffle buffer without the warm-up). That stream is a pure function of
    ``(seed, epoch)`` — it does not depend on the number of ranks or workers. Call
    :meth:`set_epoch` before each epoch (it reaches persistent workers too).

    Ranks. With world size ``W`` (from ``torch.distributed`` if initialised when the
    dataset is made, else ``rank``/``world_size``), rank ``r`` reads the contiguous slice
    ``[r*n, (r+1)*n)`` of the stream. Remainder policy (``S`` samples):

    * ``drop_last=False`` (default): ``n = ceil(S/W)``; the last rank's slice wraps
      around to the start of the stream, so ``W*n - S`` samples (< W) are read twice
      in that epoch — exactly like ``DistributedSampler``. When ``S`` is divisible by
      ``W`` every sample is read exactly once.
    * ``drop_last=True``: ``n = floor(S/W)`` (in batch mode also rounded down to whole
      batches); the last ``S - W*n`` samples of the stream are skipped — a different
      set each epoch when shuffling.

    Every rank gets the same ``n``, so DDP ranks run the same number of steps.

    Workers. Per-sample mode (``batch_size=None``): each DataLoader worker reads one
    contiguous part of its rank's slice; parts differ by at most one sample; no sample is
    duplicated or dropped. Batch mode (``batch_size=B``): the dataset yields ready
    batches (use ``DataLoader(ds, batch_size=None)``); chunks of ``B`` are dealt to the
    workers in turn, so the DataLoader returns the rank's slice in the same order
    whatever ``num_workers`` is; it is also a little faster (tensor conversion per batch,
    no collate, images as a zero-copy ``channels_last`` view). Only the rank's last batch
    can be short.

    Resume. ``state_dict()`` records the epoch and which positions of the rank's slice
    have been consumed; ``load_state_dict()`` makes the next iteration of that epoch
    yield exactly the remaining samples. See :meth:`state_dict` for counting samples
    when workers are used.

    Parameters
    ----------
    path, fields, transform, resize, gray, label_map, subjects, face_indices, split, faces,
    verify, allow_partial, locking, reduced_decode
        As :class:`ShardDataset`; ``transform`` gets a batch dict in batch mode.
    shuffle : bool, default True
    seed : int, default 0
    block : int, default 64
        Samples per contiguous read.
    buffer : int, default 2048
        Shuffle window (samples); 0 or 1: blocks are shuffled, samples within them are not.
    batch_size : int, optional
        Batch mode (see above).
    drop_last : bool, default False
        Remainder policy (see above).
    rank, world_size : int, optional
        Override ``torch.distributed``.

    Examples
    --------
    >>> ds = ShardIterableDataset("shards/", fields=("image", "label"), batch_size=256)  # doctest: +SKIP
    >>> loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=8,        # doctest: +SKIP
    ...                                      pin_memory=True, persistent_workers=True)
    >>> for epoch in range(60):                                                          # doctest: +SKIP
    ...     ds.set_epoch(epoch)
    ...     for batch in loader: ...
    """

    def __init__(self, path, fields: Iterable[str] = ("image", "label"), shuffle: bool = True, seed: int = 0,
                 block: int = 64, buffer: int = 2048, batch_size: Optional[int] = None, drop_last: bool = False,
                 rank: Optional[int] = None, world_size: Optional[int] = None,
                 transform: Optional[Callable] = None, resize=None, gray: bool = False, label_map="canonical",
                 subjects=None, face_indices=None, split=None, faces=None, verify: bool = False,
                 allow_partial: bool = False, locking=None, reduced_decode: bool = True):
        if int(block) < 1:
            raise FerdataError(f"block must be >= 1, got {block}")
        if int(buffer) < 0:
            raise FerdataError(f"buffer must be >= 0, got {buffer}")
        if batch_size is not None and int(batch_size) < 1:
            raise FerdataError(f"batch_size must be >= 1 or None, got {batch_size}")
        if int(seed) < 0:
            raise FerdataError(f"seed must be >= 0, got {seed}")
        self._init_shards(path, fields, transform, resize, gray, label_map, subjects, face_indices, split, faces,
                          verify, allow_partial, locking, reduced_decode)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.block = int(block)
        self.buffer = int(buffer)
        self.batch_size = int(batch_size) if batch_size is not None else None
        self.drop_last = bool(drop_last)
        self.rank, self.world_size = _dist_info(rank, world_size)
        self._epoch = _SharedInt(0)
        self._blocks = _order.block_table(self._shard_counts, self.block)
        self._resume = None     # (epoch, consumed ranges) loaded by load_state_dict
        self._progress = None   # (epoch, remaining positions, count) of an in-process iteration

    # -- epochs ----------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self._epoch.value

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration produces (shared with workers)."""
        if int(epoch) < 0:
            raise FerdataError(f"epoch must be >= 0, got {epoch}")
        self._epoch.value = int(epoch)

    @property
    def num_samples(self) -> int:
        """Samples in the whole selection (all ranks)."""
        return self._n_selected()

    @property
    def rank_samples(self) -> int:
        """Samples this rank reads per epoch."""
        return _order.rank_count(self._n_selected(), self.world_size, self.drop_last, self.batch_size)

    def __len__(self) -> int:
        """Samples (per-sample mode) or batches (batch mode) this rank yields per full epoch."""
        n = self.rank_samples
        return n if self.batch_size is None else -(-n // self.batch_size)

    def epoch_order(self, epoch: Optional[int] = None, rank: Optional[int] = None) -> np.ndarray:
        """The render's global sample indices a rank reads in ``epoch``, in stream order.

        (The DataLoader interleaves workers; in batch mode its output is this order.)
        """
        epoch = self.epoch if epoch is None else int(epoch)
        rank = self.rank if rank is None else int(rank)
        seq = self._sequence(epoch, rank)
        return self._source.render_index(self._positions(seq))

    def _stream(self, epoch: int) -> np.ndarray:
        return _order.epoch_stream(*self._blocks, self.seed, epoch, self.shuffle, self.buffer)

    def _rank_stream_pos(self, rank: int) -> np.ndarray:
        return _order.rank_positions(self._n_selected(), self.world_size, rank, self.drop_last, self.batch_size)

    def _sequence(self, epoch: int, rank: int) -> np.ndarray:
        return self._stream(epoch)[self._rank_stream_pos(rank)]

    def _remaining(self, epoch: int) -> np.ndarray:
        consumed = self._resume[1] if self._resume is not None and self._resume[0] == epoch else None
        return _order.remaining(self.rank_samples, consumed)

    # -- iteration -------------------------------------------------------------------------
    def __iter__(self):
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        epoch = self.epoch
        stream = self._stream(epoch)
        spos = self._rank_stream_pos(self.rank)
        rem = self._remaining(epoch)
        mine = rem[_order.worker_part(rem.size, workers, worker, self.batch_size)]
        stream_pos = spos[mine]
        sel = stream[stream_pos]
        in_process = info is None
        if in_process:
            self._progress = [epoch, rem, 0]
        # per-sample mode reads a shuffle window at a time (one pass over its blocks),
        # at most ~64 MiB of stored rows
        group = max(self.buffer, self.block * 16)
        group = max(self.block, min(group, (64 << 20) // self._row_bytes()))
        if self.batch_size is None:
            gid = stream_pos // group
            cuts = np.flatnonzero(np.diff(gid)) + 1
            bounds = np.concatenate(([0], cuts, [sel.size]))
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
                yield from self._samples(sel[a:b], in_process)
        else:
            B = self.batch_size
            for a in range(0, sel.size, B):
                batch = _to_tensors(self._read(sel[a:a + B]), channels_last=True)
                if self.transform is not None:
                    batch = self.transform(batch)
                if in_process:
                    self._progress[2] += min(B, sel.size - a)
                yield batch
        if self._resume is not None and self._resume[0] == epoch:
            self._resume = None  # the resumed epoch is done; later epochs are whole

    def _row_bytes(self) -> int:
        src = self._source
        px = src.size * src.size * src.channels
        return max(1, px if src.encoding == "raw" else px // 8)

    def _samples(self, sel: np.ndarray, in_process: bool):
        pos = self._positions(sel)
        raw = self._source.read(self._pipe.stored, pos)
        for a in range(0, sel.size, _DECODE_BATCH):
            part = {k: v[a:a + _DECODE_BATCH] for k, v in raw.items()}
            batch = _to_tensors(self._process(part, pos[a:a + _DECODE_BATCH]))
            for s in _split(batch, min(_DECODE_BATCH, sel.size - a)):
                if self.transform is not None:
                    s = self.transform(s)
                if in_process:
                    self._progress[2] += 1
                yield s

    # -- resume ----------------------------------------------------------------------------
    def state_dict(self, samples_seen: Optional[int] = None, num_workers: int = 0,
                   batch_size: Optional[int] = None, loader=None) -> dict:
        """Where this rank is in the current epoch (a small JSON-able dict).

        Without arguments it uses what this process iterated (exact for
        ``num_workers=0``). With DataLoader workers the iteration happens in other
        processes: pass ``samples_seen``, the number of samples this rank's training loop
        has taken from the loader in this epoch (e.g. ``sum(len(b["label"]) for b in
        batches)``), and the loader (or its ``num_workers`` and ``batch_size``). In batch
        mode the loader's order does not depend on workers and ``samples_seen`` alone is
        enough.
        """
        epoch = self.epoch
        rem = self._remaining(epoch)
        n = self.rank_samples
        consumed = np.zeros(n, bool)
        if self._resume is not None and self._resume[0] == epoch:
            consumed[:] = True
            consumed[rem] = False
        if loader is not None:
            num_workers = loader.num_workers
            batch_size = loader.batch_size
            loader_drop_last = bool(getattr(loader, "drop_last", False))
        else:
            loader_drop_last = False
        if samples_seen is None:
            if self._progress is not None and self._progress[0] == epoch:
                p_rem, count = self._progress[1], self._progress[2]
                consumed[p_rem[:count]] = True
        else:
            seen = int(samples_seen)
            if not 0 <= seen <= rem.size:
                raise FerdataError(f"samples_seen={seen} is outside 0..{rem.size} (samples left in epoch {epoch})")
            workers = max(int(num_workers or 0), 1)
            if self.batch_size is not None or workers == 1:
                consumed[rem[:seen]] = True
            else:
                if batch_size is None:
                    raise FerdataError("state_dict: with num_workers > 0 in per-sample mode pass the loader's "
                                       "batch_size (or loader=)")
                consumed[rem[_order.loader_consumed(rem.size, workers, int(batch_size), seen, loader_drop_last)]] = True
        return {"format": _STATE_FORMAT, "epoch": epoch, "seed": self.seed, "shuffle": self.shuffle,
                "block": self.block, "buffer": self.buffer, "batch_size": self.batch_size,
                "drop_last": self.drop_last, "rank": self.rank, "world_size": self.world_size,
                "num_samples": self._n_selected(), "rank_samples": n,
                "consumed": _order.to_ranges(consumed), "samples_consumed": int(consumed.sum())}

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration of ``state['epoch']`` yields exactly what was not consumed.

        Call it before the DataLoader starts its workers (before the first ``iter(loader)``;
        with ``persistent_workers=True`` make a new loader).
        """
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            fmt = state.get("format") if isinstance(state, dict) else None
            raise FerdataError(f"not a ShardIterableDataset state (format {fmt!r})")
        mine = {"seed": self.seed, "shuffle": self.shuffle, "block": self.block, "buffer": self.buffer,
                "batch_size": self.batch_size, "drop_last": self.drop_last, "world_size": self.world_size,
                "num_samples": self._n_selected()}
        diff = [f"{k}: state {state.get(k)!r} != dataset {v!r}" for k, v in mine.items() if state.get(k) != v]
        if diff:
            raise FerdataError("cannot resume: the state was saved with other settings (" + "; ".join(diff) + ")")
        if state.get("rank") != self.rank:
            raise FerdataError(f"cannot resume: state of rank {state.get('rank')} loaded on rank {self.rank} "
                               "(save one state per rank)")
        self.set_epoch(state["epoch"])
        self._resume = (int(state["epoch"]), [tuple(r) for r in state["consumed"]])
        self._progress = None

    def __repr__(self):
        return (f"ShardIterableDataset({str(self.path)!r}, samples={self._n_selected()}, fields={self.fields}, "
                f"rank={self.rank}/{self.world_size}, batch_size={self.batch_size}, epoch={self.epoch})")


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
