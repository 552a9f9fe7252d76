"""CPU/GPU training: our loop ÷ a bare PyTorch loop per model, and torch threads vs DataLoader workers.

    python benchmarks/train.py [--models 'feratt*'] [--batch 8] [--steps 4] [--pairs 9] [--threads 1]
                               [--before] [--loop [--loop-per-face N] [--skip-models]] [--device cpu]

1. Per registered model, both arms measured in this run, interleaved step by step (the
   order reversed every round, so load from other processes hits both alike), the
   median of ``--pairs`` pairs of steps (target: ours ÷ bare >= 0.95 for every model):

   * bare — the model-only ceiling: float NCHW contiguous inputs made before the
     clock starts, forward + the same loss + Adam step;
   * ours — ``ferdata.train.engine.train_epoch`` with the run's ``BatchPrep`` on
     uint8 batches exactly as the batch-mode loader yields them (images a
     channels_last view of the decoded NHWC array), so the conversion, the label
     mapping and the bookkeeping are all inside the clock;
   * ``--before`` adds the pre-fix arm: the same loop with the model handed the
     channels_last view (what BatchPrep did on CPU before the memory-format choice).

2. ``--loop``: the real ``ferdata.train.fit`` on renders of the built-in sample with 2
   DataLoader workers, torch threads = the run's choice (cores − workers) vs all cores,
   alternated (samples/s and the data-wait fraction).
"""
import argparse
import contextlib
import fnmatch
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ferdata.torch.datasets import _to_tensors
from ferdata.train.augment import Augmenter
from ferdata.train.engine import train_epoch
from ferdata.train.losses import FERAttLoss
from ferdata.train.models import create_model, forward_batch, list_models, model_inputs
from ferdata.train.prep import BatchPrep
from ferdata.train.runtime import input_memory_format

CLASSES = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]


def uint8_batches(name, batch, n, seed=0):
    """``n`` batches as the batch-mode shard loader yields them (uint8, images channels_last views)."""
    inp = model_inputs(name)
    H, W = inp.input_size
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        b = {"image": rng.integers(0, 256, (batch, H, W, inp.in_channels), dtype=np.uint8),
             "label": rng.integers(0, 8, batch).astype(np.uint8)}
        if "reconstruction" in inp.outputs:
            b["clean"] = rng.integers(0, 256, (batch, H, W, inp.in_channels), dtype=np.uint8)
        if "lbp" in inp.fields:
            b["lbp/circle_P8_R1"] = rng.integers(0, 256, (batch, H, W), dtype=np.uint8)
        out.append(_to_tensors(b, channels_last=True))
    return out


def _fresh(name, device, memory_format):
    torch.manual_seed(0)
    m = create_model(name, num_classes=8).to(device).to(memory_format=memory_format)
    return m, torch.optim.Adam(m.parameters(), 1e-4), FERAttLoss().to(device)


def _prep(name, device, channels_last):
    inp = model_inputs(name)
    return BatchPrep(inp, CLASSES, device, {"resize": list(inp.input_size)}, Augmenter("none", inp.input_size),
                     channels_last, lbp="circle_P8_R1" if "lbp" in inp.fields else None)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class _BeforePrep:
    """The pre-fix BatchPrep on CPU: the model got the loader's channels_last layout."""

    def __init__(self, prep):
        self.prep = prep

    def __call__(self, batch, train=False):
        x = self.prep(batch, train)
        x["image"] = x["image"].contiguous(memory_format=torch.channels_last)
        return x


def _arm(kind, name, batches, device):
    """A step function of one arm: ``step(i)`` trains on batch ``i`` (its own model and optimiser)."""
    fmt = input_memory_format(create_model(name), device, False) if kind != "bare" else torch.contiguous_format
    m, opt, crit = _fresh(name, device, fmt)
    prep = _prep(name, device, False)
    if kind == "bare":  # a hand-written loop on float NCHW contiguous inputs made beforehand
        ready = [prep(b, train=True) for b in batches]

        def step(i):
            x = ready[i]
            out = forward_batch(m, x)
            loss = crit(out, x["label"], x.get("target"))["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step
    if kind == "before":
        prep = _BeforePrep(prep)

    def step(i):  # the real loop, conversion of the loader's uint8 batch included
        train_epoch(m, [batches[i]], prep, crit, opt, None, contextlib.nullcontext, 0)
    return step


def ab_model(name, args, dev, arms):
    """Step times per arm, the arms interleaved step by step (order reversed every round)."""
    batches = uint8_batches(name, args.batch, args.steps)
    steps = {k: _arm(k, name, batches, dev) for k in arms}
    for k in arms:  # warm-up
        steps[k](0)
    times = {k: [] for k in arms}
    for r in range(args.pairs):
        for k in (arms if r % 2 == 0 else arms[::-1]):
            _sync(dev)
            t = time.perf_counter()
            steps[k](r % len(batches))
            _sync(dev)
            times[k].append(time.perf_counter() - t)
    return times


def per_model(args, dev):
    names = [n for n in list_models() if any(fnmatch.fnmatch(n, p) for p in args.models.split(","))]
    arms = ["bare", "ours"] + (["before"] if args.before else [])
    head = f"{'model':<18}{'bare/s':>9}{'ours/s':>9}{'ours/bare':>10}" + (f"{'before/bare':>12}" if args.before else "")
    print(head + "   ours/bare per pair (min..max)")
    worst = None
    for name in names:
        times = ab_model(name, args, dev, arms)
        per_pair = [b / o for o, b in zip(times["ours"], times["bare"])]
        ratio = statistics.median(per_pair)
        worst = ratio if worst is None else min(worst, ratio)
        sps = {k: args.batch / statistics.median(v) for k, v in times.items()}
        line = f"{name:<18}{sps['bare']:>9.1f}{sps['ours']:>9.1f}{ratio:>10.3f}"
        if args.before:
            line += f"{statistics.median(b / o for o, b in zip(times['before'], times['bare'])):>12.3f}"
        print(line + f"   {min(per_pair):.3f}..{max(per_pair):.3f}", flush=True)
    print(f"worst ours/bare: {worst:.3f} (target >= 0.95)")


def loop_threads(args):
    from ferdata.train.config import TrainConfig
    from ferdata.train import fit
    from ferdata.train.runtime import torch_threads

    chosen = torch_threads(2, torch.device("cpu")) or torch.get_num_threads()
    allc = os.cpu_count() or 1
    res = {chosen: [], allc: []}
    with tempfile.TemporaryDirectory() as d:
        for k in range(args.pairs):
            for th in ((chosen, allc) if k % 2 == 0 else (allc, chosen)):
                os.environ["OMP_NUM_THREADS"] = str(th)  # the run keeps an explicit choice
                torch.set_num_threads(th)
                cfg = TrainConfig(model=args.loop_model, epochs=1, batch_size=64, lr=1e-3, eval_on="renders",
                                  protocol="holdout", num_workers=2, sample_per_face=args.loop_per_face, sample_size=64,
                                  device="cpu", overwrite=True)
                fit(cfg, Path(d) / "run")
                rec = [json.loads(line) for line in (Path(d) / "run" / "metrics.jsonl").read_text().splitlines()][-1]
                res[th].append((rec["samples_per_s"], rec["data_wait_fraction"]))
        os.environ.pop("OMP_NUM_THREADS", None)
    for th, v in res.items():
        sps = statistics.median(s for s, _ in v)
        print(f"loop {args.loop_model}, 2 workers, {th} torch thread(s): {sps:.0f} samples/s "
              f"(runs {[round(s) for s, _ in v]}), data wait {100 * statistics.median(w for _, w in v):.1f}%")
    print(f"chosen ({chosen}) / all cores ({allc}): "
          f"{statistics.median(s for s, _ in res[chosen]) / statistics.median(s for s, _ in res[allc]):.3f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="*", help="comma-separated shell patterns")
    ap.add_argument("--steps", type=int, default=4, help="distinct batches (cycled)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=9, help="timed steps per arm (the median is reported)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--before", action="store_true", help="also time the pre-fix channels_last-view arm")
    ap.add_argument("--loop", action="store_true", help="also the real loop: threads vs workers")
    ap.add_argument("--loop-per-face", type=int, default=1024, help="renders per sample face in --loop")
    ap.add_argument("--loop-model", default="preactresnet18")
    ap.add_argument("--skip-models", action="store_true", help="only --loop")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device={dev} torch={torch.__version__} threads={torch.get_num_threads()} cores={os.cpu_count()} "
          f"load average {os.getloadavg()[0]:.2f}; batch {args.batch}, {args.steps} distinct batches, "
          f"median of {args.pairs} pairs of steps, arms interleaved step by step")
    if not args.skip_models:
        per_model(args, dev)
    if args.loop:
        loop_threads(args)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
