"""Add LBP codes to one HDF5 file's copy: the core that face stores and shards share.

:func:`lbp_copy` writes ``<name>.tmp-<host>-<pid>`` with dataset ``lbp/...`` added and
fsyncs it; the caller publishes it (:func:`ferdata.atomic.publish`) under its lock:
:func:`ferdata.features.lbp_io.add_lbp_to_h5` for one file,
:mod:`ferdata.features.lbp_shards` for a render folder (manifest kept right).
Codes are computed on ``cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)`` (``docs/lbp.md``).
"""
from __future__ import annotations

import shutil
from contextlib import closing
from pathlib import Path

import numpy as np

from .._version import __version__
from ..atomic import tmp_path
from ..errors import FerdataError
from .lbp import code_dtype, dataset_name, lbp

__all__ = ["GRAY", "lbp_copy", "to_gray"]

GRAY = "cv2.COLOR_RGB2GRAY (0.299 R + 0.587 G + 0.114 B)"


def to_gray(images: np.ndarray) -> np.ndarray:
    """(n,H,W,3) RGB, (n,H,W,4) RGBA, (n,H,W,1) or (n,H,W) -> (n,H,W) gray, same dtype."""
    import cv2

    if images.ndim == 3:
        return images
    n, H, W, C = images.shape
    if C == 1:
        return images[..., 0]
    code = {3: cv2.COLOR_RGB2GRAY, 4: cv2.COLOR_RGBA2GRAY}.get(C)
    if code is None:
        raise FerdataError(f"cannot make a gray image from {C} channels")
    if n == 0:
        return np.zeros((0, H, W), images.dtype)
    flat = np.ascontiguousarray(images).reshape(n * H, W, C)  # one cv2 call for the block
    return cv2.cvtColor(flat, code).reshape(n, H, W)


def _lbp_attrs(variant, P, R):
    return {"variant": variant, "P": P, "R": R, "gray": GRAY, "ferdata_version": __version__}


BLOCK = 1024   # images read, coded and written at a time


def lbp_copy(path, variant: str, P: int, R: float, *, block: int = BLOCK, progress=None,
             threads: int = 1, sync: bool = True) -> Path:
    """Copy ``path`` to its temp name with dataset ``lbp/...`` added; fsynced; returns the temp.

    Images are read from ``path`` (so a bad JPEG is reported with its file and sample
    index) and decoded straight to gray on ``threads`` threads (the kernels run on
    numba's threads, ``numba.set_num_threads``); HDF5 writes through a
    :class:`~ferdata.atomic.GuardedFile` (a full disk is a clean error, not a crash at
    exit). ``progress(n)``: ``n`` more images done. ``sync=False``: flushed, not
    fsynced — the caller fsyncs it (:func:`ferdata.atomic.fsync_file`) before it renames
    it. On any error the temp is removed.
    """
    import h5py

    from ..atomic import GuardedFile

    path = Path(path)
    name = dataset_name(variant, P, R)
    tmp = tmp_path(path)
    guard = None
    try:
        shutil.copyfile(path, tmp)
        guard = GuardedFile(tmp, "r+b")
        try:
            with h5py.File(path, "r") as src, h5py.File(guard, "a") as dst:
                _add_codes(src, dst, name, (variant, P, R), block, progress, guard, threads)
            guard.sync() if sync else guard.flush()
        finally:
            guard.close()
        if guard.error is not None:
            raise guard.error
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        err = guard.error if guard is not None else None
        if err is not None:  # a failed write (HDF5 may trip over it later): report the write
            raise FerdataError(f"{path}: cannot add {name} ({err.strerror or err}); file unchanged") from exc
        if isinstance(exc, FerdataError) or not isinstance(exc, (OSError, RuntimeError, KeyError, ValueError)):
            raise
        raise FerdataError(f"{path}: cannot add {name} ({exc}); file unchanged") from exc
    return tmp


def _add_codes(src, dst, name, spec, block, progress, guard, threads: int) -> None:
    from ..parallel import drain, thread_pool
    from ..shards.reader import read_images

    variant, P, R = spec
    n = len(src["image_offsets"]) - 1 if "image_offsets" in src else len(src["image"])
    first = read_images(src, 0, min(n, 1), gray=True)
    if first.ndim != 3:
        raise FerdataError(f"{src.filename}: images must be (N,H,W,C); got shape {src['image'].shape}")
    H, W = first.shape[1:3]
    chunks = (1, H, W) if src["image"].chunks is not None and n else None
    ds = dst.create_dataset(name, (n, H, W), code_dtype(variant, P), chunks=chunks)
    for k, v in _lbp_attrs(variant, P, R).items():
        ds.attrs[k] = v
    pool = thread_pool(threads, "lbp-decode") if threads > 1 else None
    reader = thread_pool(1, "lbp-read") if threads > 1 else None
    bounds = block_bounds(n, block)
    # the kernel is made ready (compiled on a first run, else loaded) before the first block is
    # read: loading beside the decode threads held them back at the GIL (docs/lbp.md); the
    # future is still waited for before the first call (one caller at a time in numba's layer)
    ahead = compile_ahead(variant, P, R, (bounds[0][1] - bounds[0][0], H, W)) if bounds else None

    def read(ab):
        return ab[0], read_images(src, ab[0], ab[1], gray=True, pool=pool)

    writer = thread_pool(1, "lbp-write") if threads > 1 else None
    try:
        if ahead is not None:
            ahead.result()
        with closing(_prefetched(read, bounds, reader)) as blocks:
            _code_blocks(ds, blocks, (variant, P, R), writer, progress, guard)
    finally:   # a compile still running would meet the next caller of the kernel
        drain(ahead)


def _code_blocks(ds, blocks, spec, writer, progress, guard) -> None:
    """Code each block and write it: with a ``writer`` thread, block b is written while
    block b+1 is coded (the kernel is ready: :func:`compile_ahead` was waited for)."""
    from ..parallel import drain

    pending = None   # (write future or None, images) of the block last coded

    def done(fut, n_done):
        if fut is not None:
            fut.result()
        if guard.error is not None:
            raise guard.error
        if progress is not None:
            progress(n_done)

    try:
        for a, gray in blocks:
            codes = lbp(gray, *spec)
            if pending is not None:
                done(*pending)
                pending = None
            if writer is None:
                ds[a:a + len(gray)] = codes
                done(None, len(gray))
            else:
                pending = (writer.submit(ds.__setitem__, slice(a, a + len(gray)), codes), len(gray))
        if pending is not None:
            done(*pending)
            pending = None
    finally:   # never leave a write running past the file's close
        drain(pending[0] if pending is not None else None)


def block_bounds(n: int, block: int) -> list:
    """``[(a, b), ...]`` blocks of ``block`` images, a short last one joined to the one before
    (a block of a few crops would run, and on a first run compile, another kernel)."""
    out = [(a, min(n, a + block)) for a in range(0, n, block)]
    if len(out) > 1 and out[-1][1] - out[-1][0] < block // 2:
        out[-2:] = [(out[-2][0], n)]
    return out


_AHEAD: dict = {}   # (variant, P, R, shape, threads) -> the future that made it ready in this process


def compile_ahead(variant: str, P: int, R: float, shape: tuple):
    """Make :func:`lbp` on uint8 images of ``shape`` ready on a thread (the caller's numba
    thread count): compiled on a fresh kernel cache, else loaded from numba's on-disk cache
    (~0.5 s). Once per settings and process: returns the future, the same one to every
    caller. Callers wait for it before they read the first block (loading is GIL-bound and
    held the decode threads back) and before calling the kernel (numba's workqueue layer
    takes one caller at a time); a caller stopped while it waits drains it."""
    import numba

    from ..parallel import thread_pool
    from .lbp import lbp as kernel_call   # the kernel itself, not this module's name for it

    threads = numba.get_num_threads()
    key = (variant, P, R, tuple(shape), threads)
    if key in _AHEAD:
        return _AHEAD[key]

    def run():
        numba.set_num_threads(threads)
        kernel_call(np.zeros(shape, np.uint8), variant, P, R)

    fut = _AHEAD[key] = thread_pool(1, "lbp-compile").submit(run)
    return fut


def _prefetched(read, items, reader):
    """``read(item)`` for each item; with a ``reader`` thread, block b+1 is read and decoded
    while the caller codes block b. Closing it waits for a read still running (never
    past the source file's close)."""
    from ..parallel import drain

    items = list(items)
    if reader is None:
        for it in items:
            yield read(it)
        return
    nxt = reader.submit(read, items[0]) if items else None
    try:
        for j in range(len(items)):
            got = nxt.result()
            nxt = reader.submit(read, items[j + 1]) if j + 1 < len(items) else None
            yield got
    finally:
        drain(nxt)
