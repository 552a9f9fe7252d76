"""The DataLoader on CPU against the one-thread decode floor, before -> after (issue 23.5).

    ferdata render -o /tmp/loader_bench --per-face 300          # in an empty folder
    git worktree add /tmp/loader-before <commit>                 # the code to compare against
    python benchmarks/loader_cpu.py --shards /tmp/loader_bench --pairs 5 --before /tmp/loader-before

Each measurement runs in a fresh child process that imports ``ferdata`` from this checkout
or from ``--before``; the pairs alternate which goes first, on the same shards, and the
report is the median of the pairs. In each child, on the same shards:

- ``floor1``: the one-thread decode floor — every JPEG of the shards decoded with
  simplejpeg into a fresh array, nothing else (as ``benchmarks/loader_threads.py``);
- ``threads``: ``ShardIterableDataset`` batch mode (batch 256, shuffled, fields image +
  label), ``DataLoader(ds, batch_size=None, num_workers=0)``: automatic decode threads;
- ``w2``: the same with 2 persistent workers (one untimed epoch first: the steady state);
- ``w2_fs``: ``w2`` under ``torch.multiprocessing.set_sharing_strategy("file_system")``;
- ``w2_pf4``: ``w2`` with ``prefetch_factor=4``;
- ``default``: the loader ``ferdata train`` makes on CPU when ``num_workers`` is automatic
  (``ferdata.train.data.train_loader_workers(None, cpu)`` where the code has it: no
  workers; else the old fixed default of 2 workers) — what the issue asks to make fast.

Every loader runs ``--epochs`` epochs (``set_epoch`` each); reported: samples/s (wall)
÷ ``floor1`` (wall), and samples per CPU-second (this process and its workers, from
/proc) ÷ ``floor1`` per CPU-second of its thread — both measured in the same child (on a
busy machine the wall floor is slowed by other work, the CPU-second one much less). Each child also hashes the bytes of every batch (image and
label, epochs 0 and 1): the digests must agree between configurations and between
before and after (the same samples, the same order, the same bytes), and the script
says so. On a busy machine rates move by 10-30 %: compare the ratios.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

BATCH = 256
HERE = Path(__file__).resolve()
LOADERS = ("threads", "w2", "w2_fs", "w2_pf4", "default")


def _bufs(shards: Path) -> list:
    bufs = []
    for p in sorted(shards.glob("shard-*.h5")):
        with h5py.File(p, "r") as f:
            off, blob = f["image_offsets"][:], f["image"][:]
        bufs += [blob[a:b] for a, b in zip(off[:-1], off[1:])]
    return bufs


def floor1(bufs, size: int, reps: int):
    """One-thread simplejpeg decode into a fresh array, ``reps`` passes: (samples/s wall,
    samples per CPU-second of the decoding thread)."""
    import simplejpeg

    n, t, c = 0, 0.0, 0.0
    for _ in range(reps):
        out = np.empty((len(bufs), size, size, 3), np.uint8)
        t0, c0 = time.perf_counter(), time.thread_time()
        for i, b in enumerate(bufs):
            simplejpeg.decode_jpeg(b, colorspace="RGB", buffer=out[i])
        t += time.perf_counter() - t0
        c += time.thread_time() - c0
        n += len(bufs)
    return n / t, n / max(c, 1e-9)


def _default_workers() -> int:
    """``ferdata train``'s automatic loader workers on CPU in the code being measured:
    ``train_loader_workers(None, cpu)`` where it exists, else the old fixed default, 2."""
    import torch

    from ferdata.train import data

    pick = getattr(data, "train_loader_workers", None)
    return 2 if pick is None else pick(None, torch.device("cpu"))


def loader(shards: Path, name: str, epochs: int):
    """(samples/s, samples per CPU-s, digest) of ``epochs`` epochs through loader ``name``."""
    import torch
    from torch.utils.data import DataLoader

    from ferdata.torch import ShardIterableDataset
    from loader import cpu_seconds  # the /proc reading of benchmarks/loader.py

    workers = {"threads": 0, "default": _default_workers()}.get(name, 2)
    torch.multiprocessing.set_sharing_strategy("file_system" if name == "w2_fs" else "file_descriptor")
    ds = ShardIterableDataset(shards, fields=("image", "label"), batch_size=BATCH, seed=0)
    kw = {"prefetch_factor": 4} if name == "w2_pf4" else {}
    dl = DataLoader(ds, batch_size=None, num_workers=workers, persistent_workers=workers > 0, **kw)
    if workers:
        ds.set_epoch(epochs + 1)
        for _ in dl:   # start the workers, untimed
            pass
    h = hashlib.sha256()
    n = 0
    cpu = wall = 0.0
    for e in range(epochs):
        ds.set_epoch(e)
        it = iter(dl)
        pids = [os.getpid()] + [w.pid for w in getattr(it, "_workers", [])]
        c0, t0 = cpu_seconds(pids), time.perf_counter()
        for b in it:
            n += len(b["label"])
            if e < 2:
                h.update(b["image"].contiguous().numpy().tobytes())
                h.update(b["label"].numpy().tobytes())
        wall += time.perf_counter() - t0
        cpu += cpu_seconds(pids) - c0
        del it
    del dl
    return n / wall, n / max(cpu, 1e-9), h.hexdigest()[:16], workers


def measure(shards: Path, epochs: int) -> dict:
    import torch

    import ferdata

    torch.set_num_threads(1)
    bufs = _bufs(shards)
    size = _image_size(shards)
    loader(shards, "threads", 1)   # warm-up: page cache, imports, thread pool
    r = {"ferdata": str(Path(ferdata.__file__).parent), "n": len(bufs)}
    r["floor1"], r["floor1_cpu"] = floor1(bufs, size, epochs)
    for name in LOADERS:
        r[name], r[name + "_cpu"], r[name + "_digest"], r[name + "_workers"] = loader(shards, name, epochs)
    return r


def _image_size(shards: Path) -> int:
    m = json.loads((shards / "manifest.json").read_text())
    return int(m["config"]["size"])


def child(code_dir, shards: Path, epochs: int) -> dict:
    env = dict(os.environ)
    if code_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code_dir)] + [p for p in [env.get("PYTHONPATH")] if p])
    res = subprocess.run([sys.executable, str(HERE), "--child", str(shards), "--epochs", str(epochs)], env=env,
                         check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def summary(runs: list) -> dict:
    med = {"ferdata": runs[0]["ferdata"], "floor1": statistics.median(r["floor1"] for r in runs),
           "floor1_cpu": statistics.median(r["floor1_cpu"] for r in runs)}
    for name in LOADERS:
        med[name + "_wall"] = statistics.median(r[name] / r["floor1"] for r in runs)
        med[name + "_cpu"] = statistics.median(r[name + "_cpu"] / r["floor1_cpu"] for r in runs)
        med[name + "_rate"] = statistics.median(r[name] for r in runs)
        med[name + "_workers"] = runs[0][name + "_workers"]
    med["digests"] = sorted({r[k] for r in runs for k in r if k.endswith("_digest")})
    return med


def print_table(title: str, med: dict) -> None:
    print(f"{title}: ferdata from {med['ferdata']}; floor1 {med['floor1']:.0f}/s wall, "
          f"{med['floor1_cpu']:.0f} per CPU-s (median)")
    for name in LOADERS:
        print(f"  {name:8s} (num_workers={med[name + '_workers']}): {med[name + '_rate']:7.0f}/s  "
              f"wall {med[name + '_wall']:.2f}x  per CPU-s {med[name + '_cpu']:.2f}x  floor1")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", type=Path, default=Path("/tmp/loader_bench"))
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=8, help="timed epochs per loader (and floor passes)")
    ap.add_argument("--before", type=Path, help="a checkout of the code to compare against")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(1, str(HERE.parent))
    if args.child is not None:
        print(json.dumps(measure(args.child, args.epochs)))
        return
    print(f"{args.shards}: {len(_bufs(args.shards))} JPEGs, {os.cpu_count()} cores, batch {BATCH}, "
          f"{args.epochs} epochs per loader, {args.pairs} pairs")
    before, after = [], []
    for p in range(args.pairs):
        order = [(args.before, before), (None, after)] if args.before else [(None, after)]
        for code, runs in (order if p % 2 == 0 else order[::-1]):
            runs.append(child(code, args.shards, args.epochs))
            print(f"  pair {p}: {runs[-1]['ferdata']}: threads {runs[-1]['threads'] / runs[-1]['floor1']:.2f}x, "
                  f"w2 {runs[-1]['w2'] / runs[-1]['floor1']:.2f}x floor1 (wall)", flush=True)
    a = summary(after)
    print_table("after" if before else "this checkout", a)
    digests = set(a["digests"])
    if before:
        b = summary(before)
        print_table("before", b)
        digests |= set(b["digests"])
        print("before -> after, ratio to floor1 measured in the same process (median of pairs):")
        for name in LOADERS:
            print(f"  {name:8s}: wall {b[name + '_wall']:.2f}x -> {a[name + '_wall']:.2f}x   "
                  f"per CPU-s {b[name + '_cpu']:.2f}x -> {a[name + '_cpu']:.2f}x")
    print(f"batch digests (image + label bytes, epochs 0-1): {len(digests)} distinct "
          f"{'(identical outputs)' if len(digests) == 1 else sorted(digests)}")


if __name__ == "__main__":
    main()
