"""The executor seam: run independent tasks serially, in a local process pool, or on dask.

Tasks are ``fn(arg)`` with a picklable module-level ``fn``: :func:`run_tasks` yields
``(arg, result)`` as tasks complete (shards); :func:`imap_ordered` yields results in
input order with a bounded number in flight (ingest streams a dataset through it). Nothing home-made beyond this seam: the
process pool is :class:`concurrent.futures.ProcessPoolExecutor` with the spawn
start method (safe with threads, CUDA and macOS), and the cluster executor is
dask.distributed (optional extra ``ferdata[dask]``).

Pool workers die with the process that started them (``PR_SET_PDEATHSIG`` on Linux,
and a watchdog thread polling the parent pid elsewhere), so killing ``ferdata render``
or ``ferdata lbp`` never leaves workers writing on. A worker that dies (kill -9, out
of memory) becomes one :class:`~ferdata.errors.FerdataError`; the results of tasks
that finished before are still yielded, so the caller records them.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, CancelledError, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator

from .errors import FerdataError

_PR_SET_PDEATHSIG = 1


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.5)


def die_with_parent(parent: int) -> None:
    """Pool-worker initializer: end this process when ``parent`` ends."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl
            pass
    if os.getppid() != parent:  # the parent died before the prctl
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="ferdata-parent-watch").start()


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A spawn-context pool whose workers die with this process."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                               initializer=die_with_parent, initargs=(os.getpid(),))


_THREAD_POOLS: dict = {}  # name -> (pid, threads, executor)
_THREAD_POOLS_LOCK = threading.Lock()


def thread_pool(threads: int, name: str) -> ThreadPoolExecutor:
    """This process's pool ``name`` of ``threads`` threads, made once and reused. Keyed by
    pid: a forked child (a DataLoader worker) inherits the parent's executor but not its
    threads, and would wait on it forever, so it gets its own; asking for another size
    replaces the pool."""
    with _THREAD_POOLS_LOCK:
        pid, n, pool = _THREAD_POOLS.get(name, (None, None, None))
        if pid != os.getpid() or n != threads:
            pool = ThreadPoolExecutor(threads, thread_name_prefix=f"ferdata-{name}")
            _THREAD_POOLS[name] = (os.getpid(), threads, pool)
        return pool


def drain(fut) -> None:
    """Make sure ``fut`` is not running any more: cancel it, or wait for it (its error is
    dropped: the caller is already handling another)."""
    if fut is not None and not fut.cancel():
        fut.exception()


def worker_died(exc: BaseException) -> FerdataError:
    return FerdataError(f"a worker process ended abruptly (killed, or out of memory?): {exc or 'no detail'}; "
                        "the work finished before it is kept, rerun the same command to resume")


def _pool_tasks(fn, args, workers, window: int):
    """Tasks in a bounded window (``window`` submitted and not yet taken): a finished task's
    result is dropped once yielded, so a long run of large results (render parts) never
    piles up in this process."""
    todo = iter(args)
    with process_pool(workers) as ex:
        futs = {}
        first_error = None

        def fill():
            for a in todo:
                futs[ex.submit(fn, a)] = a
                if len(futs) >= window:
                    return

        try:
            fill()
            while futs:
                done, _ = wait(futs, return_when=FIRST_COMPLETED)
                for fut in [f for f in futs if f in done]:   # in submission order
                    a = futs.pop(fut)
                    try:
                        res = fut.result()
                    except CancelledError:
                        continue
                    except BaseException as exc:
                        if first_error is None:
                            first_error = exc
                            for f in futs:
                                f.cancel()
                        continue
                    yield a, res
                if first_error is None:
                    fill()
        except BaseException:
            for f in futs:
                f.cancel()
            raise
        if first_error is not None:
            if isinstance(first_error, BrokenProcessPool):
                raise worker_died(first_error) from first_error
            raise first_error


def run_tasks(fn: Callable, args: Iterable, executor: str = "process", workers: int = 1,
              scheduler: str | None = None) -> Iterator:
    """Yield ``(arg, fn(arg))`` as tasks complete.

    When a task fails, tasks not yet started are cancelled, the ones finished or
    running are still yielded, and then the first error is raised. Process pools keep
    at most ``4 × workers`` tasks submitted and drop each result once yielded (results
    may be large: a render's parts).
    """
    args = list(args)
    if executor == "serial" or (executor == "process" and workers <= 1):
        for a in args:
            yield a, fn(a)
        return
    if executor == "process":
        yield from _pool_tasks(fn, args, workers, window=4 * workers)
        return
    if executor == "dask":
        try:
            from dask.distributed import Client, LocalCluster, as_completed as das_completed
        except ImportError as exc:
            raise FerdataError("--executor dask needs dask.distributed: pip install 'ferdata[dask]'") from exc
        if scheduler:
            client = Client(scheduler)
        else:
            client = Client(LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True))
        try:
            futs = client.map(fn, args, pure=False)
            back = {f.key: a for f, a in zip(futs, args)}
            done = das_completed(futs)
            del futs   # each result is released on the cluster once taken
            for fut in done:
                res = fut.result()
                fut.release()
                yield back.pop(fut.key), res
        finally:
            client.close()
        return
    raise FerdataError(f"unknown executor {executor!r} (serial|process|dask)")


def imap_ordered(fn, items: Iterable, workers: int, window: int):
    """Map ``fn`` over ``items`` in a spawn-safe process pool, results in order,
    with at most ``window`` tasks in flight (so huge datasets stream)."""
    if workers <= 1:
        for it in items:
            yield fn(it)
        return
    try:
        with process_pool(workers) as ex:
            pending: deque = deque()
            for it in items:
                pending.append(ex.submit(fn, it))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    except BrokenProcessPool as exc:
        raise worker_died(exc) from exc
