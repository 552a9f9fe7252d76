"""Low-level reads for the torch datasets: per-process HDF5 handles, row runs, JPEG bytes.

Nothing here imports torch. h5py fancy indexing costs ~35 µs per row and a slice
~15-25 µs per call, so rows are read in runs (:func:`_runs`); the JPEG bytes of a
shard and its other plain datasets (one contiguous, unfiltered block each) are read
from a read-only memory map of the file (:class:`FileMap`: no call and, for JPEGs, no
copy per row; the decoders read the page cache), the same values HDF5 returns (checked
when a dataset is first mapped); chunked or filtered datasets (the gzip'd masks) are
read through h5py, one slice per group of adjacent chunks.
"""
from __future__ import annotations

import mmap
import os
import threading
from collections import OrderedDict

import h5py
import numpy as np

from ..errors import ShardError

# rows closer than this are read with one slice and the rows between dropped
_GAP = 4
# HDF5 chunk cache per dataset: the gzip'd mask chunks (64 rows) are then decompressed once
_RDCC_NBYTES = 8 << 20


class _Handles:
    """An LRU of open h5py files, private to one process and one thread."""

    def __init__(self, opener, max_open: int = 32):
        self._opener = opener
        self.max_open = max_open
        self._local = threading.local()

    def _cache(self) -> OrderedDict:
        loc = self._local
        if getattr(loc, "pid", None) != os.getpid():
            # fresh thread, or a forked child: never touch the parent's handles
            loc.pid = os.getpid()
            loc.files = OrderedDict()
        return loc.files

    def get(self, key):
        """``(h5py.File, per-file cache dict)`` for ``key`` (opened on first use)."""
        files = self._cache()
        hit = files.get(key)
        if hit is not None:
            files.move_to_end(key)
            return hit
        while len(files) >= self.max_open:
            _close_entry(*files.popitem(last=False)[1])
        hit = (self._opener(key), {})
        files[key] = hit
        return hit

    def close(self):
        files = getattr(self._local, "files", None)
        if files and getattr(self._local, "pid", None) == os.getpid():
            for entry in files.values():
                _close_entry(*entry)
            files.clear()

    def __getstate__(self):
        return {"_opener": self._opener, "max_open": self.max_open}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()


def _close_entry(f, cache: dict) -> None:
    fmap = cache.pop("_map", None)
    cache.clear()  # drops the views, so that the map can be closed now
    if fmap is not None:
        fmap.close()
    f.close()


def _open_h5(path, locking=None):
    kw = {"rdcc_nbytes": _RDCC_NBYTES}
    if locking is not None:
        kw["locking"] = locking
    try:
        return h5py.File(path, "r", **kw)
    except FileNotFoundError:
        raise ShardError(f"{path}: file does not exist") from None
    except OSError as exc:
        raise ShardError(f"{path}: cannot open as HDF5 ({exc}); on a network file system "
                         "set HDF5_USE_FILE_LOCKING=FALSE") from exc


def _runs(local: np.ndarray, gap: int = _GAP):
    """Sorted row indices -> (start, stop) slices covering them, merging gaps <= ``gap``."""
    if local.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    brk = np.flatnonzero(np.diff(local) > gap) + 1
    starts = np.concatenate(([local[0]], local[brk]))
    stops = np.concatenate((local[brk - 1], [local[-1]])) + 1
    return starts, stops


def _chunk_runs(local: np.ndarray, chunk_rows: int):
    """Like :func:`_runs` for a chunked dataset: rows whose chunks are the same or adjacent
    share a slice (each chunk is decompressed whole anyway; one h5py call costs ~50 µs)."""
    cid = local // chunk_rows
    brk = np.flatnonzero(np.diff(cid) > 1) + 1
    starts = np.concatenate(([local[0]], local[brk]))
    stops = np.concatenate((local[brk - 1], [local[-1]])) + 1
    return starts, stops


def _read_rows(ds, local: np.ndarray) -> np.ndarray:
    """Rows ``local`` (sorted, unique) of an h5py dataset, one slice per run."""
    chunks = ds.chunks
    starts, stops = _chunk_runs(local, chunks[0]) if chunks and local.size else _runs(local)
    if len(starts) == 1:
        block = ds[int(starts[0]):int(stops[0])]
        return block if block.shape[0] == local.size else block[local - starts[0]]
    out = np.empty((local.size,) + ds.shape[1:], ds.dtype)
    i = 0
    for a, b in zip(starts.tolist(), stops.tolist()):
        j = i + int(np.searchsorted(local[i:], b))
        block = ds[a:b]
        out[i:j] = block if b - a == j - i else block[local[i:j] - a]
        i = j
    return out


def _read_jpeg(ds, offsets: np.ndarray, local: np.ndarray) -> list:
    """Compressed images ``local`` (sorted, unique) as uint8 views into the read spans."""
    starts, stops = _runs(local)
    out = []
    i = 0
    for a, b in zip(starts.tolist(), stops.tolist()):
        j = i + int(np.searchsorted(local[i:], b))
        o0 = int(offsets[a])
        blob = ds[o0:int(offsets[b])]
        for r in local[i:j].tolist():
            out.append(blob[offsets[r] - o0:offsets[r + 1] - o0])
        i = j
    return out


class FileMap:
    """A read-only memory map of one HDF5 file, and numpy views of its plain datasets.

    A dataset stored as one contiguous, unfiltered block (JPEG bytes, landmarks, params,
    raw images...) is read without HDF5: rows are taken from the view by numpy indexing
    (no call per run of rows) and JPEGs are views into it (no copy; the decode threads
    read the page cache, mapped on first touch and kept while the file is open). Private
    to one process and thread, like the h5py handle it sits next to.
    """

    def __init__(self, path: str):
        self.path = path
        self.end = 0  # the furthest byte a view covers
        self._fh = open(path, "rb", buffering=0)
        try:
            self._map = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # pragma: no cover - a file system without mmap, or empty
            self._map = None
        self._views = []

    def view(self, ds):
        """``ds`` as a numpy array over the map, or None when it is not one plain block of
        numbers (chunked, filtered, external, unallocated) or the map disagrees with HDF5."""
        if self._map is None or ds.dtype.kind not in "biuf" or ds.size == 0:
            return None
        try:
            dcpl = ds.id.get_create_plist()
            plain = (dcpl.get_layout() == h5py.h5d.CONTIGUOUS and dcpl.get_nfilters() == 0
                     and dcpl.get_external_count() == 0)
            base = ds.id.get_offset() if plain else None
        except Exception:  # pragma: no cover - an h5py without these calls: read through HDF5
            return None
        end = None if base is None else int(base) + ds.size * ds.dtype.itemsize
        if end is None or end > len(self._map):
            return None
        arr = np.frombuffer(self._map, ds.dtype, ds.size, int(base)).reshape(ds.shape)
        # the same values as HDF5 returns, or not used (a file address HDF5 maps otherwise)
        probe = slice(0, min(ds.shape[0], 65536 if ds.ndim == 1 else 4))
        if not np.array_equal(arr[probe], ds[probe], equal_nan=ds.dtype.kind == "f"):
            return None
        self.end = max(self.end, end)
        self._views.append(arr)
        return arr

    def check(self) -> None:
        """Raise :class:`ShardError` if the file became shorter than the views (reading a page
        past its end would kill the process with SIGBUS)."""
        size = os.fstat(self._fh.fileno()).st_size
        if size < self.end:
            raise ShardError(f"{self.path}: file ends inside the data ({size} bytes, the data read from it "
                             f"ends at {self.end}); the shard was truncated while being read")

    def close(self) -> None:
        self._views = []
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # views still in use (a batch being decoded): unmapped when they go
                pass
        self._fh.close()


def read_jpeg_mapped(data: np.ndarray, offsets: np.ndarray, local: np.ndarray) -> list:
    """Compressed images ``local`` as uint8 views into ``data`` (a mapped ``image`` dataset)."""
    a = offsets[local]
    b = offsets[local + 1]
    return [data[x:y] for x, y in zip(a.tolist(), b.tolist())]
