"""Shards split into parts so every worker has work (docs/rendering.md, "Output, resume, scale-out").

A sample depends only on (config, face store, its global index), so a shard can be
made by several workers, each rendering a run of its samples (a *part*), and joined
in the parent: the same bytes as one worker rendering the whole shard. Parts are
small enough that progress moves at least about once a second on one core, and a
render with fewer shards than workers (``--per-face 3000``: one shard) still keeps
every worker busy.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

PARTS_PER_WORKER = 4   # a small render is cut into at least this many parts per worker
MIN_PART = 32          # samples: below this the per-task overhead shows
TAIL_SPLIT = 4         # the job's last ``workers`` parts are cut into this many pieces each


def part_limit(size: int, base: int = 512) -> int:
    """Most samples in one part: ``base`` at 128 px, fewer for larger crops (the work
    per sample grows with the pixel count), so a part takes well under a second."""
    return max(MIN_PART, int(base * (128 / max(int(size), 1)) ** 2))


def plan_parts(spans: Iterable[tuple[int, int]], workers: int, limit: int) -> list[tuple[int, int, int]]:
    """``[(shard, offset, n), ...]`` covering every ``(shard, n)`` of ``spans`` in order.

    Each shard is cut into near-equal parts of at most ``limit`` samples; when the whole
    job is small, parts shrink (to ``MIN_PART``) until there are ``PARTS_PER_WORKER``
    parts per worker. With several workers, the job's last ``workers`` parts are cut
    into ``TAIL_SPLIT`` pieces each (of at least ``MIN_PART``): the workers start at
    different times, and a whole part left to one of them at the end kept the others
    idle for up to a part's time (~0.6 s of a 7 s render on 2 cores).
    """
    spans = [(int(k), int(n)) for k, n in spans]
    total = sum(n for _, n in spans)
    part = max(1, int(limit))
    if workers > 1 and total:
        part = min(part, max(MIN_PART, -(-total // (PARTS_PER_WORKER * workers))))
    out = [p for k, n in spans for p in _cut(k, 0, n, max(1, -(-n // part)))]
    if workers > 1:
        tail = out[len(out) - workers:]
        out[len(out) - len(tail):] = [p for k, off, n in tail
                                      for p in _cut(k, off, n, min(TAIL_SPLIT, max(1, n // MIN_PART)))]
    return out


def _cut(k: int, off: int, n: int, pieces: int) -> list[tuple[int, int, int]]:
    """Samples ``off .. off+n-1`` of shard ``k`` in ``pieces`` near-equal parts."""
    base, extra = divmod(n, pieces)
    out = []
    for j in range(pieces):
        m = base + (1 if j < extra else 0)
        out.append((k, off, m))
        off += m
    return out


@dataclasses.dataclass
class _Open:
    buf: object
    seconds: float = 0.0


class Assembly:
    """Shard buffers being filled from parts that arrive in any order."""

    def __init__(self, new_buffer):
        self._new = new_buffer      # n -> empty ShardBuffer of n samples
        self._open: dict[int, _Open] = {}

    def add(self, shard: int, n_shard: int, offset: int, part, seconds: float) -> Optional[tuple]:
        """Put ``part`` at ``offset`` of ``shard``; returns ``(buffer, seconds)`` once it is complete."""
        slot = self._open.get(shard)
        if slot is None:
            slot = self._open[shard] = _Open(self._new(n_shard))
        slot.buf.put(offset, part)
        slot.seconds += seconds
        if slot.buf.i < slot.buf.n:
            return None
        del self._open[shard]
        return slot.buf, slot.seconds

    @property
    def pending(self) -> list[int]:
        """Shards with some parts in memory (lost if the run stops now: rendered again on resume)."""
        return sorted(self._open)
