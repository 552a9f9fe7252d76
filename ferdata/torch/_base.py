"""What the torch datasets share (docs/torch.md): numpy batches to tensors, name and filter
checks, the decode pipeline and label mapping (:class:`_Base`), shard folders and their
sample selection (:class:`_ShardBase`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import FerdataError
from ..labels import CLASSES
from ._fields import DecodeError, Pipeline
from ._io import ShardSource


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
        if isinstance(i, (torch.Tensor, np.integer)) and not isinstance(i, bool) and getattr(i, "ndim", 0) == 0:
            i = int(i)
        if not isinstance(i, int) or isinstance(i, bool):
            raise TypeError(f"index must be an int, got {type(i).__name__}")
        given = i
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {given} out of range for a dataset of {n} samples")
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
    def _init_shards(self, path, select, decode):
        """Open the shards of ``path`` per a :class:`~ferdata.torch.specs.Select` and a
        :class:`~ferdata.torch.specs.Decode`."""
        s, d = select, decode
        self.select_spec, self.decode_spec = s, d
        source = ShardSource(path, verify=s.verify, allow_partial=s.allow_partial, locking=s.locking)
        self.path = Path(path)
        self._setup(source, d.fields, d.transform, d.resize, d.gray, d.label_map, d.reduced_decode)
        self._sel = self._select(s.subjects, s.face_indices, s.split, s.faces)
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
        from ..faces.store import FaceStore

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
