"""The executor seam: run independent tasks serially, in a local process pool, or on dask.

Tasks are ``fn(arg)`` with a picklable module-level ``fn``: :func:`run_tasks` yields
``(arg, result)`` as tasks complete (shards); :func:`imap_ordered` yields results in
input order with a bounded number in flight (ingest streams a dataset through it). Nothing home-made beyond this seam: the
process pool is :class:`concurrent.futures.ProcessPoolExecutor` with the spawn
start method (safe with threads, CUDA and macOS), and the cluster executor is
dask.distributed (optional extra ``ferdata[dask]``).
"""
from __future__ import annotations

import multiprocessing as mp
from collections import deque
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterable, Iterator

from .errors import FerdataError


def run_tasks(fn: Callable, args: Iterable, executor: str = "process", workers: int = 1,
              scheduler: str | None = None) -> Iterator:
    args = list(args)
    if executor == "serial" or (executor == "process" and workers <= 1):
        for a in args:
            yield a, fn(a)
        return
    if executor == "process":
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
            futs = {ex.submit(fn, a): a for a in args}
            try:
                for fut in as_completed(futs):
                    yield futs[fut], fut.result()
            except BaseException:
                for f in futs:
                    f.cancel()
                raise
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
            for fut in das_completed(futs):
                yield back[fut.key], fut.result()
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
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
        pending: deque = deque()
        for it in items:
            pending.append(ex.submit(fn, it))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
