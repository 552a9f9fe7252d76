"""The torch renderer vs the shard renderer's generate step, side by side in one run.

    python benchmarks/render_torch.py [--n 4096] [--size 128] [--batch 512] [--repeats 3] [--device cpu|cuda]

Reference: the shard renderer's generate step (``RenderContext.render_sample``: params,
warp, luminance, alpha, photometric; no encode/write) on one core, measured in the
same run, and the same step in one process per core at once (the "all cores" reference:
no CPU code scales perfectly over cores, so per core the fair comparison is with every
core busy for both). Reported:
- torch renderer samples/s on the CPU with torch threads = cores, per core, and the
  ratio per core against the 1-core reference and against the all-cores reference; and with one torch thread (a per-core figure
  that a shared machine's load disturbs less); medians of ``--repeats`` interleaved runs;
- on CUDA when present (or ``--device cuda``): samples/s (parameters included) and the
  ratio against the all-cores reference (the shard renderer on every core, measured);
- the share of the time per stage (params, warp, crops, luminance, alpha, photometric),
  from a synchronised, stage-by-stage replay of one batch.
Absolute speeds differ 2–4× between machines here: read the ratios.
"""
import argparse
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ferdata.config import RenderConfig
from ferdata.render.run import RenderContext, RenderJob
from ferdata.render.sample import make_sample
from ferdata.torch.render import TorchRenderer


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def rate(tr, n, batch):
    tr.render(np.arange(batch))          # warm-up (kernels, LUTs, caches)
    _sync(tr.device)
    t = time.perf_counter()
    for s in range(0, n, batch):
        tr.render(np.arange(s, min(s + batch, n)) + batch)
    _sync(tr.device)
    return n / (time.perf_counter() - t)


def _ref_child(job, first, n, barrier, results):
    """One process of the all-cores reference: warm up, wait for the others, time ``n`` samples."""
    ctx = RenderContext(job)
    for g in range(64):
        ctx.render_sample(g)
    barrier.wait()
    t0 = time.perf_counter()            # CLOCK_MONOTONIC: comparable across processes
    for g in range(first, first + n):
        ctx.render_sample(g)
    results.put((t0, time.perf_counter()))


def all_cores_reference(job, n, cores, first=100_000):
    """Samples/s of the shard renderer's generate step in ``cores`` processes at once (wall
    time from the first start to the last end): what the CPU gives it with every core busy."""
    mp = multiprocessing.get_context("spawn")
    barrier, results = mp.Barrier(cores), mp.Queue()
    per = n // cores
    procs = [mp.Process(target=_ref_child, args=(job, first + k * per, per, barrier, results))
             for k in range(cores)]
    for p in procs:
        p.start()
    spans = [results.get() for _ in procs]
    for p in procs:
        p.join()
    return per * cores / (max(e for _, e in spans) - min(s for s, _ in spans))


def _cpu_rates(ctx, cpu, args, cores):
    """Medians of ``args.repeats`` interleaved runs: (reference 1 core, reference on all cores
    (one process per core), torch ``cores`` threads, torch 1 thread).

    Interleaved so that the load of a shared machine falls on all of them alike."""
    nref = min(args.n, 2048)
    for g in range(64):
        ctx.render_sample(g)
    refs, alls, cpus, ones = [], [], [], []
    for k in range(args.repeats):
        t = time.perf_counter()
        for g in range(nref):
            ctx.render_sample(g + 64 + k * nref)
        refs.append(nref / (time.perf_counter() - t))
        alls.append(all_cores_reference(ctx.job, nref, cores) if cores > 1 else refs[-1])
        torch.set_num_threads(cores)
        cpus.append(rate(cpu, args.n, args.batch))
        torch.set_num_threads(1)
        ones.append(rate(cpu, args.n // 2, args.batch))
    torch.set_num_threads(cores)
    return tuple(float(np.median(v)) for v in (refs, alls, cpus, ones))


def stages(tr, batch, repeats=3):
    """Seconds per stage of one batch (``TorchRenderer._render``'s stages, each synchronised);
    the median of ``repeats`` renders of the same batch."""
    dev = tr.device
    runs = []
    for _ in range(repeats):
        out, t = {}, [time.perf_counter()]

        def lap(name):
            _sync(dev)
            now = time.perf_counter()
            out[name] = now - t[0]
            t[0] = now
        tr._render(np.arange(batch) + 7 * batch, lap=lap)
        runs.append(out)
    return {k: float(np.median([r[k] for r in runs])) for k in runs[0]}


def sheet(ctx, tr, path, n=16):
    """Shard renders (top row of each pair) above torch renders (bottom) of the same indices."""
    import cv2

    idx = np.arange(n) * 37 + 3
    torch_imgs = tr.render(idx)["image"].permute(0, 2, 3, 1).cpu().numpy()
    rows = []
    for k in range(0, n, 8):
        top = np.concatenate([ctx.render_sample(int(g))["image"] for g in idx[k:k + 8]], 1)
        bot = np.concatenate(list(torch_imgs[k:k + 8]), 1)
        diff = np.abs(top.astype(np.int16) - bot.astype(np.int16)).clip(0, 25).astype(np.uint8) * 10
        rows += [top, bot, diff]
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    print(f"  contact sheet: {path} (rows: shard, torch, |difference| x10)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs of each rate (medians reported)")
    ap.add_argument("--sheet", default=None, help="also write a shard-vs-torch contact sheet PNG here")
    ap.add_argument("--device", default=None, help="also run on this device (default: cuda when present)")
    ap.add_argument("--sample", default=None, help="an existing `ferdata sample` folder (else one is made)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    load = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="ferdata-bench-"))
    try:
        src = Path(args.sample) if args.sample else tmp / "s"
        if not args.sample:
            make_sample(src)
        faces, bgs = str(src / "faces.h5"), str(src / "backgrounds")
        cfg = RenderConfig(size=args.size, per_face=1 << 30).resolved()
        ctx = RenderContext(RenderJob(faces, bgs, str(tmp), cfg))
        cpu = TorchRenderer(faces, bgs, cfg, device="cpu")
        ref, ref_all, r_cpu, r_one = _cpu_rates(ctx, cpu, args, cores)
        print(f"render {args.size}x{args.size}, 2 faces, {len(cpu.bg_ids)} backgrounds, cores={cores}, "
              f"batch={args.batch}; medians of {args.repeats} interleaved runs; load average before "
              f"{load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
        print(f"  reference: shard renderer generate step, 1 core : {ref:9.0f} samples/s")
        print(f"  reference on all {cores} cores ({cores} processes)      : {ref_all:9.0f} samples/s "
              f"({ref_all / cores:.0f}/core)")
        print(f"  torch renderer, CPU, {cores} threads             : {r_cpu:9.0f} samples/s "
              f"({r_cpu / cores:.0f}/core; per core vs reference {r_cpu / cores / ref:.2f}x, "
              f"vs the reference on all cores {r_cpu / ref_all:.2f}x)")
        print(f"  torch renderer, CPU, 1 thread               : {r_one:9.0f} samples/s "
              f"(vs reference {r_one / ref:.2f}x)")
        if args.sheet:
            sheet(ctx, cpu, args.sheet)
        ch = min(args.batch, cpu.CPU_CHUNK)     # a CPU renders chunks of this size, one per single-threaded worker
        torch.set_num_threads(1)
        st = stages(cpu, ch)
        torch.set_num_threads(cores)
        tot = sum(st.values())
        print(f"  CPU stages, 1 thread, a chunk of {ch} ({tot / ch * 1e3:.2f} ms/sample): "
              + ", ".join(f"{k} {v / ch * 1e3:.3f} ms ({v / tot:.0%})" for k, v in st.items()))
        dev = args.device or ("cuda" if torch.cuda.is_available() else None)
        if dev:
            gpu = TorchRenderer(faces, bgs, cfg, device=dev)
            for mode in ("replay", "device"):
                gpu.params_mode = mode
                r = rate(gpu, max(args.n, 16 * args.batch), args.batch)
                print(f"  torch renderer, {dev}, params={mode:6s}: {r:9.0f} samples/s "
                      f"({r / ref_all:.1f}x the shard renderer on all {cores} cores)")
            st = stages(gpu, args.batch)
            tot = sum(st.values())
            print(f"  {dev} stage shares: " + ", ".join(f"{k} {v / tot:.0%}" for k, v in st.items()))
        else:
            print("  no CUDA device: GPU figures not measured")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
