"""Render a large CPU batch on every core: one chunk per thread, each thread's torch ops on one core.

A chunk of the torch renderer is ~200 small tensor ops; splitting every op over the
cores (torch's intra-op threads) spends much of the time forking and joining. Running
whole chunks side by side on Python threads (torch releases the GIL inside an op) scales
better: 1.4x instead of 1.15x on 2 cores (docs/rendering.md, "The torch renderer").
A chunk's result does not depend on the thread that renders it (tested).
"""
from __future__ import annotations

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
