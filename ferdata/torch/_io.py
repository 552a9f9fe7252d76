"""HDF5 access for the torch datasets: shard folders, face stores, per-process handles.

Nothing here imports torch. Two sources present the same interface to the datasets:

* :class:`ShardSource` — the shards of one render, concatenated in ``first_sample``
  order (position ``p`` of the concatenation is row ``p - start[k]`` of shard ``k``);
* :class:`FaceStoreSource` — one ``faces.h5``.

``read(fields, positions)`` returns the *stored* values of ``positions`` (any order,
repeats allowed) as numpy arrays in that order; JPEG images come back as a list of
undecoded byte views. Reads are grouped by file and sorted; a shard's plain datasets
(JPEG bytes, landmarks, params...) are read from a memory map of the file, the others
with one h5py slice per run of nearby rows or adjacent chunks (``_h5read``: h5py fancy
indexing costs ~35 µs per row, a slice ~15-25 µs plus the copy).

h5py handles and maps are opened lazily and cached per process *and* per thread
(:class:`_Handles`): after a fork (DataLoader workers) the child sees a different
``os.getpid()`` and reopens its own; pickling (spawn) drops them. Handles are never
shared between threads.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from ..errors import FerdataError, ShardError
from ..shards.manifest import file_sha256, load_manifest
from ..shards.schema import SCHEMA_VERSION
from ._h5read import FileMap, _Handles, _open_h5, _read_jpeg, _read_rows, read_jpeg_mapped

# fields small enough to cache whole per open shard (bytes per row <= 16)
_SMALL = ("label", "subject", "face_index", "background", "bg_box")


def _attr(a, name, default=None):
    v = a.get(name, default)
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        v = v.item()
    return v


def _json_attr(a, name, default=None):
    v = _attr(a, name, None)
    if v is None:
        return default
    return json.loads(v) if isinstance(v, str) else list(v)


def _gather(parts: list, order: np.ndarray, n: int):
    """Concatenate per-file results (in sorted-unique order) and put them in request order."""
    if isinstance(parts[0], list):
        flat = [x for p in parts for x in p]
        return [flat[i] for i in order.tolist()]
    arr = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if n == arr.shape[0] and np.array_equal(order, np.arange(n)):
        return arr
    return arr[order]


class ShardSource:
    """The complete shards of one render folder (validated against the manifest).

    Parameters
    ----------
    path : str or Path
        A folder written by ``ferdata render`` (``shard-*.h5`` + ``manifest.json``).
    verify : bool
        Also recompute every shard's sha256 (reads every byte once).
    allow_partial : bool
        Accept a render whose manifest lists fewer shards than it should have
        (an interrupted render); by default that is an error.
    locking : bool, optional
        Passed to ``h5py.File(locking=...)``; None leaves it to ``HDF5_USE_FILE_LOCKING``.
    """

    kind = "shards"

    def __init__(self, path, verify: bool = False, allow_partial: bool = False, locking=None,
                 max_open: int = 32):
        self.path = Path(path)
        if not self.path.is_dir():
            raise ShardError(f"{self.path}: not a folder (expected a ferdata shard folder)")
        m = load_manifest(self.path)
        self.manifest = {k: v for k, v in m.items() if k != "shards"}
        entries = sorted(m["shards"].items(), key=lambda kv: kv[1].get("first_sample", 0))
        if not entries:
            raise ShardError(f"{self.path / 'manifest.json'}: lists no complete shard")
        expected = m.get("num_shards")
        if expected is not None and len(entries) < expected and not allow_partial:
            raise ShardError(f"{self.path}: incomplete render, {len(entries)} of {expected} shards in "
                             "manifest.json; finish it with `ferdata render` (it resumes) or pass "
                             "allow_partial=True")
        self.files, self.first, counts = [], [], []
        for name, e in entries:
            p = self.path / name
            if not p.exists():
                raise ShardError(f"{p}: listed in manifest.json but missing")
            size = p.stat().st_size
            if size != e.get("bytes"):
                raise ShardError(f"{p}: file size {size} does not match manifest.json ({e.get('bytes')} bytes); "
                                 "the shard is truncated or was changed — re-render it or run `ferdata verify`")
            if verify and file_sha256(p) != e.get("sha256"):
                raise ShardError(f"{p}: sha256 does not match manifest.json (corrupt shard)")
            self.files.append(str(p))
            self.first.append(int(e.get("first_sample", 0)))
            counts.append(int(e["n"]))
        self.counts = np.asarray(counts, np.int64)
        self.start = np.concatenate(([0], np.cumsum(self.counts)))
        self.n = int(self.start[-1])
        self.first = np.asarray(self.first, np.int64)
        self.size = int(m.get("size", 0))
        self.encoding = m.get("encoding", "raw")
        self.channels = int(m.get("channels", 3))
        self.classes = list(m.get("classes", []))
        self.subjects = list(m.get("subjects", []))
        self.param_names = list(m.get("param_names", []))
        self.locking = locking
        self._handles = _Handles(self._open, max_open)
        # the first shard tells the truth about the datasets present (size, channels, lbp/*)
        f0, _ = self._handles.get(0)
        self.size = int(_attr(f0.attrs, "size", self.size))
        self.channels = int(_attr(f0.attrs, "channels", self.channels))
        self.encoding = str(_attr(f0.attrs, "encoding", self.encoding))
        self.datasets = set(_h5_names(f0))
        if not self.classes:
            self.classes = _json_attr(f0.attrs, "classes", [])
        if not self.subjects:
            self.subjects = _json_attr(f0.attrs, "subjects", [])

    # -- files -------------------------------------------------------------------------
    def _open(self, k: int):
        path = self.files[k]
        f = _open_h5(path, self.locking)
        v = _attr(f.attrs, "schema_version")
        if v != SCHEMA_VERSION:
            f.close()
            raise ShardError(f"{path}: unknown shard schema_version {v!r} (this ferdata reads {SCHEMA_VERSION}); "
                             "upgrade ferdata or re-render")
        enc = str(_attr(f.attrs, "encoding", "raw"))
        if enc not in ("raw", "jpeg"):
            f.close()
            raise ShardError(f"{path}: unknown image encoding {enc!r}")
        return f

    def check_fields(self, names, k: int | None = None):
        """Raise :class:`ShardError` naming the file if a stored dataset is missing."""
        ks = range(len(self.files)) if k is None else [k]
        for kk in ks:
            f, _ = self._handles.get(kk)
            for name in names:
                if name not in f:
                    have = ", ".join(sorted(_h5_names(f)))
                    raise ShardError(f"{self.files[kk]}: no dataset {name!r} in this shard (has: {have})"
                                     + ("; add it with `ferdata lbp`" if name.startswith("lbp/") else ""))

    def close(self):
        self._handles.close()

    # -- metadata arrays -----------------------------------------------------------------
    def column(self, name: str) -> np.ndarray:
        """A small per-sample dataset (label, subject, face_index) over all shards."""
        out = []
        for k in range(len(self.files)):
            f, _ = self._handles.get(k)
            if name not in f:
                raise ShardError(f"{self.files[k]}: no dataset {name!r} in this shard")
            out.append(f[name][:])
        return np.concatenate(out)

    def describe(self, position: int) -> str:
        """``'<shard file> sample <local> (global sample <g>)'`` for a concatenated position."""
        k = int(np.searchsorted(self.start, position, side="right") - 1)
        local = int(position - self.start[k])
        return f"{self.files[k]} sample {local} (global sample {int(self.first[k]) + local})"

    def render_index(self, positions: np.ndarray) -> np.ndarray:
        """The render's global sample index of concatenated ``positions``."""
        k = np.searchsorted(self.start, positions, side="right") - 1
        return self.first[k] + (positions - self.start[k])

    # -- reading -------------------------------------------------------------------------
    def read(self, fields, positions: np.ndarray) -> dict:
        """Stored values of ``fields`` at ``positions`` (request order). See module doc."""
        positions = np.asarray(positions, np.int64)
        uniq, inverse = np.unique(positions, return_inverse=True)
        ks = np.searchsorted(self.start, uniq, side="right") - 1
        cuts = np.flatnonzero(np.diff(ks)) + 1
        groups = np.split(np.arange(uniq.size), cuts)
        parts = {name: [] for name in fields}
        for g in groups:
            if g.size == 0:
                continue
            k = int(ks[g[0]])
            local = uniq[g] - self.start[k]
            f, cache = self._handles.get(k)
            for name in fields:
                parts[name].append(self._read_field(k, f, cache, name, local))
        return {name: _gather(p, inverse, positions.size) for name, p in parts.items()}

    def _read_field(self, k, f, cache, name, local):
        if name == "index":
            return self.first[k] + local
        if name in _SMALL:
            col = cache.get(name)
            if col is None:
                col = cache[name] = self._dataset(k, f, name)[:]
            return col[local]
        jpeg = name == "image" and self.encoding == "jpeg"
        if jpeg and "image_offsets" not in cache:
            cache["image_offsets"] = self._dataset(k, f, "image_offsets")[:]
        view = self._mapped(k, f, cache, name)
        if view is not None:
            cache["_map"].check()
            return read_jpeg_mapped(view, cache["image_offsets"], local) if jpeg else view[local]
        if jpeg:
            return _read_jpeg(self._dataset(k, f, name), cache["image_offsets"], local)
        return _read_rows(self._dataset(k, f, name), local)

    def _mapped(self, k, f, cache, name):
        """The memory-mapped view of dataset ``name`` of shard ``k`` (None: read through h5py)."""
        key = "map:" + name
        if key not in cache:
            if "_map" not in cache:
                cache["_map"] = FileMap(self.files[k])
            cache[key] = cache["_map"].view(self._dataset(k, f, name))
        return cache[key]

    def _dataset(self, k, f, name):
        try:
            return f[name]
        except KeyError:
            self.check_fields([name], k)
            raise



class FaceStoreSource:
    """One face store (``faces.h5``) as a source: real aligned faces."""

    kind = "facestore"

    def __init__(self, path, locking=None):
        self.path = Path(path)
        self.locking = locking
        if not self.path.exists():
            raise FerdataError(f"{self.path}: face store does not exist")
        self._handles = _Handles(self._open, 1)
        f, _ = self._handles.get(0)
        a = f.attrs
        if "schema_version" not in a or "image" not in f:
            raise FerdataError(f"{self.path}: not a ferdata face store (no schema_version/image)")
        v = _attr(a, "schema_version")
        if v != 1:
            raise FerdataError(f"{self.path}: unknown face store schema_version {v!r} (this ferdata reads 1)")
        self.files = [str(self.path)]
        self.size = int(_attr(a, "size"))
        self.encoding = "raw"
        self.channels = int(f["image"].shape[-1])
        self.classes = _json_attr(a, "classes", [])
        self.n = int(f["image"].shape[0])
        self.labels = f["label"][:].astype(np.int64)
        self.subject_names = np.array([s.decode() if isinstance(s, bytes) else str(s) for s in f["subject"][:]],
                                      dtype=object)
        self.split_names = np.array([s.decode() if isinstance(s, bytes) else str(s) for s in f["split"][:]],
                                    dtype=object)
        self.subjects = sorted(set(self.subject_names.tolist()))
        sidx = {s: i for i, s in enumerate(self.subjects)}
        self.subject_ids = np.array([sidx[s] for s in self.subject_names], np.int64)
        self.datasets = set(_h5_names(f))
        self.param_names = []

    def describe(self, position: int) -> str:
        return f"{self.path} face {int(position)}"

    def _open(self, _k):
        return _open_h5(self.path, self.locking)

    def check_fields(self, names, k=None):
        f, _ = self._handles.get(0)
        for name in names:
            if name not in f:
                have = ", ".join(sorted(_h5_names(f)))
                raise FerdataError(f"{self.path}: no dataset {name!r} in this face store (has: {have})")

    def close(self):
        self._handles.close()

    def read(self, fields, positions) -> dict:
        positions = np.asarray(positions, np.int64)
        uniq, inverse = np.unique(positions, return_inverse=True)
        f, _ = self._handles.get(0)
        out = {}
        for name in fields:
            if name == "index":
                col = uniq
            elif name == "label":
                col = self.labels[uniq]
            elif name == "subject":
                col = self.subject_ids[uniq]
            else:
                if name not in f:
                    self.check_fields([name])
                col = _read_rows(f[name], uniq)
            out[name] = _gather([col], inverse, positions.size)
        return out


def _h5_names(f) -> list:
    """Every dataset path in an open file ('image', 'lbp/circle_P8_R1', ...)."""
    names = []
    f.visit(lambda n: names.append(n) if isinstance(f[n], h5py.Dataset) else None)
    return names
