"""LBP throughput: ferdata vs scikit-image, side by side in one run.

    python benchmarks/lbp.py [--sizes 256 1024] [--threads 1 2] [--min-time 0.3]

For P8R1 and P16R2 ('circle' = skimage 'default', and 'uniform'), on a real face
(skimage's astronaut, gray, resized to each size), times
``skimage.feature.local_binary_pattern`` and ``ferdata.features.lbp`` with 1 and 2
numba threads, checks the codes are identical, and prints Mpx/s and the ratio to
scikit-image; then the 3x3 ``original`` operator (no skimage equivalent) and a
FER2013-sized batch. Every figure is the best of repeated runs (the machine may be
shared). First prints the first-call compile time (fresh numba cache) and the
first-call time with the on-disk cache, each in a fresh process.

Targets (DESIGN.md §12, 2-core machine): >= 100x scikit-image at P8R1 with 2 threads,
>= 30x at P16R2, original >= 2 Gpx/s.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings

import cv2
import numba
import numpy as np
from skimage.data import astronaut
from skimage.feature import local_binary_pattern

from ferdata.features import lbp

FIRST_CALL = """
import time
t = time.perf_counter()
import numpy as np
from ferdata.features import lbp
t_import = time.perf_counter() - t
img = np.zeros((64, 64), np.uint8)
t = time.perf_counter(); lbp(img, "circle", 8, 1); t_circle = time.perf_counter() - t
t = time.perf_counter(); lbp(img, "original"); t_orig = time.perf_counter() - t
print(f"{t_import:.2f} {t_circle:.2f} {t_orig:.2f}")
"""


def first_call_times():
    """(import, circle, original) first-call seconds: fresh cache, then cached."""
    out = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for _ in range(2):
            r = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, check=True,
                               capture_output=True, text=True)
            out.append([float(x) for x in r.stdout.split()])
    return out


def cpu_ticks():
    """(busy, total) jiffies of the whole machine from /proc/stat (Linux), else None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    return sum(v) - v[3] - v[4], sum(v)  # minus idle and iowait


def best_time(fn, min_time, min_reps=3):
    fn()  # warm-up
    best, total, reps = float("inf"), 0.0, 0
    while total < min_time or reps < min_reps:
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        best, total, reps = min(best, dt), total + dt, reps + 1
    return best


def skimage_lbp(img, P, R, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return local_binary_pattern(img, P, R, method)


def face(size):
    gray = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA if size < 512 else cv2.INTER_CUBIC)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds of repeats per figure")
    args = ap.parse_args()
    threads = [t for t in args.threads if t <= numba.config.NUMBA_NUM_THREADS]

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"numba {numba.__version__} ({numba.config.THREADING_LAYER} layer)")
    cold, warm = first_call_times()
    print(f"first call, fresh numba cache: import {cold[0]:.2f} s, circle {cold[1]:.2f} s, "
          f"original {cold[2]:.2f} s (compile)")
    print(f"first call, on-disk cache:     import {warm[0]:.2f} s, circle {warm[1]:.2f} s, "
          f"original {warm[2]:.2f} s")
    lbp(face(64), "circle")  # this process: load the kernels before timing
    ticks0, cpu0 = cpu_ticks(), time.process_time()

    head = f"{'image':>10} {'P,R':>6} {'variant':>8} {'skimage':>9}" + "".join(
        f" {f'{t} thr':>9} {'ratio':>7}" for t in threads)
    print(f"\nMpx/s (ratio = ferdata / scikit-image, same run)\n{head}")
    results = {}
    for size in args.sizes:
        img = face(size)
        mpx = img.size / 1e6
        for P, R in [(8, 1), (16, 2)]:
            for variant, method in [("circle", "default"), ("uniform", "uniform")]:
                ref = skimage_lbp(img, P, R, method)
                t_sk = best_time(lambda: skimage_lbp(img, P, R, method), args.min_time, 2)
                out = lbp(img, variant, P, R)
                assert np.array_equal(out, ref), "codes differ from scikit-image"
                row = f"{f'{size}^2':>10} {f'{P},{R:g}':>6} {variant:>8} {mpx / t_sk:9.1f}"
                for t in threads:
                    numba.set_num_threads(t)
                    dt = best_time(lambda: lbp(img, variant, P, R, out=out), args.min_time)
                    results[(size, P, variant, t)] = t_sk / dt
                    row += f" {mpx / dt:9.0f} {t_sk / dt:6.0f}x"
                numba.set_num_threads(max(threads))
                print(row)
        out = lbp(img, "original")
        row = f"{f'{size}^2':>10} {'3x3':>6} {'original':>8} {'-':>9}"
        for t in threads:
            numba.set_num_threads(t)
            dt = best_time(lambda: lbp(img, "original", out=out), args.min_time)
            row += f" {mpx / dt:9.0f} {'':>7}"
        numba.set_num_threads(max(threads))
        print(row)

    batch = np.stack([face(48)] * 1000)  # FER2013-sized faces, one call for the batch
    mpx = batch.size / 1e6
    t_sk = best_time(lambda: [skimage_lbp(im, 8, 1, "default") for im in batch[:100]], args.min_time, 2) * 10
    row = f"{'1000x48^2':>10} {'8,1':>6} {'circle':>8} {mpx / t_sk:9.1f}"
    out = lbp(batch, "circle")
    for t in threads:
        numba.set_num_threads(t)
        dt = best_time(lambda: lbp(batch, "circle", out=out), args.min_time)
        row += f" {mpx / dt:9.0f} {t_sk / dt:6.0f}x"
    print(row)

    ticks1, cpu1 = cpu_ticks(), time.process_time()
    if ticks0 and ticks1:
        hz = os.sysconf("SC_CLK_TCK")
        busy, total = ticks1[0] - ticks0[0], ticks1[1] - ticks0[1]
        others = max(0.0, busy / hz - (cpu1 - cpu0)) / (total / hz)
        print(f"\nother processes kept {100 * others:.0f}% of the machine's CPU time busy during "
              "the timings (2-thread figures need a quiet machine)")
    t2 = max(threads)
    if (args.sizes and t2 == 2):
        p8 = min(results[(s, 8, v, 2)] for s in args.sizes for v in ("circle", "uniform"))
        p16 = min(results[(s, 16, v, 2)] for s in args.sizes for v in ("circle", "uniform"))
        print(f"\nworst ratio with 2 threads: P8R1 {p8:.0f}x (target >= 100x), "
              f"P16R2 {p16:.0f}x (target >= 30x)")


if __name__ == "__main__":
    main()
