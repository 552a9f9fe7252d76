"""Training throughput per model on this machine, and how long steps wait for data.

    python benchmarks/train.py [--steps 5] [--batch 16] [--device cpu|cuda] [--amp bf16]

1. For every registered model at its input size: training samples/s (forward +
   backward + Adam step) on synthetic tensors — the model-only ceiling.
2. The real loop (`ferdata.train.fit`) on renders of the built-in sample with a
   DataLoader of 0 and 2 workers: samples/s and the fraction of step time spent
   waiting for data (must be small with >= 2 workers).
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from ferdata.train.models import count_parameters, create_model, forward_batch, list_models, model_inputs


def model_throughput(name, batch, steps, device, amp, channels_last):
    inp = model_inputs(name)
    m = create_model(name, num_classes=8).to(device)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(m.parameters(), 1e-4)
    H, W = inp.input_size
    x = {"image": torch.randn(batch, inp.in_channels, H, W, device=device)}
    for f, c in inp.extra_channels.items():
        x[f] = torch.rand(batch, c, H, W, device=device)
    if channels_last:
        x = {k: v.contiguous(memory_format=torch.channels_last) for k, v in x.items()}
    y = torch.randint(0, 8, (batch,), device=device)
    import contextlib
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp == "bf16" else contextlib.nullcontext

    def step():
        with ctx():
            out = forward_batch(m, x)
            loss = torch.nn.functional.cross_entropy(out["logits"].float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t), count_parameters(m), inp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default="none")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--skip-loop", action="store_true")
    args = ap.parse_args()
    dev = torch.device(args.device)
    print(f"device={dev} torch={torch.__version__} threads={torch.get_num_threads()} amp={args.amp}")
    print(f"{'model':<20}{'input':>12}{'params':>12}{'samples/s':>12}")
    for name in list_models():
        sps, n, inp = model_throughput(name, args.batch, args.steps, dev, args.amp, args.channels_last)
        print(f"{name:<20}{'x'.join(map(str, inp.input_size)) + 'x' + str(inp.in_channels):>12}{n:>12,}{sps:>12.1f}")
    if args.skip_loop:
        return
    from ferdata.config import TrainConfig
    from ferdata.train import fit

    with tempfile.TemporaryDirectory() as d:
        for workers in (0, 2):
            cfg = TrainConfig(model="preactresnet18", epochs=1, batch_size=64, lr=1e-3, eval_on="renders",
                              protocol="holdout", num_workers=workers, sample_per_face=1024, sample_size=64,
                              device=args.device)
            fit(cfg, Path(d) / f"w{workers}")
            rec = [json.loads(l) for l in (Path(d) / f"w{workers}" / "metrics.jsonl").read_text().splitlines()][-1]
            print(f"loop preactresnet18 (64px renders -> 32x32), DataLoader workers={workers}: "
                  f"{rec['samples_per_s']:.0f} samples/s, waiting for data {100 * rec['data_wait_fraction']:.1f}% of step time")


if __name__ == "__main__":
    main()
