"""A render on 2 workers: both cores busy (issue 23.3), and how far from the JPEG-encode
floor (issue 23.4), before -> after (docs/rendering.md).

    python benchmarks/render_small.py [--per-face 3000] [--workers 2] [--pairs 3] [--before /tmp/before]

Runs ``ferdata render --per-face N --workers W`` on the built-in sample (2 faces, so
``--per-face 3000`` is 6,000 samples: one 8,192-sample shard) as a fresh command, and
reports wall time, CPU time (the command and its workers) and CPU/wall. With
``--before DIR`` (a checkout of an older tree: ``git worktree add /tmp/before <rev>``)
the old and this tree run alternately, ``--pairs`` times, and the medians and the
per-pair ratios are printed; the shards of both must hold the same bytes (checked).

The floor, measured in this process between the runs: JPEG-encode (cv2, the shards'
quality) the same images, one process; the floor of W workers is that time / W.
Printed: render wall / floor (1 = the render costs no more than encoding its JPEGs).
"""
import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

from _arms import arm_env, arm_package




def run(tree, out: Path, args, sample: Path) -> dict:
    env, root = arm_env(tree)
    cmd = [sys.executable, "-m", "ferdata", "render", str(sample / "faces.h5"), "--backgrounds",
           str(sample / "backgrounds"), "-o", str(out), "--per-face", str(args.per_face), "--size", str(args.size),
           "--workers", str(args.workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=root, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "ratio": cpu / wall}


def encode_floor(folder: Path, workers: int) -> float:
    """Seconds to JPEG-encode every image of the render once, divided by ``workers``."""
    import numpy as np

    from ferdata.shards.reader import read_images
    from ferdata.shards.schema import encode_jpeg

    imgs = []
    for p in sorted(folder.glob("shard-*.h5")):
        with h5py.File(p, "r") as f:
            q = json.loads(f.attrs["config"]).get("jpeg_quality", 95)
            imgs.append(read_images(f, 0, len(f["image_offsets"]) - 1))
    imgs = np.concatenate(imgs)
    t = time.perf_counter()
    for im in imgs:
        encode_jpeg(im, q)
    return (time.perf_counter() - t) / workers


def hashes(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.glob("shard-*.h5")):
        with h5py.File(p, "r") as f:
            for k in sorted(f.keys()):
                h.update(k.encode() + f[k][:].tobytes())
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-face", type=int, default=3000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--before", default=None, help="an older checkout to compare with (alternated)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ferdata-small-"))
    try:
        from ferdata.render.sample import make_sample

        make_sample(tmp / "s")
        arms = {"after": None} if not args.before else {"before": args.before, "after": None}
        res = {a: [] for a in arms}
        digests = {}
        print(f"ferdata render --per-face {args.per_face} --size {args.size} --workers {args.workers} "
              f"(2 faces: {2 * args.per_face} samples), cores={os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
        for name, tree in arms.items():
            print(f"  {name}: ferdata from {arm_package(tree)}")
        for i in range(args.pairs):
            order = list(arms) if i % 2 == 0 else list(reversed(arms))
            for a in order:
                out = tmp / f"{a}-{i}"
                res[a].append(run(arms[a], out, args, tmp / "s"))
                res[a][-1]["floor"] = encode_floor(out, args.workers)
                digests.setdefault(a, hashes(out))
                shutil.rmtree(out)
        for a, rs in res.items():
            print(f"  {a:6s}: wall {statistics.median(r['wall'] for r in rs):6.2f} s, "
                  f"CPU {statistics.median(r['cpu'] for r in rs):6.2f} s, CPU/wall median "
                  f"{statistics.median(r['ratio'] for r in rs):.2f}  {[round(r['ratio'], 2) for r in rs]}; "
                  f"wall / encode floor median {statistics.median(r['wall'] / r['floor'] for r in rs):.1f}  "
                  f"{[round(r['wall'] / r['floor'], 1) for r in rs]}")
        if args.before:
            sp = [b["wall"] / a["wall"] for a, b in zip(res["after"], res["before"])]
            print(f"  wall before/after per pair: {[round(x, 2) for x in sp]}, median {statistics.median(sp):.2f}x")
            print(f"  same shard bytes before and after: {digests['before'] == digests['after']}")
        print(f"  load average after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
