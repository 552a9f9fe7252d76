"""The torch renderer on a GPU: match, determinism, speed, and whether live training waits.

    python benchmarks/gpu_check.py --sample DIR [--device cuda] [--size 128] [--json OUT.json]

Run by ``benchmarks/gpu_check.sh`` on a lent GPU machine (docs/rendering.md, "On a GPU");
``--device cpu`` runs the same checks here, slowly (fp32 steps). ``DIR`` is ``ferdata sample`` output
(faces.h5 + backgrounds/), made beforehand so the GPU machine needs no dlib. Reports:

1. match with the shard renderer (``RenderContext.render_sample``, CPU) on 256 samples:
   median and max mean |Δ| grey levels per image, max landmark distance, min mask IoU
   (issue 14: median <= 2, landmarks <= 0.05 px, IoU >= 0.97);
2. determinism on the device (the same indices twice, reversed, a sub-batch: identical
   bytes) and the device-vs-CPU difference of the torch renderer (the cross-device
   tolerance);
3. samples/s on the device, parameters included (replayed from CPU and drawn on the
   device), per batch size;
4. live training: one ``preactresnet18`` step (bf16 autocast on CUDA, channels_last) vs one
   render of the same batch size — the renderer keeps up when render < step.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ferdata.config import RenderConfig
from ferdata.render.run import RenderContext, RenderJob
from ferdata.torch.render import TorchRenderer
from ferdata.train.models import create_model
from render_torch import _sync, rate  # benchmarks/ is on sys.path when this runs as a script


def match(ctx, tr, idx):
    """Per-image mean |Δ|, mask IoU and max landmark distance: torch renderer vs shard renderer."""
    out = tr.render(idx)
    img, msk, lms = (out[k].cpu().numpy() for k in ("image", "mask", "landmarks"))
    d, iou, lm, labels = [], [], [], 0
    for j, g in enumerate(idx):
        ref = ctx.render_sample(int(g))
        d.append(np.abs(img[j].transpose(1, 2, 0).astype(np.int16) - ref["image"]).mean())
        iou.append((msk[j] & ref["mask"]).sum() / max((msk[j] | ref["mask"]).sum(), 1))
        lm.append(np.nanmax(np.abs(lms[j] - ref["landmarks"])))
        labels += int(out["label"][j]) != ref["label"]
    d = np.array(d)
    return dict(n=len(idx), median_abs_diff=float(np.median(d)), max_abs_diff=float(d.max()),
                max_landmark_px=float(max(lm)), min_iou=float(min(iou)), label_mismatches=labels)


def determinism(tr, cpu_tr, idx):
    a, b = tr.render(idx), tr.render(idx)
    rev = tr.render(idx[::-1].copy())
    sub = tr.render(idx[5:9])
    same = (torch.equal(a["image"], b["image"]) and torch.equal(a["image"], rev["image"].flip(0))
            and torch.equal(a["image"][5:9], sub["image"]))
    c = cpu_tr.render(idx)
    diff = (a["image"].cpu().to(torch.int16) - c["image"].to(torch.int16)).abs()
    return dict(identical_bytes=bool(same), vs_cpu_max_abs=int(diff.max()),
                vs_cpu_mean_abs=float(diff.float().mean()),
                vs_cpu_mask_differs=int((a["mask"].cpu() != c["mask"]).sum()))


def speed(tr, batches):
    """Samples/s (render_torch.rate: a warm-up batch, then synchronised timing) per params mode and batch."""
    res = {}
    for params in ("replay", "device"):
        tr.params_mode = params
        for b in batches:
            res[f"{params} batch {b}"] = round(rate(tr, 8 * b, b))
    tr.params_mode = "replay"
    return res


def live_step(tr, dev, batch, size):
    """Seconds per render of ``batch`` vs per preactresnet18 training step on it."""
    model = create_model("preactresnet18", num_classes=8).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    # bf16 on CUDA; a CPU without bf16 units would emulate it (minutes), so fp32 there
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")

    def step(out):
        x = out["image"].float().div_(255).contiguous(memory_format=torch.channels_last)
        x = torch.nn.functional.interpolate(x, size=(size, size)) if x.shape[-1] != size else x
        with amp:
            loss = torch.nn.functional.cross_entropy(model(x)["logits"], out["label"].long().to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    out = tr.render(np.arange(batch))
    times = {"render": [], "step": []}
    for i in range(6):
        _sync(dev)
        t = time.perf_counter()
        out = tr.render(np.arange(batch) + i * batch)
        _sync(dev)
        times["render"].append(time.perf_counter() - t)
        t = time.perf_counter()
        step(out)
        _sync(dev)
        times["step"].append(time.perf_counter() - t)
    r, s = (float(np.median(v[1:])) for v in times.values())
    return dict(batch=batch, render_s=r, step_s=s, render_over_step=r / s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", required=True, help="ferdata sample output (faces.h5, backgrounds/)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batches", default="1024,4096,16384")
    ap.add_argument("--live-batches", default="256,1024", help="batch sizes of the render vs step check")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    dev = torch.device(args.device)
    faces, bgs = str(Path(args.sample) / "faces.h5"), str(Path(args.sample) / "backgrounds")
    cfg = RenderConfig(size=args.size, per_face=100_000).resolved()
    report = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
              "torch": torch.__version__, "size": args.size}
    ctx = RenderContext(RenderJob(faces, bgs, "/tmp/unused-gpu-check", cfg))
    tr = TorchRenderer(faces, bgs, cfg, device=dev)
    report["match"] = match(ctx, tr, np.arange(256) * 3 + 1)
    print("match", report["match"], flush=True)
    report["determinism"] = determinism(tr, TorchRenderer(faces, bgs, cfg, device="cpu"),
                                        np.arange(40, 72))
    print("determinism", report["determinism"], flush=True)
    report["samples_per_s"] = speed(tr, [int(b) for b in args.batches.split(",")])
    print("samples/s", report["samples_per_s"], flush=True)
    report["live"] = [live_step(tr, dev, int(b), args.size) for b in args.live_batches.split(",")]
    print("live", report["live"], flush=True)
    if dev.type == "cuda":
        report["max_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
