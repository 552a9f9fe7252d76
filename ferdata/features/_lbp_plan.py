"""Call plans of :func:`ferdata.features.lbp.lbp` (private): sampling plans, task
layouts and the compiled kernel each image shape and variant runs, cached.

:func:`lbp` validates its arguments once per (variant, P, R, shape, thread count);
the run registered here then calls the compiled overload of the kernel directly
(its entry point, found once), skipping numba's per-call type dispatch.
"""
from __future__ import annotations

import functools

import numba
import numpy as np
from numba.np.ufunc import parallel as _parallel

from . import _lbp_kernels as _k
from . import _lbp_original as _o

VARIANT_CODE = {"circle": _k.CIRCLE, "uniform": _k.UNIFORM, "ror": _k.ROR,
                "nri_uniform": _k.NRI_UNIFORM}
_RUNS: dict = {}  # fast-path key -> run(image)
_MAX_RUNS = 64  # each holds its plan and column weights (a few KB)
SERIAL_PX = 1 << 12  # below this many pixels (at P <= 8) a call runs on one thread
SERIAL_WORK = SERIAL_PX * 8  # ... and below this many pixel-neighbours at larger P
SMALL_WORK = 1 << 20  # below this many pixel-neighbours: 2 tasks per thread (a few crops)
THREAD_WORK = 1 << 22  # from this many (32 crops of 128^2 at P=8): Python threads, no parfor
_POOL: dict = {}  # (pid, threads) -> ThreadPoolExecutor


def num_threads() -> int:
    """``numba.get_num_threads()`` without its lock once the thread pool is up (0.2 us, not 2)."""
    get = getattr(_parallel, "_get_num_threads", None)
    n = get() if _parallel._is_initialized and get is not None else 0
    return n if n > 0 else numba.get_num_threads()


@functools.lru_cache(maxsize=64)
def _plan(P: int, R: float):
    """Sampling plan of (P, R): skimage's rounded offsets and their integer/fraction split.

    Returns read-only arrays ``rp, fr, fc, rfrac, src, gcp, order`` and ``ndirect``
    (see :func:`ferdata.features._lbp_kernels.lbp_circle`).
    """
    angle = 2 * np.pi * np.arange(P, dtype=np.float64) / P
    rp = np.round(-R * np.sin(angle), 5)  # row offset: bit 0 east, counter-clockwise
    cp = np.round(R * np.cos(angle), 5)
    fr = np.floor(rp).astype(np.int64)
    fc = np.floor(cp).astype(np.int64)
    rfrac = (np.ceil(rp) != fr).astype(np.int64)
    groups: list[float] = []  # distinct fractional column offsets
    src = np.full(P, -1, np.int64)
    for p in range(P):
        if np.ceil(cp[p]) != fc[p]:
            if cp[p] not in groups:
                groups.append(cp[p])
            src[p] = groups.index(cp[p])
    direct = [p for p in range(P) if not rfrac[p]]
    blend = [p for p in range(P) if rfrac[p]]
    pad = lambda ps: ps + [-1] * (-len(ps) % 4)  # noqa: E731
    order = np.array(pad(direct) + pad(blend), np.int64)
    arrays = (rp, fr, fc, rfrac, src, np.array(groups, np.float64), order)
    for a in arrays:
        a.flags.writeable = False
    return arrays + (len(pad(direct)),)


@functools.lru_cache(maxsize=16)
def _table(variant: str, P: int):
    """Lookup table raw code -> ``ror``/``nri_uniform`` code for P <= 16 (else empty:
    the kernel maps with bit operations; ``circle`` and ``uniform`` never need one)."""
    if variant in ("ror", "nri_uniform") and P <= 16:
        t = _k.code_table(P, VARIANT_CODE[variant])
    else:
        t = np.zeros(0, np.int64)
    t.flags.writeable = False
    return t


@functools.lru_cache(maxsize=16)  # a few KB per entry (the weights are per column)
def _layout(P: int, R: float, N: int, H: int, W: int, threads: int, plane: int = 8192):
    """Task layout and column weights for one image size.

    Returns ``block`` (output rows per task: a task's buffers hold about ``plane``
    float64s, 64 KB, so they stay in cache and below malloc's mmap threshold; at least
    8 rows; at least 4 tasks per thread, so a thread whose core another process holds
    can leave tasks to the others), ``gfc`` and the column weights ``W0, W1 (G, Wp)``:
    ``1-dc`` and ``dc`` with ``dc = (c+cp) - floor(c+cp)`` from the absolute column as
    skimage computes it (the last bits depend on c), 0 in the padding. Under
    :data:`SMALL_WORK` pixel-neighbours (a crop or a few) the rows are cut into 2 tasks
    per thread instead: the fewest halo rows that still let one thread take 3 of 4.
    """
    rp, fr, fc, rfrac, src, gcp, order, ndirect = _plan(P, R)
    L = int((fr + rfrac).max(initial=0) - fr.min(initial=0)) + 1
    m = int(max(1, (-fc).max(), (fc + 1).max()))
    Wp = W + 2 * m
    if N * H * W * max(P, 8) < SMALL_WORK:
        block = max(1, min(H, -(-N * H // (2 * threads))))
    else:
        block = max(1, min(H, max(8, plane // Wp - L + 1), -(-N * H // (4 * threads))))
    x = np.arange(W, dtype=np.float64)[None, :] + gcp[:, None]
    dc = x - np.floor(x)
    w = np.zeros((2, len(gcp), Wp))
    w[0, :, m:m + W] = 1 - dc
    w[1, :, m:m + W] = dc
    w.flags.writeable = False
    return block, np.floor(gcp).astype(np.int64), w[0], w[1]


def kernel_args(variant, P, R, shape3, threads):
    """``(kernel, extra arguments)``: the kernel runs as
    ``kernel(img3, out3, np.zeros(1, np.int64), *extra)`` -- its task counter, fresh for
    every call (two threads may run one plan at once).

    Inputs under :data:`SERIAL_PX` pixels at P <= 8 (64^2; in general under
    :data:`SERIAL_WORK` pixel-neighbours) run on the calling thread: there a parallel
    region's hand-off (~3 us on an idle core, milliseconds when another process holds
    it) costs more than it saves. From :data:`THREAD_WORK` pixel-neighbours (batches)
    the one-thread kernel runs on ``threads`` Python threads (:class:`Threaded`; it
    releases the GIL), so a batch needs no parallel (parfor) compile, which costs more
    than the kernel's own (:func:`parallel_if_compiled` swaps the parallel kernel in once
    it is compiled). In between (a crop or a few), the parallel kernel's workers
    take tasks of rows from a shared counter (see :func:`_layout` for the task size; a
    128^2 crop is 4 tasks with 2 threads: 1.4-1.7x the one-thread kernel, docs/lbp.md).
    """
    N, H, W = shape3
    work = N * H * W * max(P, 8)
    serial = threads == 1 or work < SERIAL_WORK
    threads = 1 if serial else threads
    if variant == "original":
        block = max(1, min(H, max(8, 65536 // W), -(-N * H // (4 * threads))))
        kernel = _o.lbp_original_serial if serial else _o.lbp_original
        extra = (block, threads)
    else:
        rp, fr, fc, rfrac, src, gcp, order, ndirect = _plan(P, R)
        block, gfc, W0, W1 = _layout(P, R, N, H, W, threads)
        kernel = _k.lbp_circle_serial if serial else _k.lbp_circle
        extra = (rp, fr, fc, rfrac, src, gfc, W0, W1, order, ndirect, VARIANT_CODE[variant],
                 _table(variant, P), block, threads)
    if not serial and work >= THREAD_WORK:
        kernel = threaded(_o.lbp_original_serial if variant == "original" else _k.lbp_circle_serial,
                          threads)
    return kernel, extra


class Threaded:
    """A one-thread (nogil) kernel run on ``threads`` threads: the calling one and
    ``threads - 1`` of a pool, all taking tasks from the call's shared counter."""

    def __init__(self, kernel, threads: int):
        self.kernel, self.threads = kernel, threads

    def __call__(self, *args):
        pool = _pool(self.threads - 1)
        futures = [pool.submit(self.kernel, *args) for _ in range(self.threads - 1)]
        try:
            self.kernel(*args)
        finally:
            for f in futures:
                f.result()


def parallel_if_compiled(kernel, args):
    """The parallel (parfor) twin of a :class:`Threaded` batch kernel when calling it with
    ``args`` needs no compile (this process or numba's on-disk cache has it: after
    ``ferdata lbp --warmup`` or any crop-sized call), else ``kernel``: numba's workers run
    a 1000-crop batch 5-15 % faster than Python threads (docs/lbp.md), but compiling
    them costs more than the batch."""
    if not isinstance(kernel, Threaded):
        return kernel
    twin = {_k.lbp_circle_serial: _k.lbp_circle, _o.lbp_original_serial: _o.lbp_original}.get(kernel.kernel)
    return twin if twin is not None and is_compiled(twin, args) else kernel


@functools.lru_cache(maxsize=64)
def threaded(kernel, threads: int) -> Threaded:
    """The :class:`Threaded` runner of ``kernel`` (one per kernel and thread count)."""
    return Threaded(kernel, threads)


def _pool(n: int):
    """A pool of ``n`` threads of this process (a forked child makes its own)."""
    from concurrent.futures import ThreadPoolExecutor
    import os

    key = (os.getpid(), n)
    pool = _POOL.get(key)
    if pool is None:
        pool = _POOL[key] = ThreadPoolExecutor(n, thread_name_prefix="ferdata-lbp")
    return pool


def read_only(a):
    """A read-only view: the kernels are compiled for read-only images only (one signature)."""
    v = a.view()
    v.flags.writeable = False
    return v


def entry_point(kernel, args):
    """The compiled overload of ``kernel`` for ``args`` (call it once through the
    dispatcher first, so it is compiled or loaded), else the dispatcher itself."""
    try:
        return kernel.overloads[tuple(kernel.typeof_pyval(a) for a in args)].entry_point
    except (AttributeError, KeyError, TypeError):  # numba internals moved: dispatch each call
        return kernel


def find_run(key):
    """The run registered for ``key`` (see :func:`register_run`), else None."""
    try:
        return _RUNS.get(key)
    except TypeError:  # an unhashable argument: the caller validates (and refuses) it
        return None


def writes_directly(out, image, dtype) -> bool:
    """Whether the kernels can write the codes of ``image`` straight into ``out`` (an
    array already known to fit): C-contiguous, of the code ``dtype``, and sharing no
    memory with ``image``, which the kernels read while they write. Any other ``out``
    is filled through a temporary."""
    return out.flags.c_contiguous and out.dtype == dtype and not np.may_share_memory(out, image)


def register_run(key, kernel, args, shape, dtype):
    """Remember ``run(image, out=None) -> codes`` for C-contiguous uint8 images of
    ``shape``: ``args`` are those of a call of ``kernel`` that has just succeeded
    (image, codes, counter, extra arguments; each run makes a fresh counter).
    ``out`` is used if it is a writeable C-contiguous array of ``shape`` and the code
    dtype that shares no memory with ``image``; for any other ``out`` run returns None
    (the caller takes the validating path)."""
    fn = entry_point(kernel, args)
    extra = args[3:]
    shape3 = args[0].shape

    def run(image, out=None):
        if out is None:
            res = np.empty(shape, dtype)
        elif (type(out) is np.ndarray and out.shape == shape and out.flags.writeable
              and writes_directly(out, image, dtype)):
            res = out
        else:
            return None
        img3 = image.reshape(shape3)
        img3.flags.writeable = False
        fn(img3, res.reshape(shape3), np.zeros(1, np.int64), *extra)
        return res

    if len(_RUNS) >= _MAX_RUNS:
        _RUNS.clear()
    _RUNS[key] = run


def _cached_on_disk(kernel, sig) -> bool:
    """Whether numba's on-disk cache index of ``kernel`` holds ``sig`` (numba internals;
    False if they moved)."""
    try:
        cache = kernel._cache
        key = cache._index_key(sig, kernel.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except (AttributeError, OSError, TypeError, ValueError, EOFError):
        return False


def is_compiled(kernel, args) -> bool:
    """Whether calling ``kernel(*args)`` (a dispatcher or a :class:`Threaded` one) runs
    without compiling: this process has the signature, or numba's on-disk cache has it
    (then the call only loads it, well under a second)."""
    kernel = getattr(kernel, "kernel", kernel)
    try:
        sig = tuple(kernel.typeof_pyval(a) for a in args)
    except (AttributeError, TypeError, ValueError):
        return False
    if sig in kernel.overloads:
        return True
    return _cached_on_disk(kernel, sig)
