"""One training epoch and one evaluation pass (the pieces :func:`ferdata.train.loop.fit` composes)."""
from __future__ import annotations

import time
from typing import Callable, Optional

import torch

from ..errors import FerdataError
from ..signals import check as check_stop
from .metrics import classification_report, retrieval_topk_accuracy
from .models import forward_batch

__all__ = ["add_noise", "predict", "report", "train_epoch", "val_record"]


def add_noise(image: torch.Tensor, sigma: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """FERAtt §4.4: zero-mean white Gaussian noise of std ``sigma`` on [0, 1] images (= 2·sigma on [-1, 1])."""
    n = torch.randn(image.shape, generator=generator).to(image.device)
    return (image + 2 * float(sigma) * n).clamp_(-1, 1)


@torch.no_grad()
def predict(model, loader, prep, amp_ctx, noise: float = 0.0, seed: int = 0):
    """Logits, labels and embeddings (if the model has them) over ``loader`` (eval mode)."""
    was = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    logits, labels, embs = [], [], []
    for batch in loader:
        check_stop("evaluation")
        x = prep(batch, train=False)
        if noise > 0:
            x = prep.with_noise(x, noise, g)
        with amp_ctx():
            out = forward_batch(model, x)
        logits.append(out["logits"].float().cpu())
        labels.append(x["label"].cpu())
        if "embedding" in out:
            embs.append(out["embedding"].float().cpu())
    model.train(was)
    if not logits:
        raise FerdataError("the evaluation set is empty")
    return (torch.cat(logits).numpy(), torch.cat(labels).numpy(),
            torch.cat(embs).numpy() if embs else None)


def report(logits, labels, classes, emb=None) -> dict:
    """:func:`classification_report` (+ top-5 retrieval precision of the embeddings)."""
    rep = classification_report(labels, logits.argmax(1), classes=classes, scores=logits)
    if emb is not None and len(emb) > 5:
        rep["retrieval_top5"] = float(retrieval_topk_accuracy(emb, labels, k=min(5, len(emb) - 1)))
    return rep


def val_record(rep: dict) -> dict:
    """The per-epoch validation metrics logged to metrics.jsonl (``select_metric`` is one of them)."""
    m = rep["macro"]   # the keys but val_n are ferdata.train.config.SELECT_METRICS
    return {"val_acc": rep["accuracy"], "val_macro_f1": m["f1"], "val_macro_precision": m["precision"],
            "val_macro_recall": m["recall"], "val_n": rep["n"]}


def _step(model, crit, opt, scaler, amp_ctx, x) -> dict:
    with amp_ctx():
        outd = forward_batch(model, x)
        parts = crit(outd, x["label"], x.get("target"), None)
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(parts["loss"]).backward()
        scaler.step(opt)
        scaler.update()
    else:
        parts["loss"].backward()
        opt.step()
    parts = {k: float(v.detach()) for k, v in parts.items()}
    parts["_correct"] = int((outd["logits"].argmax(1) == x["label"]).sum())
    return parts


def train_epoch(model, loader, prep, crit, opt, scaler, amp_ctx, epoch: int, max_steps=None, noise: float = 0.0,
                noise_gen: Optional[torch.Generator] = None, on_step: Optional[Callable] = None) -> dict:
    """One pass over the training loader; returns the epoch's train_* record. ``on_step`` gets
    ``{"epoch", "step" (in the epoch, from 1), "samples" (the batch's), "loss" (the batch's), "lr"}``."""
    model.train()
    t0, wait, n, steps = time.perf_counter(), 0.0, 0, 0
    sums: dict = {}
    it = iter(loader)
    while max_steps is None or steps < max_steps:
        check_stop(f"epoch {epoch}, step {steps}")
        tw = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            break
        x = prep(batch, train=True)
        if noise > 0:
            x = prep.with_noise(x, noise, noise_gen)
        wait += time.perf_counter() - tw
        parts = _step(model, crit, opt, scaler, amp_ctx, x)
        bs = int(x["label"].shape[0])
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + (v * bs if k != "_correct" else v)
        n += bs
        steps += 1
        if on_step:
            on_step({"epoch": epoch, "step": steps, "samples": bs, "loss": parts["loss"],
                     "lr": opt.param_groups[0]["lr"]})
    dt = time.perf_counter() - t0
    if n == 0:
        raise FerdataError("the training set is empty (check the split, the fold and the composition)")
    rec = {"train_loss": sums.pop("loss") / n, "train_acc": sums.pop("_correct") / n}
    rec.update({f"train_{k}": v / n for k, v in sums.items()})
    rec.update(samples_per_s=n / dt, data_wait_fraction=wait / dt, seconds=dt)
    return rec



