"""The epoch order of :class:`~ferdata.torch.ShardIterableDataset` (numpy only, pure functions).

Vocabulary (all int64 arrays):

* *selection index* ``s`` in ``[0, S)``: the ``s``-th selected sample (after filters),
  in render order;
* *block*: up to ``block`` consecutive selection indices inside one shard (one read);
* *stream*: the epoch order of all ``S`` selection indices — blocks in a random order,
  then shuffled within consecutive windows of ``buffer`` stream positions. A pure
  function of ``(seed, epoch)`` (and the selection / block / buffer sizes): it does not
  depend on the number of ranks or workers;
* *rank sequence*: the contiguous slice ``[r*n, (r+1)*n)`` of the stream (taken modulo
  ``S`` when padding) that rank ``r`` of ``W`` reads;
* *worker part*: the positions of the rank sequence one DataLoader worker reads.
"""
from __future__ import annotations

import numpy as np


def block_table(counts: np.ndarray, block: int):
    """Blocks of ``block`` selection indices that do not cross shards.

    ``counts[k]`` is the number of selected samples of shard ``k``. Returns
    ``(starts, lengths)``: block ``b`` is selection indices ``starts[b] .. starts[b]+lengths[b]-1``.
    """
    starts, lengths = [], []
    base = 0
    for c in np.asarray(counts, np.int64).tolist():
        j = np.arange(-(-c // block), dtype=np.int64) * block
        starts.append(base + j)
        lengths.append(np.minimum(block, c - j))
        base += c
    if not starts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(starts), np.concatenate(lengths)


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & (2**63 - 1), int(epoch) & (2**63 - 1), 0x6665]))


def epoch_stream(starts: np.ndarray, lengths: np.ndarray, seed: int, epoch: int, shuffle: bool,
                 buffer: int) -> np.ndarray:
    """Selection indices in epoch order (see module doc)."""
    S = int(lengths.sum())
    if not shuffle:
        return np.arange(S, dtype=np.int64)
    rng = epoch_rng(seed, epoch)
    perm = rng.permutation(starts.size)
    st, ln = starts[perm], lengths[perm]
    stream = np.arange(S, dtype=np.int64) + np.repeat(st - (np.cumsum(ln) - ln), ln)
    if buffer > 1 and S > 1:
        nfull = S // buffer
        head = rng.permuted(stream[:nfull * buffer].reshape(nfull, buffer), axis=1).reshape(-1)
        tail = rng.permutation(stream[nfull * buffer:])
        stream = np.concatenate((head, tail))
    return stream


def rank_count(S: int, world: int, drop_last: bool, batch: int | None = None) -> int:
    """Samples each rank reads per epoch: ``ceil(S/W)`` (pad) or ``floor(S/W)`` (drop).

    With ``drop_last`` and a dataset batch size, also rounded down to whole batches.
    """
    if drop_last:
        n = S // world
        if batch:
            n -= n % batch
        return n
    return -(-S // world)


def rank_positions(S: int, world: int, rank: int, drop_last: bool, batch: int | None = None) -> np.ndarray:
    """Stream positions of rank ``rank``'s sequence (padding wraps to the stream's start)."""
    n = rank_count(S, world, drop_last, batch)
    if S == 0:
        return np.zeros(0, np.int64)
    return np.arange(rank * n, (rank + 1) * n, dtype=np.int64) % S


def remaining(n: int, consumed) -> np.ndarray:
    """Positions ``0..n-1`` of the rank sequence not in the ``consumed`` [a, b) ranges."""
    if not consumed:
        return np.arange(n, dtype=np.int64)
    mask = np.ones(n, bool)
    for a, b in consumed:
        mask[a:b] = False
    return np.flatnonzero(mask)


def to_ranges(mask: np.ndarray) -> list:
    """A boolean mask -> sorted list of [a, b) ranges where it is True."""
    m = np.concatenate(([False], np.asarray(mask, bool), [False]))
    d = np.flatnonzero(np.diff(m.astype(np.int8)))
    return [[int(a), int(b)] for a, b in zip(d[::2], d[1::2])]


def worker_part(m: int, workers: int, worker: int, batch: int | None = None) -> np.ndarray:
    """Indices ``0..m-1`` (of the remaining rank sequence) that worker ``worker`` reads.

    Per-sample mode (``batch`` None): one contiguous part per worker, sizes differing by at
    most one (the first ``m % workers`` workers get one more). Batch mode: chunks of
    ``batch`` consecutive indices dealt round-robin, so the DataLoader (which takes one
    item from each worker in turn) returns the chunks in sequence order whatever the
    number of workers.
    """
    if batch:
        idx = np.arange(m, dtype=np.int64)
        chunk = idx // batch
        return idx[chunk % workers == worker]
    q, r = divmod(m, workers)
    a = worker * q + min(worker, r)
    return np.arange(a, a + q + (worker < r), dtype=np.int64)


def worker_sizes(m: int, workers: int) -> list:
    q, r = divmod(m, workers)
    return [q + (w < r) for w in range(workers)]


def loader_consumed(m: int, workers: int, loader_batch: int, seen: int, loader_drop_last: bool = False) -> np.ndarray:
    """Which of ``m`` per-sample-mode positions a DataLoader has returned after ``seen`` samples.

    Simulates ``DataLoader(ds, batch_size=loader_batch, num_workers=workers)``: each
    worker batches its own contiguous part; the loader returns one batch from each
    worker in turn, skipping workers that are done. Returns a boolean mask of length
    ``m``. Raises ValueError when ``seen`` is not at a batch boundary.
    """
    sizes = worker_sizes(m, workers)
    begin = np.concatenate(([0], np.cumsum(sizes)))
    batches = []
    for s in sizes:
        q, r = divmod(s, loader_batch)
        batches.append([loader_batch] * q + ([r] if r and not loader_drop_last else []))
    taken = [0] * workers
    total = 0
    rnd = 0
    while total < seen:
        progressed = False
        for w in range(workers):
            if rnd < len(batches[w]) and total < seen:
                total += batches[w][rnd]
                taken[w] += batches[w][rnd]
                progressed = True
        if not progressed:
            break
        rnd += 1
    if total != seen:
        raise ValueError(f"samples_seen={seen} is not a number of samples the DataLoader can have returned "
                         f"(batch_size={loader_batch}, num_workers={workers}, {m} samples left this epoch)")
    mask = np.zeros(m, bool)
    for w in range(workers):
        mask[begin[w]:begin[w] + taken[w]] = True
    return mask
