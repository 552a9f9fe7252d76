"""Data-loading throughput: ferdata.torch datasets vs a naive h5py Dataset vs PNG files.

    python benchmarks/loader.py [--n 8192] [--workers 0 1 2] [--epochs 2]

Renders ``--n`` samples of the built-in sample twice — 128 px JPEG and 64 px raw shards
(render time printed separately) — writes the same images as PNG files, then pulls
full epochs through a real ``torch.utils.data.DataLoader`` (batch 256, shuffled) with 0,
1 and 2 workers for:

* ``iter-batch``: :class:`ShardIterableDataset` in batch mode (``batch_size=256`` on the
  dataset, ``DataLoader(batch_size=None)``) — the recommended training setup;
* ``iter-sample``: :class:`ShardIterableDataset` per-sample + default collate;
* ``map``: :class:`ShardDataset` with a shuffling sampler (reads each sampler batch at once);
* ``naive-h5`` (a): a map-style Dataset doing one h5py read (+ one cv2 decode) per sample;
* ``png`` (b): a map-style Dataset over a folder of PNG files (``cv2.imread``);

and, for the JPEG shards with 0 workers, ``batch gray`` (decoded straight to luma),
``batch 64px`` (``resize=64``: DCT-scaled decode) and the bare ``cv2.imdecode`` rate,
the ceiling for full-size RGB decoding on this CPU; with workers, ``loader floor`` — a
dataset yielding copies of a ready batch — measures what the DataLoader itself spends
moving batches through shared memory.

Reported: samples/s (wall), samples per CPU-second of the main process plus its workers
(= per-core throughput; read from /proc), and the ratio to (b). The first epoch of each
configuration is a warm-up (worker start, page cache) and is not timed. The main
process uses one intra-op thread (as DataLoader workers do), so that "per CPU-second"
is per core and a busy machine does not stall torch's parallel copies.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ferdata.config import RenderConfig  # noqa: E402
from ferdata.render.run import render  # noqa: E402
from ferdata.render.sample import make_sample  # noqa: E402
from ferdata.shards.reader import read_images  # noqa: E402
from ferdata.shards.schema import decode_jpeg  # noqa: E402
from ferdata.torch import ShardDataset, ShardIterableDataset  # noqa: E402

BATCH = 256
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            total += int(parts[11]) + int(parts[12])  # utime + stime
        except OSError:
            pass
    return total / _TICK


class NaiveH5(Dataset):
    """(a) The obvious map-style Dataset: one h5py read per sample (file opened per worker)."""

    def __init__(self, folder):
        self.files = sorted(str(p) for p in Path(folder).glob("shard-*.h5"))
        self.counts = []
        for p in self.files:
            with h5py.File(p, "r") as f:
                self.counts.append(len(f["label"]))
        self.start = np.concatenate(([0], np.cumsum(self.counts)))
        self._open = {}

    def __len__(self):
        return int(self.start[-1])

    def __getitem__(self, i):
        k = int(np.searchsorted(self.start, i, side="right") - 1)
        key = (os.getpid(), k)
        f = self._open.get(key)
        if f is None:
            f = self._open[key] = h5py.File(self.files[k], "r")
        j = i - int(self.start[k])
        if f.attrs["encoding"] == "jpeg":
            a, b = f["image_offsets"][j:j + 2]
            img = decode_jpeg(f["image"][a:b])
        else:
            img = f["image"][j]
        return {"image": torch.from_numpy(img).permute(2, 0, 1), "label": int(f["label"][j])}

    def __getstate__(self):
        return {**self.__dict__, "_open": {}}


class PngFolder(Dataset):
    """(b) A folder of PNG files + a label array (cv2.imread, BGR -> RGB)."""

    def __init__(self, folder, labels):
        self.files = sorted(str(p) for p in Path(folder).glob("*.png"))
        self.labels = labels

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        img = cv2.cvtColor(cv2.imread(self.files[i], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return {"image": torch.from_numpy(img).permute(2, 0, 1), "label": int(self.labels[i])}


class ReadyBatches(torch.utils.data.IterableDataset):
    """No reading at all: copies of one decoded batch (what the DataLoader itself costs
    to move batches from workers to the main process)."""

    def __init__(self, shards, n):
        with h5py.File(sorted(Path(shards).glob("shard-*.h5"))[0], "r") as f:
            self.images = read_images(f, 0, BATCH)
        self.n = n

    def set_epoch(self, epoch):
        pass

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        k, w = (info.num_workers, info.id) if info else (1, 0)
        for j in range(w, self.n // BATCH, k):
            yield {"image": torch.from_numpy(self.images.copy()).permute(0, 3, 1, 2),
                   "label": torch.zeros(BATCH, dtype=torch.int64)}


def write_pngs(shards, out):
    out.mkdir(parents=True, exist_ok=True)
    labels = []
    i = 0
    for p in sorted(Path(shards).glob("shard-*.h5")):
        with h5py.File(p, "r") as f:
            imgs = read_images(f, 0, len(f["label"]))
            labels.append(f["label"][:])
        for img in imgs:
            cv2.imwrite(str(out / f"{i:07d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            i += 1
    return np.concatenate(labels)


def measure(make_loader, set_epoch, epochs, n_expected):
    """(samples/s wall, samples per CPU-second) over ``epochs`` timed epochs after a warm-up one."""
    loader = make_loader()
    total_n = total_t = total_cpu = 0.0
    for e in range(epochs + 1):
        set_epoch(e)
        it = iter(loader)
        pids = [os.getpid()] + [w.pid for w in getattr(it, "_workers", [])]
        c0, t0 = cpu_seconds(pids), time.perf_counter()
        n = 0
        for batch in it:
            n += len(batch["label"])
        dt = time.perf_counter() - t0
        cpu = cpu_seconds(pids) - c0
        assert n == n_expected, (n, n_expected)
        if e:
            total_n += n
            total_t += dt
            total_cpu += cpu
    del it, loader
    return total_n / total_t, (total_n / total_cpu if total_cpu > 0 else float("nan"))


def decoder_ceiling(shards):
    """Bare cv2.imdecode of every JPEG of the first shard (samples/s, one core)."""
    with h5py.File(sorted(Path(shards).glob("shard-*.h5"))[0], "r") as f:
        off = f["image_offsets"][:]
        blob = f["image"][:]
    bufs = [blob[a:b] for a, b in zip(off[:-1], off[1:])]
    t = time.perf_counter()
    for b in bufs:
        cv2.imdecode(b, cv2.IMREAD_COLOR_RGB)
    return len(bufs) / (time.perf_counter() - t)


def bench(name, shards, pngs, labels, workers, epochs, n, extra=None):
    rows = []
    cfgs = {
        "iter-batch": lambda: (ShardIterableDataset(shards, fields=("image", "label"), batch_size=BATCH), None),
        "iter-sample": lambda: (ShardIterableDataset(shards, fields=("image", "label")), BATCH),
        "map": lambda: (ShardDataset(shards, fields=("image", "label")), BATCH),
        "naive-h5 (a)": lambda: (NaiveH5(shards), BATCH),
        "png (b)": lambda: (PngFolder(pngs, labels), BATCH),
    }
    for label, mk in (extra or {}).items():
        cfgs[label] = mk
    cfgs["loader floor"] = lambda: (ReadyBatches(shards, n), None)
    for label, mk in cfgs.items():
        if label == "loader floor":
            ws = [w for w in workers if w > 0]
        elif label in ("iter-batch", "iter-sample", "map", "naive-h5 (a)", "png (b)"):
            ws = workers
        else:
            ws = [0]
        for w in ws:
            ds, bs = mk()
            shuffle = bs is not None and not isinstance(ds, ShardIterableDataset)

            def make_loader(ds=ds, bs=bs, w=w, shuffle=shuffle):
                return DataLoader(ds, batch_size=bs, shuffle=shuffle, num_workers=w,
                                  persistent_workers=w > 0, prefetch_factor=4 if w else None)

            set_epoch = ds.set_epoch if hasattr(ds, "set_epoch") else (lambda e: None)
            rate, per_cpu = measure(make_loader, set_epoch, epochs, n)
            rows.append((label, w, rate, per_cpu))
            print(f"  {name:<12} {label:<13} workers={w}: {rate:9.0f} samples/s  {per_cpu:9.0f} /CPU-s", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=8192, help="samples per render")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=4, help="timed epochs per configuration")
    ap.add_argument("--shard-size", type=int, default=4096)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, cv2 {cv2.__version__}, batch {BATCH}, n={args.n}")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        make_sample(d / "sample")
        summary = {}
        for size, enc in ((128, "jpeg"), (64, "raw")):
            out = d / f"r{size}"
            cfg = RenderConfig(size=size, per_face=-(-args.n // 2), shard_size=args.shard_size, encoding=enc)
            t = time.perf_counter()
            r = render(d / "sample" / "faces.h5", d / "sample" / "backgrounds", out, cfg,
                       workers=min(2, os.cpu_count()))
            dt = time.perf_counter() - t
            nbytes = sum(p.stat().st_size for p in out.glob("shard-*.h5"))
            print(f"render {size} px {enc}: {r['samples']} samples in {dt:.1f} s ({r['samples'] / dt:.0f}/s), "
                  f"{nbytes / r['samples'] / 1024:.1f} KiB/sample")
            t = time.perf_counter()
            labels = write_pngs(out, d / f"png{size}")
            print(f"  wrote {len(labels)} PNGs in {time.perf_counter() - t:.1f} s")
            name = f"{size}px {enc}"
            extra = None
            if enc == "jpeg":
                print(f"  bare cv2.imdecode (RGB, one core): {decoder_ceiling(out):.0f} samples/s")
                extra = {
                    "batch gray": lambda out=out: (ShardIterableDataset(out, fields=("image", "label"),
                                                                        batch_size=BATCH, gray=True), None),
                    "batch 64px": lambda out=out: (ShardIterableDataset(out, fields=("image", "label"),
                                                                        batch_size=BATCH, resize=64), None),
                }
            summary[name] = bench(name, out, d / f"png{size}", labels, args.workers, args.epochs, r["samples"],
                                  extra)
        print("\nsummary: samples/s (wall) | samples per CPU-second | x vs png (b), same workers")
        for name, rows in summary.items():
            ref = {w: (rate, cpu) for lab, w, rate, cpu in rows if lab.startswith("png")}
            print(f"{name}")
            for lab, w, rate, cpu in rows:
                rr, rc = ref.get(w, (float("nan"), float("nan")))
                print(f"  {lab:<13} w={w}: {rate:8.0f}/s {cpu:8.0f}/CPU-s   "
                      f"{rate / rr:5.2f}x wall {cpu / rc:5.2f}x CPU")
        print("targets (docs/torch.md): >= 10k samples/s per core at 128 px JPEG, >= 40k/s per core at <= 64 px raw")


if __name__ == "__main__":
    main()
