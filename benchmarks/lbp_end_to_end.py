"""``ferdata lbp`` end to end against the floor of decode + kernel (issue 23.1, docs/lbp.md).

    python benchmarks/lbp_end_to_end.py [--folder SHARDS] [--workers 2] [--pairs 3] [--before /tmp/before]

``--folder``: a render (default: the README's job, ``ferdata render --workers 2`` on the
built-in sample, made in a temporary folder). For each run the folder is copied (not
timed, and synced to disk before the command starts) and ``ferdata lbp COPY --variant circle -P 8 -R 1 --workers W`` runs as a fresh
command, kernels already compiled and cached (a warm-up run on a one-shard copy first).

The floor, measured in the same run in one process on the same number of cores: read
the same JPEG bytes, decode them on W threads, convert to gray and compute the same
codes with the kernels on W threads — nothing else (no copy, no hash, no lock, no
write). Printed: seconds of each, and floor / command (1.0 = the command costs no more
than decode + kernel; the target is >= 0.8). With ``--before DIR`` (``git worktree add
/tmp/before <rev>``) the old tree's command runs too, alternated with this one, and the
codes written by both are compared (the same bytes, dataset by dataset).
"""
import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np

from _arms import arm_env, arm_package



def command(tree, folder: Path, args) -> float:
    env, root = arm_env(tree)
    cmd = [sys.executable, "-m", "ferdata", "lbp", str(folder), "--variant", args.variant, "-P", str(args.P),
           "-R", str(args.R), "--workers", str(args.workers)]
    t = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=root, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def floor(folder: Path, args) -> float:
    """Decode (W threads) + gray + kernel (W numba threads) of every shard, in this process."""
    import numba

    from ferdata.features.lbp import lbp
    from ferdata.features.lbp_h5 import to_gray
    from ferdata.shards.schema import decode_jpeg

    numba.set_num_threads(args.workers)
    pool = ThreadPoolExecutor(args.workers)
    shards = sorted(folder.glob("shard-*.h5"))
    t = time.perf_counter()
    for p in shards:
        with h5py.File(p, "r") as f:
            off = f["image_offsets"][:]
            blob = f["image"][:]
            ch = int(f.attrs.get("channels", 3))
        for a in range(0, len(off) - 1, 1024):
            b = min(len(off) - 1, a + 1024)
            imgs = list(pool.map(lambda i: decode_jpeg(blob[off[i]:off[i + 1]], ch), range(a, b)))
            lbp(to_gray(np.stack(imgs)), args.variant, args.P, args.R)
    return time.perf_counter() - t


def floor_process(folder: Path, args) -> float:
    """:func:`floor` as a fresh command: interpreter start, imports and loading the cached
    kernels included, as the command pays them (the wall time of the whole process)."""
    code = ("import sys, argparse; sys.path.insert(0, %r); import lbp_end_to_end as b; "
            "from pathlib import Path; a = argparse.Namespace(workers=%d, variant=%r, P=%d, R=%r); "
            "b.floor(Path(%r), a)") % (str(Path(__file__).parent), args.workers, args.variant, args.P, args.R,
                                       str(folder))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t


def code_hashes(folder: Path) -> dict:
    out = {}
    for p in sorted(folder.glob("shard-*.h5")):
        with h5py.File(p, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    out[(p.name, name)] = hashlib.sha256(obj[...].tobytes()).hexdigest()
            f.visititems(visit)
    return out


def readme_render(tmp: Path) -> Path:
    subprocess.run([sys.executable, "-m", "ferdata", "render", "--workers", "2"], cwd=tmp, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return tmp / "ferdata-out"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--variant", default="circle")
    ap.add_argument("-P", type=int, default=8)
    ap.add_argument("-R", type=float, default=1.0)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--before", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ferdata-lbp-e2e-"))
    try:
        src = Path(args.folder) if args.folder else readme_render(tmp)
        n = 0
        for p in src.glob("shard-*.h5"):
            with h5py.File(p, "r") as f:
                n += len(f["image_offsets"]) - 1
        arms = {"after": None} if not args.before else {"before": args.before, "after": None}
        for name, tree in arms.items():   # compile / load the kernels of each tree, not timed
            warm = tmp / f"warm-{name}"
            shutil.copytree(src, warm)
            command(tree, warm, args)
            shutil.rmtree(warm)
        floor(src, args)                  # page cache and kernels warm for the floor too
        times = {a: [] for a in arms}
        floors, pfloors = [], []
        hashes = {}
        for name, tree in arms.items():
            print(f"  {name}: ferdata from {arm_package(tree)}")
        print(f"ferdata lbp {src} --variant {args.variant} -P {args.P} -R {args.R} --workers {args.workers}: "
              f"{n} samples, cores={os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
        for i in range(args.pairs):
            floors.append(floor(src, args))
            pfloors.append(floor_process(src, args))
            for a in (arms if i % 2 == 0 else reversed(list(arms))):
                copy = tmp / f"{a}-{i}"
                shutil.copytree(src, copy)
                os.sync()   # the copy's own writes are set-up, not the command's (not timed)
                times[a].append(command(arms[a], copy, args))
                if a not in hashes:
                    hashes[a] = code_hashes(copy)
                shutil.rmtree(copy)
        fl = statistics.median(floors)
        print(f"  floor (decode on {args.workers} threads + kernel, one process): {fl:.2f} s  "
              f"{[round(x, 2) for x in floors]}")
        pf = statistics.median(pfloors)
        print(f"  the same floor as a fresh process (start, imports, cached kernels loaded): {pf:.2f} s  "
              f"{[round(x, 2) for x in pfloors]}")
        for a, ts in times.items():
            ratios = [f / t for f, t in zip(floors, ts)]
            pratios = [f / t for f, t in zip(pfloors, ts)]
            print(f"  {a:6s}: {statistics.median(ts):.2f} s  {[round(x, 2) for x in ts]}; floor / command "
                  f"per pair {[round(r, 2) for r in ratios]}, median {statistics.median(ratios):.2f}; "
                  f"process floor / command median {statistics.median(pratios):.2f} "
                  f"{[round(r, 2) for r in pratios]}")
        if args.before:
            print(f"  same datasets (codes and everything else) before and after: "
                  f"{hashes['before'] == hashes['after']} ({len(hashes['after'])} datasets)")
        print(f"  load average after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
