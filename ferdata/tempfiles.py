"""Temporary files for atomic writes: ``<name>.tmp-<host>-<pid>``, fsync, rename.

The host name in the temp name lets several machines write into one shared folder:
a run only ever removes temps of *this* host whose process is gone (a killed run),
never those of a live job elsewhere.
"""
from __future__ import annotations

import io
import os
import re
import socket
from pathlib import Path


def host_tag() -> str:
    """This machine's name, reduced to characters safe in a file name (no '-')."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname() or "host")


def tmp_path(path, suffix: str = "") -> Path:
    """The temp name for writing ``path`` in this process (``suffix`` keeps an extension)."""
    path = Path(path)
    return path.with_name(f"{path.name}.tmp-{host_tag()}-{os.getpid()}{suffix}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_temps(path) -> list[Path]:
    """Delete temps of ``path`` left by killed processes of this host; returns what was removed."""
    path = Path(path)
    removed = []
    for p in path.parent.glob(f"{path.name}.tmp-{host_tag()}-*"):
        pid = p.name[len(f"{path.name}.tmp-{host_tag()}-"):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def fsync_file(path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path``: temp -> fsync -> rename; the temp is removed on any error."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class GuardedFile(io.RawIOBase):
    """A binary file for h5py's ``fileobj`` driver that records the first write error.

    HDF5 cannot recover from a failed write (a full disk): the file stays open inside
    the library and the process crashes at exit. Writing through this object, HDF5
    never sees the error; the writer checks :attr:`error` after each block and on
    close, removes its temp and raises a clean error instead.
    """

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)
        self._fh = open(self.path, "w+b")
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
