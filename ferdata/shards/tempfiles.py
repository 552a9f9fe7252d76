"""Temporary files, per-file locks and atomic JSON writes shared by every writer.

A file is always written to ``<name>.tmp-<host>-<pid>``, fsynced, and renamed over
``<name>``. The host name in the temp name lets array jobs on several machines share
one folder: clean-up removes only temps of *this* host whose process is gone (a pid
can only be checked on the machine that owns it). Temps of other hosts, and old
``<name>.tmp-<pid>`` temps that name no host, are left alone and reported by
``ferdata verify``.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from pathlib import Path

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
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_json_atomic(path, obj, **dump_kw) -> None:
    """Write ``obj`` as JSON to ``path`` by tmp -> fsync -> ``os.replace``; no temp survives an error."""
    text = json.dumps(obj, **{"indent": 1, "sort_keys": True, **dump_kw}) + "\n"
    atomic_write(path, lambda f: f.write(text), "w")


@contextlib.contextmanager
def file_lock(path):
    """Exclusive advisory lock on ``<path>.lock`` (fcntl.flock; a no-op where fcntl is missing).

    The lock file is left in place: removing it would let a waiting process lock a
    file no one else can see.
    """
    lock = Path(path)
    lock = lock.with_name(lock.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX
            fcntl = None
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
