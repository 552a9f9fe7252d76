"""Render a large CPU batch on every core: one chunk per thread, each thread's torch ops on one core.

A chunk of the torch renderer is ~200 small tensor ops; splitting every op over the
cores (torch's intra-op threads) spends much of the time forking and joining. Running
whole chunks side by side on Python threads (torch releases the GIL inside an op) scales
better: 1.4x instead of 1.15x on 2 cores (docs/rendering.md, "The torch renderer").
A chunk's result does not depend on the thread that renders it (tested).

:func:`fork_safe` keeps a process forked from a multi-threaded torch on one thread while
it renders: GNU OpenMP cannot start threads after a fork, so the child's first parallel
op would hang (docs/rendering.md, "The torch renderer").
"""
from __future__ import annotations

import contextlib
import os

import torch

from ..parallel import thread_pool


def map_chunks(fn, chunks, threads: int) -> list:
    """``[fn(c) for c in chunks]``, ``threads`` chunks at a time, each on one intra-op thread.

    ``torch.set_num_threads(1)`` in a worker binds that worker's own OpenMP/MKL threads
    but also the process-wide value that threads started later read: it is restored
    to ``threads`` (the caller's value) before returning.
    """
    def run(c):
        torch.set_num_threads(1)
        return fn(c)
    try:
        return list(thread_pool(threads, "torch-render").map(run, chunks))
    finally:
        torch.set_num_threads(threads)


_threads_at_fork = 1
_forked_from_threads = False  # this process was forked from one whose torch used > 1 thread


def _before_fork() -> None:
    global _threads_at_fork
    _threads_at_fork = torch.get_num_threads()


def _after_fork_in_child() -> None:
    global _forked_from_threads
    _forked_from_threads = _forked_from_threads or _threads_at_fork > 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def fork_safe():
    """Run the block on one torch thread if this process was forked from one whose torch
    had several (its OpenMP threads, if it started them, did not survive the fork, and
    GNU OpenMP hangs instead of starting new ones: PyTorch issue 17199); else as is.
    The thread count is restored afterwards."""
    if not _forked_from_threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
