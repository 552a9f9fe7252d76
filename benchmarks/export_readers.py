"""Reading one render four ways: ferdata's own loader vs the formats ``ferdata export`` writes.

    python benchmarks/export_readers.py [--render FOLDER | --per-face 1500] [--repeats 3]

Renders the built-in sample (``--per-face`` renders of each of its 2 faces, 128 px JPEG,
shards of 1024) unless ``--render`` names a render folder, exports it with
``ferdata.shards.export.export_shards`` to WebDataset, an image folder and Parquet (export
rates printed), then reads every sample, decoding its image to a uint8 array and taking
its label, with:

* ``ferdata batch``: ``ShardIterableDataset(..., batch_size=256, shuffle=False)``, 1 decode thread;
* ``ferdata sample``: the same per sample (``batch_size=None``);
* ``webdataset``: ``WebDataset(tars).decode("rgb8", only=["jpg", "cls"]).to_tuple("jpg", "cls")`` (PIL);
* ``HF parquet``: ``datasets.load_dataset("parquet", ...)`` rows, ``np.asarray(row["image"])``
  (PIL); the one-off Arrow conversion of ``load_dataset`` is timed apart (``HF load``);
* ``imagefolder walk``: ``os.walk`` + ``cv2.imread`` + BGR→RGB, the label from the folder name.

Everything runs in this process on one thread (``torch.set_num_threads(1)``, one decode
thread), after one untimed warm-up pass of each reader (page cache); each reader is then
timed ``--repeats`` times, interleaved, and the median samples/s is reported with its
ratio to ``ferdata batch`` measured in the same run.
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ferdata.config import RenderConfig  # noqa: E402
from ferdata.labels import CLASSES  # noqa: E402
from ferdata.render.run import render  # noqa: E402
from ferdata.render.sample import make_sample  # noqa: E402
from ferdata.shards.export import export_shards  # noqa: E402


def ferdata_reader(folder, batch):
    import torch

    from ferdata.torch import ShardIterableDataset

    torch.set_num_threads(1)

    def run():
        ds = ShardIterableDataset(folder, fields=("image", "label"), shuffle=False,
                                  batch_size=256 if batch else None)
        ds.decode_threads = 1
        n = 0
        for s in ds:
            n += len(s["label"]) if batch else 1
        return n
    return run


def webdataset_reader(out):
    import webdataset as wds

    urls = sorted(glob.glob(str(out / "*.tar")))

    def run():
        n = 0
        ds = wds.WebDataset(urls, shardshuffle=False).decode("rgb8", only=["jpg", "cls"]).to_tuple("jpg", "cls")
        for img, cls in ds:
            assert img.dtype == np.uint8 and isinstance(cls, int)
            n += 1
        return n
    return run


def parquet_reader(out, cache):
    import datasets

    files = sorted(glob.glob(str(out / "*.parquet")))
    t = time.perf_counter()
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(cache))
    ds = ds.select_columns(["image", "label"])
    print(f"  HF load (parquet -> Arrow cache, once): {time.perf_counter() - t:.2f} s")

    def run():
        n = 0
        for row in ds:
            img = np.asarray(row["image"])
            assert img.dtype == np.uint8 and row["label"] >= 0
            n += 1
        return n
    return run


def imagefolder_reader(out):
    labels = {c: i for i, c in enumerate(CLASSES)}

    def run():
        n = 0
        for folder, dirs, files in os.walk(out):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "masks")
            label = labels.get(Path(folder).name)
            if label is None:
                continue
            for f in sorted(files):
                img = cv2.cvtColor(cv2.imread(os.path.join(folder, f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                assert img.dtype == np.uint8
                n += 1
        return n
    return run


def make_render(tmp: Path, per_face: int) -> Path:
    sample = tmp / "sample"
    make_sample(sample)
    t = time.perf_counter()
    res = render(sample / "faces.h5", sample / "backgrounds", tmp / "render",
                 RenderConfig(per_face=per_face, shard_size=1024), workers=1)
    print(f"render: {res['samples']} samples in {time.perf_counter() - t:.1f} s")
    return tmp / "render"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--render", type=Path, default=None, help="An existing render folder.")
    ap.add_argument("--per-face", type=int, default=1500)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ.setdefault("HF_HOME", str(tmp / "hf"))
        src = a.render or make_render(tmp, a.per_face)
        for to in ("webdataset", "imagefolder", "parquet"):
            res = export_shards(src, tmp / to, to)
            print(f"export --to {to}: {res['samples']} samples at {res['samples_per_s']}/s")
        readers = {"ferdata batch": ferdata_reader(src, True), "ferdata sample": ferdata_reader(src, False),
                   "webdataset": webdataset_reader(tmp / "webdataset"),
                   "HF parquet": parquet_reader(tmp / "parquet", tmp / "hf_cache"),
                   "imagefolder walk": imagefolder_reader(tmp / "imagefolder")}
        rates = {k: [] for k in readers}
        counts = {k: r() for k, r in readers.items()}  # warm-up (page cache, imports)
        assert len(set(counts.values())) == 1, counts
        for _ in range(a.repeats):
            for k, r in readers.items():
                t = time.perf_counter()
                n = r()
                rates[k].append(n / (time.perf_counter() - t))
    ref = statistics.median(rates["ferdata batch"])
    print(f"\n{counts['ferdata batch']} samples, median of {a.repeats}, 1 thread\n")
    print("| reader | samples/s | ÷ ferdata batch |\n|---|---|---|")
    for k, v in rates.items():
        med = statistics.median(v)
        print(f"| {k} | {med:,.0f} | {med / ref:.2f}× |")


if __name__ == "__main__":
    main()
