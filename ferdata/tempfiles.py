"""Atomic writes for the face store, reports and images, and a write-error guard for HDF5.

Temp names are ``<name>.tmp-<host>-<pid>`` with the helpers of
:mod:`ferdata.shards.tempfiles` (one implementation for every writer): a run only
removes temps of *this* host whose process is gone, never a live job's elsewhere.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

from .shards.tempfiles import atomic_write, fsync_dir, host_tag, remove_dead_temps, tmp_path

__all__ = ["GuardedFile", "atomic_write_bytes", "atomic_write_text", "fsync_dir", "host_tag", "remove_dead_temps",
           "remove_dead_temps_of", "tmp_path"]


def remove_dead_temps_of(path) -> list[Path]:
    """Delete temps of ``path`` (``<name>.tmp-<host>-<pid>``) left by killed processes of this host."""
    path = Path(path)
    return remove_dead_temps(path.parent, f"{path.name}.tmp-*")


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path``: temp -> fsync -> rename; the temp is removed on any error."""
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class GuardedFile(io.RawIOBase):
    """A binary file for h5py's ``fileobj`` driver that records the first write error.

    HDF5 cannot recover from a failed write (a full disk): the file stays open inside
    the library and the process crashes at exit. Writing through this object, HDF5
    never sees the error; the writer checks :attr:`error` after each block and on
    close, removes its temp and raises a clean error instead.
    """

    def __init__(self, path, mode: str = "w+b"):
        super().__init__()
        self.path = Path(path)
        self._fh = open(self.path, mode)
        self.error: OSError | None = None

    def readable(self):
        return True

    def writable(self):
        return True

    def seekable(self):
        return True

    def readinto(self, b):
        return self._fh.readinto(b)

    def _guard(self, fn, *args, default=None):
        if self.error is None:
            try:
                return fn(*args)
            except OSError as exc:
                self.error = exc
        return default

    def write(self, b):
        n = len(memoryview(b))
        self._guard(self._fh.write, b)
        return n

    def seek(self, offset, whence=0):
        return self._fh.seek(offset, whence)

    def tell(self):
        return self._fh.tell()

    def truncate(self, size=None):
        self._guard(self._fh.truncate, size)
        return size

    def flush(self):
        if not self._fh.closed:
            self._guard(self._fh.flush)

    def sync(self) -> None:
        """Flush and fsync; records an error like a write."""
        self.flush()
        self._guard(os.fsync, self._fh.fileno())

    def close(self):
        if not self.closed:
            self.flush()
            try:
                self._fh.close()
            except OSError as exc:
                self.error = self.error or exc
        super().close()
