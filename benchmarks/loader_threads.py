"""Threaded decoding in the loader: before (1 decode thread) vs after (all cores), A/B.

    python benchmarks/loader_threads.py [--n 8192] [--pairs 3]

Reference, measured in the same run: the simplejpeg decode floor — every JPEG of the
render decoded into a preallocated batch with nothing else, on 1 thread and on all
cores (a thread pool: simplejpeg releases the GIL). Reported, alternating A/B and
taking the median of ``--pairs`` pairs:
- ``ShardIterableDataset`` batch mode, ``num_workers=0``: decode_threads=1 (before) and
  automatic (after), as samples/s (wall) and ÷ the all-cores floor;
- with 2 DataLoader workers (one decode thread each): samples per CPU-second ÷ the
  1-thread floor (what moving batches between processes costs).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import simplejpeg
import torch
from torch.utils.data import DataLoader

from ferdata.config import RenderConfig
from ferdata.render.run import render
from ferdata.sample import make_sample
from ferdata.torch import ShardIterableDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loader import cpu_seconds  # noqa: E402  (the same /proc reading as benchmarks/loader.py)

BATCH = 256
def floor(bufs, size, threads):
    out = np.empty((len(bufs), size, size, 3), np.uint8)

    def work(lo, hi):
        for i in range(lo, hi):
            simplejpeg.decode_jpeg(bufs[i], colorspace="RGB", buffer=out[i])
    t = time.perf_counter()
    if threads == 1:
        work(0, len(bufs))
    else:
        cuts = np.linspace(0, len(bufs), threads + 1).astype(int)
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(work, cuts[:-1], cuts[1:]))
    return len(bufs) / (time.perf_counter() - t)


def loader_rate(shards, workers, threads, epoch):
    ds = ShardIterableDataset(shards, fields=("image", "label"), batch_size=BATCH, seed=epoch)
    ds.decode_threads = threads
    dl = DataLoader(ds, batch_size=None, num_workers=workers, persistent_workers=workers > 0)
    it = iter(dl)
    pids = [os.getpid()] + [w.pid for w in getattr(it, "_workers", [])]
    c0, t0, n = cpu_seconds(pids), time.perf_counter(), 0
    for b in it:
        n += len(b["label"])
    dt, cpu = time.perf_counter() - t0, cpu_seconds(pids) - c0
    return n / dt, n / max(cpu, 1e-9)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--pairs", type=int, default=3)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        make_sample(d / "s")
        out = d / "r"
        render(d / "s" / "faces.h5", d / "s" / "backgrounds", out,
               RenderConfig(size=128, per_face=args.n // 2, shard_size=4096, encoding="jpeg"), workers=min(2, cores))
        bufs = []
        for p in sorted(out.glob("shard-*.h5")):
            with h5py.File(p, "r") as f:
                off, blob = f["image_offsets"][:], f["image"][:]
            bufs += [blob[a:b] for a, b in zip(off[:-1], off[1:])]
        loader_rate(out, 0, None, 99)   # warm-up (page cache, imports)
        res = {k: [] for k in ("floor1", "floorN", "before", "after", "w2_cpu")}
        for e in range(args.pairs):
            res["floor1"].append(floor(bufs, 128, 1))
            res["floorN"].append(floor(bufs, 128, cores))
            res["before"].append(loader_rate(out, 0, 1, e)[0])
            res["after"].append(loader_rate(out, 0, None, e)[0])
            res["w2_cpu"].append(loader_rate(out, 2, None, e)[1])
        med = {k: statistics.median(v) for k, v in res.items()}
        print(f"{len(bufs)} JPEGs of 128 px, {cores} cores, batch {BATCH}, median of {args.pairs} A/B pairs")
        print(f"  decode floor, 1 thread        : {med['floor1']:8.0f} samples/s")
        print(f"  decode floor, {cores} threads       : {med['floorN']:8.0f} samples/s")
        print(f"  loader w=0, 1 decode thread   : {med['before']:8.0f} samples/s = "
              f"{med['before'] / med['floorN']:.2f}x the {cores}-thread floor (before)")
        print(f"  loader w=0, automatic threads : {med['after']:8.0f} samples/s = "
              f"{med['after'] / med['floorN']:.2f}x the {cores}-thread floor (after; "
              f"{med['after'] / med['before']:.2f}x before)")
        print(f"  loader w=2 per CPU-second     : {med['w2_cpu']:8.0f} = {med['w2_cpu'] / med['floor1']:.2f}x "
              "the 1-thread floor")


if __name__ == "__main__":
    main()
