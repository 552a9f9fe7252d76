"""Low-level reads for the torch datasets: per-process HDF5 handles, row runs, JPEG bytes.

Nothing here imports torch. h5py fancy indexing costs ~35 µs per row and a slice
~15-25 µs per call, so rows are read in runs (:func:`_runs`); the JPEG bytes of a
shard — one contiguous, unfiltered uint8 dataset — are views into a read-only memory
map of the file (:class:`RawFile`: no call and no copy per row; the decoders read the
page cache), the same bytes HDF5 returns (checked when the file is opened; a chunked or
filtered dataset is read through h5py).
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
    for v in cache.values():
        if isinstance(v, RawFile):
            v.close()
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


def _read_rows(ds, local: np.ndarray) -> np.ndarray:
    """Rows ``local`` (sorted, unique) of an h5py dataset, one slice per run."""
    starts, stops = _runs(local)
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


class RawFile:
    """The bytes of one contiguous, unfiltered 1-d uint8 dataset, memory-mapped read-only.

    JPEG views into the map cost nothing to make; the decode threads read the page cache
    directly (a page is mapped on first touch, 16 at a time, and stays mapped while the
    file is open). Private to one process and thread, like the h5py handle it sits next to.
    """

    def __init__(self, path: str, fh, base: int, end: int):
        self.path, self.base, self.end = path, base, end
        self._fh = fh
        self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self.bytes = np.frombuffer(self._map, np.uint8)

    @classmethod
    def open(cls, path: str, ds, offsets: np.ndarray):
        """A reader of ``ds`` (the ``image`` dataset of a JPEG shard), or None when its bytes are
        not stored as one plain block (chunked, filtered, external) in the file."""
        if ds.dtype != np.uint8 or ds.ndim != 1 or offsets.size < 2 or offsets[-1] <= offsets[0]:
            return None
        try:
            dcpl = ds.id.get_create_plist()
            plain = (dcpl.get_layout() == h5py.h5d.CONTIGUOUS and dcpl.get_nfilters() == 0
                     and dcpl.get_external_count() == 0)
            base = ds.id.get_offset() if plain else None
        except Exception:  # pragma: no cover - an h5py without these calls: read through HDF5
            return None
        if base is None:
            return None
        fh = open(path, "rb", buffering=0)
        try:
            raw = cls(path, fh, int(base), int(base) + int(offsets[-1]))
        except (OSError, ValueError):  # pragma: no cover - a file system without mmap
            fh.close()
            return None
        # the same bytes as HDF5 returns, or not used (a file address HDF5 maps otherwise)
        a, b = int(offsets[0]), int(offsets[min(offsets.size - 1, 4)])
        if raw.end > raw.bytes.size or not np.array_equal(raw.bytes[raw.base + a:raw.base + b], ds[a:b]):
            raw.close()
            return None
        return raw

    def read_jpeg(self, offsets: np.ndarray, local: np.ndarray) -> list:
        """Compressed images ``local`` as uint8 views into the map."""
        size = os.fstat(self._fh.fileno()).st_size
        if size < self.end:  # touching a page past the end would kill the process (SIGBUS)
            raise ShardError(f"{self.path}: file ends inside the image data ({size} bytes, the images end at "
                             f"{self.end}); the shard was truncated while being read")
        a = offsets[local] + self.base
        b = offsets[local + 1] + self.base
        data = self.bytes
        return [data[x:y] for x, y in zip(a.tolist(), b.tolist())]

    def close(self) -> None:
        self.bytes = None
        try:
            self._map.close()
        except BufferError:  # views still in use (a batch being decoded): unmapped when they go
            pass
        self._fh.close()
