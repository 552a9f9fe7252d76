"""Render throughput at 128×128: samples/s per core, 1 -> 2 workers, bytes/sample,
the I/O floor, and a FERAtt-style naive pipeline as the reference.

    python benchmarks/render.py [--n 8192]

Reported as ratios, every reference measured in the same run (no figure from another machine):
- the render step (generate only, one process) before -> after the exact-output
  speed-ups (the background's Lab lightness cached per image): the two arms interleaved
  sample by sample on fresh contexts (cache costs included), median of --pairs pairs;
- ours vs the naive FERAtt-style reference (skimage Lab conversion, a background JPEG
  decoded per sample, a hard paste — what the FERAtt research code does per sample),
  alternated with the A/B pairs;
- 2 workers vs 1 (scaling on this 2-core machine);
- total render time / time to only encode (JPEG q95) and write the same samples
  (how close we are to the I/O floor).
"""
import argparse
import os
import statistics
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ferdata.config import RenderConfig
from ferdata.render.params import PARAM_NAMES, background_index, sample_params, sample_rng
from ferdata.render import run as render_run
from ferdata.render.bg_lightness import LightnessCache
from ferdata.render.run import RenderContext, RenderJob, get_context, render
from ferdata.render.sample import make_sample
from ferdata.shards.writer import ShardBuffer, write_shard


def naive_reference(ctx, n, cfg):
    """FERAtt-style per-sample work: decode a background JPEG, skimage Lab luminance, hard paste."""
    from skimage import color

    t = time.perf_counter()
    for g in range(n):
        f, i = g % ctx.n_faces, g // ctx.n_faces
        p = sample_params(sample_rng(cfg.seed, f, i), cfg)
        bg_id = int(ctx.bg.ids[background_index(p, len(ctx.bg))])
        bg = cv2.cvtColor(cv2.imread(str(ctx.bg.paths[bg_id])), cv2.COLOR_BGR2RGB)  # decoded every time
        y, x = 0, 0
        bg = cv2.resize(bg[y:y + 256, x:x + 256], (cfg.size, cfg.size))
        pf = ctx.prepared(f)
        M = cv2.getRotationMatrix2D((cfg.size / 2, cfg.size / 2), float(p[2]), float(p[1]))
        face = cv2.warpAffine(pf.image, M, (cfg.size, cfg.size))
        mask = cv2.warpAffine(pf.mask, M, (cfg.size, cfg.size)) > 127
        lab_f, lab_b = color.rgb2lab(face), color.rgb2lab(bg)
        w = np.clip(lab_b[..., 0][mask].mean() / max(lab_f[..., 0][mask].mean(), 1e-3), 0.5, 1.5)
        lab_f[..., 0] *= w
        face = (np.clip(color.lab2rgb(lab_f), 0, 1) * 255).astype(np.uint8)
        out = np.where(mask[..., None], face, bg)
        out = np.clip(out * p[19] + np.random.default_rng(g).normal(0, p[23], out.shape), 0, 255).astype(np.uint8)
    return n / (time.perf_counter() - t)


class _NoLightnessCache(LightnessCache):
    """Before: the background's L converted per crop in every sample."""

    def get(self, bg_id, image, size):
        return None


def _fresh_context(job, cached: bool) -> RenderContext:
    """A new render context (empty caches), faces prepared and backgrounds decoded (both arms alike)."""
    saved = render_run.LightnessCache
    render_run.LightnessCache = LightnessCache if cached else _NoLightnessCache
    try:
        ctx = RenderContext(job)
    finally:
        render_run.LightnessCache = saved
    for f in range(ctx.n_faces):
        ctx.prepared(f)
    for bg_id in ctx.bg.ids:
        ctx.bg.load(int(bg_id))
    return ctx


def step_ab(job, n, nref, pairs):
    """samples/s of the render step (generate only, no encode/write), before vs after.

    Each pair starts two fresh contexts and renders samples 0..n-1 with both, sample by
    sample, the order swapped every sample (load from other processes hits both alike);
    the FERAtt-style reference runs ``nref`` samples after each pair.
    """
    runs = {"before": [], "after": [], "ref": []}
    ref_ctx = _fresh_context(job, False)
    for _ in range(pairs):
        ctx = {"before": _fresh_context(job, False), "after": _fresh_context(job, True)}
        spent = {"before": 0.0, "after": 0.0}
        for g in range(n):
            for arm in (("before", "after") if g % 2 == 0 else ("after", "before")):
                t = time.perf_counter()
                ctx[arm].render_sample(g)
                spent[arm] += time.perf_counter() - t
        for arm, dt in spent.items():
            runs[arm].append(n / dt)
        runs["ref"].append(naive_reference(ref_ctx, nref, job.cfg))
    return {k: statistics.median(v) for k, v in runs.items()}, runs


def whole_render(args, faces, bg, cfg, rcfg, tmp):
    """1 and 2 workers end to end, bytes/sample, and the encode+write floor."""
    # warm-up (imports, face store, background decode) outside the timings
    render(faces, bg, tmp / "warm", RenderConfig(size=args.size, per_face=64, shard_size=64))
    t = time.perf_counter()
    r1 = render(faces, bg, tmp / "w1", cfg, workers=1)
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    render(faces, bg, tmp / "w2", cfg, workers=2)
    t2 = time.perf_counter() - t
    n = r1["samples"]
    shard = cfg.shard_size
    nbytes = sum(p.stat().st_size for p in (tmp / "w1").glob("shard-*.h5"))
    # I/O floor: only encode + write the same samples (already rendered, in memory)
    ctx = get_context(RenderJob(str(faces.resolve()), str(bg.resolve()), str(tmp), rcfg))
    samples = [ctx.render_sample(g) for g in range(shard)]
    t = time.perf_counter()
    for k in range(n // shard):
        buf = ShardBuffer(shard, args.size, 3, rcfg.encoding, len(PARAM_NAMES), rcfg.jpeg_quality)
        for s in samples:
            buf.add(s["image"], s["mask"], s["label"], s["landmarks"], s["face_index"], s["subject"],
                    s["params"], s["background"], s["bg_box"])
        write_shard(tmp / f"io-{k}.h5", buf, {"config": {}})
    tio = time.perf_counter() - t
    t = time.perf_counter()
    for g in range(shard):
        ctx.render_sample(g)
    tgen = (time.perf_counter() - t) * (n / shard)
    s1, s2 = n / t1, n / t2
    print(f"  whole render, {n} samples, 2 faces, {len(ctx.bg)} backgrounds:")
    print(f"    1 worker : {s1:8.0f} samples/s  ({1e3 / s1:.2f} ms/sample)")
    print(f"    2 workers: {s2:8.0f} samples/s  (scaling 1->2: {s2 / s1:.2f}x)")
    print(f"    generate only: {n / tgen:.0f} samples/s; encode+write only: {n / tio:.0f} samples/s")
    print(f"    total render time / encode+write time = {t1 / tio:.2f}  (1.0 = at the I/O floor)")
    print(f"    bytes/sample on disk: {nbytes / n:.0f} B  (target <= 10,000 at 128 px JPEG)")
    print(f"    CK+ x 9231 (~3.0 M samples) at this machine's 2-worker rate: {3.0e6 / s2 / 60:.0f} min")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8192, help="samples per measurement")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--pairs", type=int, default=3, help="A/B pairs of the render step (median)")
    ap.add_argument("--step-n", type=int, default=2048, help="samples per render-step timing")
    ap.add_argument("--step-only", action="store_true", help="only the render-step A/B and the reference")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ferdata-bench-"))
    try:
        make_sample(tmp / "s")
        faces, bg = tmp / "s" / "faces.h5", tmp / "s" / "backgrounds"
        per_face = args.n // 2
        shard = args.n // 4
        cfg = RenderConfig(size=args.size, per_face=per_face, shard_size=shard)
        rcfg = cfg.resolved()
        job = RenderJob(str(faces.resolve()), str(bg.resolve()), str(tmp), rcfg)
        print(f"render {args.size}x{args.size} {rcfg.encoding}, cores={os.cpu_count()}, "
              f"load average before: {os.getloadavg()[0]:.2f}")
        med, runs = step_ab(job, args.step_n, min(512, args.step_n), args.pairs)
        print(f"  render step, 1 process, {args.step_n} samples interleaved, median of {args.pairs} pairs:")
        print(f"    before (L per crop)      : {med['before']:8.0f} samples/s  {[round(v) for v in runs['before']]}")
        print(f"    after  (L plane cached)  : {med['after']:8.0f} samples/s  {[round(v) for v in runs['after']]}")
        print(f"    after / before = {med['after'] / med['before']:.3f}x  (per pair: "
              f"{[round(a / b, 3) for a, b in zip(runs['after'], runs['before'])]})")
        print(f"    FERAtt-style reference    : {med['ref']:8.0f} samples/s  -> after / reference = "
              f"{med['after'] / med['ref']:.1f}x, before / reference = {med['before'] / med['ref']:.1f}x")
        if not args.step_only:
            whole_render(args, faces, bg, cfg, rcfg, tmp)
        print(f"  load average after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
