"""Threaded decoding in the loader vs the simplejpeg decode floor, with an A/B against older code.

    python benchmarks/loader_threads.py [--n 8192] [--pairs 3] [--before DIR]

Reference, measured in the same process as each loader figure: the simplejpeg decode
floor — every JPEG of the render decoded into a preallocated array with nothing else,
on 1 thread and on all cores (a thread pool: simplejpeg releases the GIL). The array is
fresh (its first-touch page faults are in the floor, as when issue 13 measured it), so a
loader whose batch memory is reused by the allocator can pass 1.0x; the "hot" floor
decodes into one reused batch buffer (the decoder alone) and is shown beside it. Reported
(median of ``--pairs`` runs):

- ``ShardIterableDataset`` batch mode (batch 256), ``num_workers=0``, automatic decode
  threads: samples/s (wall) ÷ the all-cores floor, and samples per CPU-second ÷ the
  1-thread floor ("threads instead of processes");
- ``num_workers=0`` with ``decode_threads=1``, ÷ the 1-thread floor (wall);
- 2 DataLoader workers (one decode thread each, persistent, after one untimed epoch):
  samples per CPU-second (main process + workers, from /proc) ÷ the 1-thread floor —
  what moving batches between processes costs.

``--before DIR``: A/B against the code in ``DIR`` (a checkout, e.g. ``git worktree add
/tmp/loader-before <commit>``): each pair runs the measurement once in a child process
importing ``ferdata`` from ``DIR`` and once from this checkout, alternating which goes
first, on the same render; the table shows before -> after of every ratio. On a busy
machine the figures move by 10-20 %: compare ratios, not rates.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np

BATCH = 256
HERE = Path(__file__).resolve()
RATIOS = (("w0_wall", "floorN", "w=0, automatic threads, wall ÷ all-cores floor"),
          ("w0_cpu", "floor1", "w=0, automatic threads, per CPU-second ÷ 1-thread floor"),
          ("w0t1_wall", "floor1", "w=0, 1 decode thread, wall ÷ 1-thread floor"),
          ("w2_cpu", "floor1", "w=2 workers, per CPU-second ÷ 1-thread floor"))


def floor(bufs, size, threads, hot=False):
    """Decode rate of ``bufs`` into a fresh array of them all, or (``hot``) into one batch
    buffer per thread already in memory, reused (no page faults: the decoder alone)."""
    import simplejpeg

    if hot:
        out = np.zeros((threads, BATCH, size, size, 3), np.uint8)
    else:
        out = np.empty((len(bufs), size, size, 3), np.uint8)

    def work(t, lo, hi):
        for i in range(lo, hi):
            dst = out[t, i % BATCH] if hot else out[i]
            simplejpeg.decode_jpeg(bufs[i], colorspace="RGB", buffer=dst)
    cuts = np.linspace(0, len(bufs), threads + 1).astype(int)
    t0 = time.perf_counter()
    if threads == 1:
        work(0, 0, len(bufs))
    else:
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(work, range(threads), cuts[:-1], cuts[1:]))
    return len(bufs) / (time.perf_counter() - t0)


def loader_rate(shards, workers, threads, epoch):
    """(samples/s wall, samples per CPU-second of this process and its workers) of one epoch.

    With workers the loader is persistent and one epoch runs first untimed: the figure is
    the steady state of a training run, not the workers' start-up.
    """
    from torch.utils.data import DataLoader

    from ferdata.torch import ShardIterableDataset
    from loader import cpu_seconds  # the same /proc reading as benchmarks/loader.py

    ds = ShardIterableDataset(shards, fields=("image", "label"), batch_size=BATCH, seed=epoch)
    ds.decode_threads = threads
    dl = DataLoader(ds, batch_size=None, num_workers=workers, persistent_workers=workers > 0)
    if workers:
        ds.set_epoch(1)
        for _ in dl:
            pass
        ds.set_epoch(0)
    it = iter(dl)
    pids = [os.getpid()] + [w.pid for w in getattr(it, "_workers", [])]
    c0, t0, n = cpu_seconds(pids), time.perf_counter(), 0
    for b in it:
        n += len(b["label"])
    dt, cpu = time.perf_counter() - t0, cpu_seconds(pids) - c0
    return n / dt, n / max(cpu, 1e-9)


def read_bufs(out: Path) -> list:
    bufs = []
    for p in sorted(out.glob("shard-*.h5")):
        with h5py.File(p, "r") as f:
            off, blob = f["image_offsets"][:], f["image"][:]
        bufs += [blob[a:b] for a, b in zip(off[:-1], off[1:])]
    return bufs


def measure(out: Path, epoch: int) -> dict:
    """One run of every figure (floors and loader) in this process."""
    import ferdata

    cores = os.cpu_count() or 1
    bufs = read_bufs(out)
    loader_rate(out, 0, None, 99)   # warm-up (page cache, imports)
    r = {"floor1": floor(bufs, 128, 1), "floorN": floor(bufs, 128, cores),
         "hot1": floor(bufs, 128, 1, hot=True), "hotN": floor(bufs, 128, cores, hot=True)}
    r["w0_wall"], r["w0_cpu"] = loader_rate(out, 0, None, epoch)
    r["w0t1_wall"] = loader_rate(out, 0, 1, epoch)[0]
    r["w2_cpu"] = loader_rate(out, 2, None, epoch)[1]
    for key, fl, _ in RATIOS:
        r[f"{key}/{fl}"] = r[key] / r[fl]
        r[f"{key}/hot"] = r[key] / r["hot" + fl[-1]]
    r["ferdata"] = str(Path(ferdata.__file__).parent)
    return r


def child(code_dir, out: Path, epoch: int) -> dict:
    env = dict(os.environ)
    if code_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code_dir)] + [p for p in [env.get("PYTHONPATH")] if p])
    res = subprocess.run([sys.executable, str(HERE), "--child", str(out), "--epoch", str(epoch)], env=env,
                         check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def report(title: str, runs: list) -> dict:
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "ferdata"}
    print(f"{title} (ferdata from {runs[0]['ferdata']}), median of {len(runs)}:")
    print(f"  decode floor: {med['floor1']:.0f}/s on 1 thread, {med['floorN']:.0f}/s on all cores; hot: "
          f"{med['hot1']:.0f}/s and {med['hotN']:.0f}/s")
    print(f"  loader w=0 automatic threads {med['w0_wall']:.0f}/s, 1 thread {med['w0t1_wall']:.0f}/s; "
          f"per CPU-second: w=0 {med['w0_cpu']:.0f}, w=2 {med['w2_cpu']:.0f}")
    for key, fl, label in RATIOS:
        print(f"  {label:58s}: {med[f'{key}/{fl}']:.2f}x  (hot floor {med[f'{key}/hot']:.2f}x)")
    return med


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--before", type=Path, help="a checkout of the code to compare against")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--epoch", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(1, str(HERE.parent))
    import torch

    torch.set_num_threads(1)
    if args.child is not None:
        print(json.dumps(measure(args.child, args.epoch)))
        return
    from ferdata.config import RenderConfig
    from ferdata.render.run import render
    from ferdata.render.sample import make_sample

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        make_sample(d / "s")
        out = d / "r"
        render(d / "s" / "faces.h5", d / "s" / "backgrounds", out,
               RenderConfig(size=128, per_face=args.n // 2, shard_size=4096, encoding="jpeg"), workers=1)
        print(f"{len(read_bufs(out))} JPEGs of 128 px, {cores} cores, batch {BATCH}")
        before, after = [], []
        for e in range(args.pairs):
            if args.before is None:
                after.append(child(None, out, e))
                continue
            order = [(args.before, before), (None, after)]
            for code, runs in (order if e % 2 == 0 else order[::-1]):
                runs.append(child(code, out, e))
        a = report("after" if before else "this checkout", after)
        if before:
            b = report("before", before)
            print("before -> after (ratios to the floor measured in the same process):")
            for key, fl, label in RATIOS:
                print(f"  {label:58s}: {b[f'{key}/{fl}']:.2f}x -> {a[f'{key}/{fl}']:.2f}x  "
                      f"(hot floor {b[f'{key}/hot']:.2f}x -> {a[f'{key}/hot']:.2f}x)")


if __name__ == "__main__":
    main()
