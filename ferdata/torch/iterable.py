"""The training source over shard folders: :class:`ShardIterableDataset` (docs/torch.md) --
contiguous block reads, block + buffer shuffle, epoch order a pure function of
``(seed, epoch)``, equal samples per DDP rank, DataLoader workers without duplicates,
``state_dict()`` / ``load_state_dict()`` to resume mid-epoch."""
from __future__ import annotations

import multiprocessing
import multiprocessing.context
import warnings
from typing import Iterable, Optional

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import FerdataError
from . import _order
from ._base import _ShardBase, _split, _to_tensors
from .specs import Decode, Select, specs_from

_STATE_FORMAT = "ferdata.ShardIterableDataset/1"
_DECODE_BATCH = 128  # per-sample mode decodes this many samples at a time


# ---------------------------------------------------------------------------------------
# iterable
# ---------------------------------------------------------------------------------------
class _SharedInts:
    """A few ints shared with DataLoader workers, also persistent ones (fork, spawn, forkserver)."""

    def __init__(self, values):
        self._v = multiprocessing.RawArray("q", [int(v) for v in values])

    def __getitem__(self, i: int) -> int:
        return int(self._v[i])

    def __setitem__(self, i: int, v: int):
        self._v[i] = int(v)

    def __getstate__(self):
        if multiprocessing.context.get_spawning_popen() is not None:
            return {"shared": self._v}     # inherited by a starting worker process: stays shared
        return {"values": list(self._v)}   # any other pickling (copy, torch.save): a plain copy

    def __setstate__(self, state):
        self._v = state["shared"] if "shared" in state else multiprocessing.RawArray("q", state["values"])


# slots of ShardIterableDataset._shared: the epoch; how many times set_epoch was called; the
# epoch and that count when the last pass began (-1: none yet); whether the repeat was warned
_EPOCH, _SETS, _PASS_EPOCH, _PASS_SETS, _WARNED = range(5)
_REPEAT_MSG = ("ShardIterableDataset: epoch {epoch} is iterated again without set_epoch() since its last pass, "
               "so this pass repeats the same shuffled order. Call ds.set_epoch(epoch) before each epoch (it "
               "reaches DataLoader workers too); set_epoch(e) with the same e replays an epoch on purpose.")


def _dist_info(rank, world_size):
    if rank is None and world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1
    if rank is None or world_size is None:
        raise FerdataError("pass both rank and world_size (or neither, to read them from torch.distributed)")
    rank, world_size = int(rank), int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise FerdataError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return rank, world_size


class ShardIterableDataset(_ShardBase, IterableDataset):
    """Iterable dataset over a shard folder for training: fast, shuffled, resumable, DDP-ready.

    Epoch order. The selected samples are cut into *blocks* of ``block`` consecutive
    samples inside one shard (each read with one h5py call); the blocks are put in a
    random order and the result is shuffled again within windows of ``buffer`` samples
    (a shuffle buffer without the warm-up). That stream is a pure function of
    ``(seed, epoch)`` — it does not depend on the number of ranks or workers. Call
    :meth:`set_epoch` before each epoch (it reaches persistent workers too); a shuffled
    pass that starts on the epoch of the previous one without it warns once.

    Ranks. With world size ``W`` (from ``torch.distributed`` if initialised when the
    dataset is made, else ``rank``/``world_size``), rank ``r`` reads the contiguous slice
    ``[r*n, (r+1)*n)`` of the stream. Remainder policy (``S`` samples):

    * ``drop_last=False`` (default): ``n = ceil(S/W)``; the last rank's slice wraps
      around to the start of the stream, so ``W*n - S`` samples (< W) are read twice
      in that epoch — exactly like ``DistributedSampler``. When ``S`` is divisible by
      ``W`` every sample is read exactly once.
    * ``drop_last=True``: ``n = floor(S/W)`` (in batch mode also rounded down to whole
      batches); the last ``S - W*n`` samples of the stream are skipped — a different
      set each epoch when shuffling.

    Every rank gets the same ``n``, so DDP ranks run the same number of steps.

    Workers. Per-sample mode (``batch_size=None``): each DataLoader worker reads one
    contiguous part of its rank's slice; parts differ by at most one sample; no sample is
    duplicated or dropped. Batch mode (``batch_size=B``): the dataset yields ready
    batches (use ``DataLoader(ds, batch_size=None)``); chunks of ``B`` are dealt to the
    workers in turn, so the DataLoader returns the rank's slice in the same order
    whatever ``num_workers`` is; it is also a little faster (tensor conversion per batch,
    no collate, images as a zero-copy ``channels_last`` view). Only the rank's last batch
    can be short.

    Resume. ``state_dict()`` records the epoch and which positions of the rank's slice
    have been consumed; ``load_state_dict()`` makes the next iteration of that epoch
    yield exactly the remaining samples. See :meth:`state_dict` for counting samples
    when workers are used.

    Parameters
    ----------
    path, fields, transform, resize, gray, label_map, subjects, face_indices, split, faces,
    verify, allow_partial, locking, reduced_decode
        As :class:`ShardDataset`; ``transform`` gets a batch dict in batch mode.
    shuffle : bool, default True
    seed : int, default 0
    block : int, default 64
        Samples per contiguous read.
    buffer : int, default 2048
        Shuffle window (samples); 0 or 1: blocks are shuffled, samples within them are not.
    batch_size : int, optional
        Batch mode (see above).
    drop_last : bool, default False
        Remainder policy (see above).
    rank, world_size : int, optional
        Override ``torch.distributed``.

    Examples
    --------
    >>> ds = ShardIterableDataset("shards/", fields=("image", "label"), batch_size=256)  # doctest: +SKIP
    >>> loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=8,        # doctest: +SKIP
    ...                                      pin_memory=True, persistent_workers=True)
    >>> for epoch in range(60):                                                          # doctest: +SKIP
    ...     ds.set_epoch(epoch)
    ...     for batch in loader: ...
    """

    def __init__(self, path, fields: Optional[Iterable[str]] = None, *, select: Optional[Select] = None,
                 decode: Optional[Decode] = None, shuffle: bool = True, seed: int = 0, block: int = 64,
                 buffer: int = 2048, batch_size: Optional[int] = None, drop_last: bool = False,
                 rank: Optional[int] = None, world_size: Optional[int] = None, **kw):
        """``select`` / ``decode`` specs (:mod:`ferdata.torch.specs`) or their keys as keywords,
        as for :class:`~ferdata.torch.ShardDataset`; the rest sets the epoch order."""
        if int(block) < 1:
            raise FerdataError(f"block must be >= 1, got {block}")
        if int(buffer) < 0:
            raise FerdataError(f"buffer must be >= 0, got {buffer}")
        if batch_size is not None and int(batch_size) < 1:
            raise FerdataError(f"batch_size must be >= 1 or None, got {batch_size}")
        if int(seed) < 0:
            raise FerdataError(f"seed must be >= 0, got {seed}")
        self._init_shards(path, *specs_from("ShardIterableDataset", select, decode, fields, kw))
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.block = int(block)
        self.buffer = int(buffer)
        self.batch_size = int(batch_size) if batch_size is not None else None
        self.drop_last = bool(drop_last)
        self.rank, self.world_size = _dist_info(rank, world_size)
        self._shared = _SharedInts([0, 0, -1, 0, 0])
        self._blocks = _order.block_table(self._shard_counts, self.block)
        self._resume = None     # (epoch, consumed ranges) loaded by load_state_dict
        self._progress = None   # (epoch, remaining positions, count) of an in-process iteration

    # -- epochs ----------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self._shared[_EPOCH]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration produces (shared with workers)."""
        if int(epoch) < 0:
            raise FerdataError(f"epoch must be >= 0, got {epoch}")
        self._shared[_EPOCH] = int(epoch)
        self._shared[_SETS] += 1

    def _check_repeat(self, epoch: int) -> None:
        """At the start of a pass: warn (once per dataset) when the previous pass read the same
        shuffled epoch and ``set_epoch`` was not called since it began.

        Called in the main process (``num_workers=0``) or in worker 0 only, so a pass counts
        once whatever the number of workers; the counts live in shared memory, so the check
        sees the main process's ``set_epoch`` calls and earlier passes in other workers. A
        worker's warning is printed on its stderr: the main process's warning filters do not
        see it (docs/torch.md, "Training")."""
        sh = self._shared
        if self.shuffle and sh[_PASS_EPOCH] == epoch and sh[_PASS_SETS] == sh[_SETS] and not sh[_WARNED]:
            sh[_WARNED] = 1
            warnings.warn(_REPEAT_MSG.format(epoch=epoch), UserWarning, stacklevel=3)
        sh[_PASS_EPOCH], sh[_PASS_SETS] = epoch, sh[_SETS]

    @property
    def num_samples(self) -> int:
        """Samples in the whole selection (all ranks)."""
        return self._n_selected()

    @property
    def rank_samples(self) -> int:
        """Samples this rank reads per epoch."""
        return _order.rank_count(self._n_selected(), self.world_size, self.drop_last, self.batch_size)

    def __len__(self) -> int:
        """Samples (per-sample mode) or batches (batch mode) this rank yields per full epoch."""
        n = self.rank_samples
        return n if self.batch_size is None else -(-n // self.batch_size)

    def epoch_order(self, epoch: Optional[int] = None, rank: Optional[int] = None) -> np.ndarray:
        """The render's global sample indices a rank reads in ``epoch``, in stream order.

        (The DataLoader interleaves workers; in batch mode its output is this order.)
        """
        epoch = self.epoch if epoch is None else int(epoch)
        rank = self.rank if rank is None else int(rank)
        seq = self._sequence(epoch, rank)
        return self._source.render_index(self._positions(seq))

    def _stream(self, epoch: int) -> np.ndarray:
        return _order.epoch_stream(*self._blocks, self.seed, epoch, self.shuffle, self.buffer)

    def _rank_stream_pos(self, rank: int) -> np.ndarray:
        return _order.rank_positions(self._n_selected(), self.world_size, rank, self.drop_last, self.batch_size)

    def _sequence(self, epoch: int, rank: int) -> np.ndarray:
        return self._stream(epoch)[self._rank_stream_pos(rank)]

    def _remaining(self, epoch: int) -> np.ndarray:
        consumed = self._resume[1] if self._resume is not None and self._resume[0] == epoch else None
        return _order.remaining(self.rank_samples, consumed)

    # -- iteration -------------------------------------------------------------------------
    def __iter__(self):
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        epoch = self.epoch
        if worker == 0:
            self._check_repeat(epoch)
        stream = self._stream(epoch)
        spos = self._rank_stream_pos(self.rank)
        rem = self._remaining(epoch)
        mine = rem[_order.worker_part(rem.size, workers, worker, self.batch_size)]
        stream_pos = spos[mine]
        sel = stream[stream_pos]
        in_process = info is None
        if in_process:
            self._progress = [epoch, rem, 0]
        # per-sample mode reads a shuffle window at a time (one pass over its blocks),
        # at most ~64 MiB of stored rows
        group = max(self.buffer, self.block * 16)
        group = max(self.block, min(group, (64 << 20) // self._row_bytes()))
        if self.batch_size is None:
            gid = stream_pos // group
            cuts = np.flatnonzero(np.diff(gid)) + 1
            bounds = np.concatenate(([0], cuts, [sel.size]))
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
                yield from self._samples(sel[a:b], in_process)
        else:
            B = self.batch_size
            for a in range(0, sel.size, B):
                batch = _to_tensors(self._read(sel[a:a + B]), channels_last=True)
                if self.transform is not None:
                    batch = self.transform(batch)
                if in_process:
                    self._progress[2] += min(B, sel.size - a)
                yield batch
        if self._resume is not None and self._resume[0] == epoch:
            self._resume = None  # the resumed epoch is done; later epochs are whole

    def _row_bytes(self) -> int:
        src = self._source
        px = src.size * src.size * src.channels
        return max(1, px if src.encoding == "raw" else px // 8)

    def _samples(self, sel: np.ndarray, in_process: bool):
        pos = self._positions(sel)
        raw = self._source.read(self._pipe.stored, pos)
        for a in range(0, sel.size, _DECODE_BATCH):
            part = {k: v[a:a + _DECODE_BATCH] for k, v in raw.items()}
            batch = _to_tensors(self._process(part, pos[a:a + _DECODE_BATCH]))
            for s in _split(batch, min(_DECODE_BATCH, sel.size - a)):
                if self.transform is not None:
                    s = self.transform(s)
                if in_process:
                    self._progress[2] += 1
                yield s

    # -- resume ----------------------------------------------------------------------------
    def state_dict(self, samples_seen: Optional[int] = None, num_workers: int = 0,
                   batch_size: Optional[int] = None, loader=None) -> dict:
        """Where this rank is in the current epoch (a small JSON-able dict).

        Without arguments it uses what this process iterated (exact for
        ``num_workers=0``). With DataLoader workers the iteration happens in other
        processes: pass ``samples_seen``, the number of samples this rank's training loop
        has taken from the loader in this epoch (e.g. ``sum(len(b["label"]) for b in
        batches)``), and the loader (or its ``num_workers`` and ``batch_size``). In batch
        mode the loader's order does not depend on workers and ``samples_seen`` alone is
        enough.
        """
        epoch = self.epoch
        rem = self._remaining(epoch)
        n = self.rank_samples
        consumed = np.zeros(n, bool)
        if self._resume is not None and self._resume[0] == epoch:
            consumed[:] = True
            consumed[rem] = False
        if loader is not None:
            num_workers = loader.num_workers
            batch_size = loader.batch_size
            loader_drop_last = bool(getattr(loader, "drop_last", False))
        else:
            loader_drop_last = False
        if samples_seen is None:
            if self._progress is not None and self._progress[0] == epoch:
                p_rem, count = self._progress[1], self._progress[2]
                consumed[p_rem[:count]] = True
        else:
            seen = int(samples_seen)
            if not 0 <= seen <= rem.size:
                raise FerdataError(f"samples_seen={seen} is outside 0..{rem.size} (samples left in epoch {epoch})")
            workers = max(int(num_workers or 0), 1)
            if self.batch_size is not None or workers == 1:
                consumed[rem[:seen]] = True
            else:
                if batch_size is None:
                    raise FerdataError("state_dict: with num_workers > 0 in per-sample mode pass the loader's "
                                       "batch_size (or loader=)")
                consumed[rem[_order.loader_consumed(rem.size, workers, int(batch_size), seen, loader_drop_last)]] = True
        return {"format": _STATE_FORMAT, "epoch": epoch, "seed": self.seed, "shuffle": self.shuffle,
                "block": self.block, "buffer": self.buffer, "batch_size": self.batch_size,
                "drop_last": self.drop_last, "rank": self.rank, "world_size": self.world_size,
                "num_samples": self._n_selected(), "rank_samples": n,
                "consumed": _order.to_ranges(consumed), "samples_consumed": int(consumed.sum())}

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration of ``state['epoch']`` yields exactly what was not consumed.

        Call it before the DataLoader starts its workers (before the first ``iter(loader)``;
        with ``persistent_workers=True`` make a new loader).
        """
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            fmt = state.get("format") if isinstance(state, dict) else None
            raise FerdataError(f"not a ShardIterableDataset state (format {fmt!r})")
        mine = {"seed": self.seed, "shuffle": self.shuffle, "block": self.block, "buffer": self.buffer,
                "batch_size": self.batch_size, "drop_last": self.drop_last, "world_size": self.world_size,
                "num_samples": self._n_selected()}
        diff = [f"{k}: state {state.get(k)!r} != dataset {v!r}" for k, v in mine.items() if state.get(k) != v]
        if diff:
            raise FerdataError("cannot resume: the state was saved with other settings (" + "; ".join(diff) + ")")
        if state.get("rank") != self.rank:
            raise FerdataError(f"cannot resume: state of rank {state.get('rank')} loaded on rank {self.rank} "
                               "(save one state per rank)")
        self.set_epoch(state["epoch"])
        self._resume = (int(state["epoch"]), [tuple(r) for r in state["consumed"]])
        self._progress = None

    def __repr__(self):
        return (f"ShardIterableDataset({str(self.path)!r}, samples={self._n_selected()}, fields={self.fields}, "
                f"rank={self.rank}/{self.world_size}, batch_size={self.batch_size}, epoch={self.epoch})")
