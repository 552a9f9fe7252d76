"""The one write primitive of ferdata: temp names, atomic writes, file locks, guarded files.

A file is always written to ``<name>.tmp-<host>-<pid>``, fsynced, and renamed over
``<name>`` (then the folder is fsynced). The host name in the temp name lets array jobs
on several machines share one folder: clean-up removes only temps of *this* host whose
process is gone (a pid can only be checked on the machine that owns it). Temps of other
hosts, and old ``<name>.tmp-<pid>`` temps that name no host, are left alone and
reported by ``ferdata verify``. Locks are the ``filelock`` package's: ``flock`` where
``fcntl`` exists, ``msvcrt`` on Windows, a lock file created exclusively elsewhere.
Nothing else in the package renames, fsyncs or locks a file (``docs/architecture.md``).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
from pathlib import Path

__all__ = ["GuardedFile", "append_line", "atomic_save", "atomic_write", "atomic_write_bytes", "atomic_write_text",
           "describe_temp", "file_lock", "fsync_dir", "fsync_file", "host_tag", "parse_tmp", "pid_alive", "publish",
           "remove_dead_temps", "remove_dead_temps_of", "suffixed_tmp_path", "temp_files", "tmp_path",
           "write_json_atomic"]

_HOST_SAFE = re.compile(r"[^A-Za-z0-9_.]")


def host_tag() -> str:
    """This machine's name as it appears in temp names (no dashes, path-safe)."""
    return _HOST_SAFE.sub("_", socket.gethostname() or "localhost") or "localhost"


def tmp_path(path) -> Path:
    """``<path>.tmp-<host>-<pid>`` next to ``path``."""
    path = Path(path)
    return path.with_name(f"{path.name}.tmp-{host_tag()}-{os.getpid()}")


def parse_tmp(name: str):
    """``(target name, host or None, pid)`` of a temp name, or None if it is not one."""
    m = re.fullmatch(r"(.+)\.tmp-(?:([^-]+)-)?(\d+)", name)
    if not m:
        return None
    return m.group(1), m.group(2), int(m.group(3))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_files(folder, pattern: str = "*.tmp-*") -> list[Path]:
    return sorted(p for p in Path(folder).glob(pattern) if p.is_file() and parse_tmp(p.name))


def remove_dead_temps(folder, pattern: str = "*.tmp-*") -> list[Path]:
    """Delete this host's temps in ``folder`` matching ``pattern`` whose writer is gone."""
    removed = []
    me = host_tag()
    for p in temp_files(folder, pattern):
        _, host, pid = parse_tmp(p.name)
        if host == me and pid != os.getpid() and not pid_alive(pid):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def describe_temp(p: Path) -> str:
    """Why a temp file is there, for ``verify``."""
    _, host, pid = parse_tmp(p.name)
    if host is None:
        return f"stray temporary file (pid {pid}, no host recorded): left by an interrupted run; delete it"
    if host == host_tag():
        state = "still running" if pid_alive(pid) else "gone"
        return (f"temporary file of pid {pid} on this host ({state}): "
                + ("a run in progress" if state == "still running" else "left by a killed run; the next run removes it"))
    return f"temporary file of pid {pid} on host {host}: a run in progress there, or left by a killed one"


def fsync_file(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder) -> None:
    """Make a rename in ``folder`` durable (best effort: not every OS allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write, mode: str = "wb") -> Path:
    """Call ``write(fileobj)`` on ``path``'s temp, fsync, ``os.replace`` over ``path``, fsync the folder.

    The one atomic-write primitive of ferdata (shards' JSON, face-store reports, images,
    checkpoints, cv outputs): no temp survives an error, a reader never sees half a file.
    """
    path = Path(path)
    tmp = tmp_path(path)
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def publish(tmp, path) -> Path:
    """Rename a finished, fsynced temp over ``path`` and fsync the folder (writers that fill
    their temp themselves: HDF5 files through :class:`GuardedFile`, copies)."""
    path = Path(path)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def suffixed_tmp_path(path) -> Path:
    """``.<stem>.<host>-<pid>.tmp<suffix>``: a temp name that keeps the extension (for
    writers that choose the format by it: cv2.imwrite, matplotlib)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{host_tag()}-{os.getpid()}.tmp{path.suffix}")


def atomic_save(path, save) -> Path:
    """Call ``save(temp_path)`` (a writer that takes a file name and needs the extension),
    fsync, rename over ``path``; no temp survives an error."""
    path = Path(path)
    tmp = suffixed_tmp_path(path)
    try:
        save(tmp)
        fsync_file(tmp)
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def append_line(path, line: str) -> None:
    """Append ``line`` + newline and fsync (logs read back line by line; a torn last line is
    the only possible damage, and readers drop it)."""
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path, obj, **dump_kw) -> None:
    """Write ``obj`` as JSON to ``path`` by tmp -> fsync -> ``os.replace``; no temp survives an error."""
    text = json.dumps(obj, **{"indent": 1, "sort_keys": True, **dump_kw}) + "\n"
    atomic_write(path, lambda f: f.write(text), "w")


@contextlib.contextmanager
def file_lock(path, timeout: float = -1):
    """Exclusive lock on ``<path>.lock`` for the ``with`` block (waits; ``timeout`` s, -1 = forever).

    ``filelock.FileLock``: an OS lock (``flock``/``msvcrt``) that dies with its process,
    or, where neither exists, a lock file created exclusively. The lock file is left in
    place: removing it would let a waiting process lock a file no one else can see.
    """
    from filelock import FileLock

    lock = Path(path)
    with FileLock(str(lock.with_name(lock.name + ".lock")), timeout=timeout):
        yield


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
