"""The training loop: fit a registered model on shards, evaluate on real faces.

``fit(cfg, out)`` trains ``cfg.model`` on renders and validates each epoch on the
real faces of held-out subjects (subject-independent folds) or on held-out renders;
it writes ``config.json``, ``metrics.jsonl``, ``last.pt``, ``best.pt`` and a final
``eval.json`` + confusion matrix into ``out``. ``--resume`` continues from
``last.pt`` bit for bit on CPU (model, optimiser, scheduler, RNG states; the data
order is a pure function of (seed, epoch)).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..errors import FerdataError
from ..labels import CLASS_INDEX
from . import data as tdata
from .losses import FERAttLoss
from .metrics import classification_report, plot_confusion, retrieval_topk_accuracy
from .models import count_parameters, create_model, forward_batch, model_inputs

log = logging.getLogger(__name__)
CKPT_VERSION = 1


# ---------------------------------------------------------------- runtime helpers

def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FerdataError(f"device {spec!r} requested but CUDA is not available")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _dist():
    """(rank, world_size, local_rank) from torchrun's environment; initialises DDP."""
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    if ws <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), ws, int(os.environ.get("LOCAL_RANK", "0"))


# ---------------------------------------------------------------- batches

class BatchPrep:
    """uint8 NHWC/NCHW batch -> normalised float NCHW model inputs on the device."""

    def __init__(self, inputs, label_lut: torch.Tensor, device, channels_last: bool, lbp_key: Optional[str]):
        self.inputs = inputs
        self.lut = label_lut.to(device)
        self.device = device
        self.channels_last = channels_last
        self.lbp_key = lbp_key

    def _image(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if x.ndim == 3:
            x = x[:, None]
        if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):  # NHWC -> NCHW
            x = x.permute(0, 3, 1, 2)
        x = x.float().div_(255.0)
        H, W = self.inputs.input_size
        if tuple(x.shape[-2:]) != (H, W):
            x = F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False, antialias=True)
        if channels == 1 and x.shape[1] == 3:
            x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        elif channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - 0.5) / 0.5
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __call__(self, batch: dict) -> dict:
        out = {"image": self._image(batch["image"], self.inputs.in_channels)}
        out["label"] = self.lut[batch["label"].to(self.device, non_blocking=True).long()]
        if "mask" in batch:
            m = batch["mask"].to(self.device, non_blocking=True)
            if m.ndim == 3:
                m = m[:, None]
            m = m.float().div_(255.0) if m.dtype == torch.uint8 else m.float()
            H, W = self.inputs.input_size
            if tuple(m.shape[-2:]) != (H, W):
                m = F.interpolate(m, size=(H, W), mode="nearest")
            out["mask"] = m
        if "lbp" in self.inputs.fields:
            key = self.lbp_key if self.lbp_key in batch else next(k for k in batch if k.startswith("lbp"))
            lb = batch[key].to(self.device, non_blocking=True)
            if lb.ndim == 3:
                lb = lb[:, None]
            lb = lb.float() / 255.0
            H, W = self.inputs.input_size
            if tuple(lb.shape[-2:]) != (H, W):
                lb = F.interpolate(lb, size=(H, W), mode="nearest")
            out["lbp"] = lb
        return out


# ---------------------------------------------------------------- evaluation

@torch.no_grad()
def predict(model, loader, prep: BatchPrep, amp_ctx, noise: float = 0.0, seed: int = 0, max_batches=None):
    """Logits, labels and embeddings (if the model has them) over ``loader``."""
    model.eval()
    g = torch.Generator(device="cpu").manual_seed(seed)
    logits, labels, embs = [], [], []
    for b, batch in enumerate(loader):
        if max_batches is not None and b >= max_batches:
            break
        x = prep(batch)
        if noise > 0:  # FERAtt's robustness sweep: N(0, sigma) on [0,1] images = 2·sigma after normalising
            n = torch.randn(x["image"].shape, generator=g).to(x["image"].device)
            x["image"] = (x["image"] + 2 * noise * n).clamp_(-1, 1)
        with amp_ctx():
            out = forward_batch(model, x)
        logits.append(out["logits"].float().cpu())
        labels.append(x["label"].cpu())
        if "embedding" in out:
            embs.append(out["embedding"].float().cpu())
    model.train()
    if not logits:
        raise FerdataError("the evaluation set is empty")
    return (torch.cat(logits).numpy(), torch.cat(labels).numpy(),
            torch.cat(embs).numpy() if embs else None)


def report(logits, labels, classes, emb=None) -> dict:
    rep = classification_report(labels, logits.argmax(1), classes=classes, scores=logits)
    if emb is not None and len(emb) > 5:
        rep["retrieval_top5"] = float(retrieval_topk_accuracy(emb, labels, k=min(5, len(emb) - 1)))
    return rep


# ---------------------------------------------------------------- fit

def _amp_ctx(cfg: TrainConfig, device):
    import contextlib

    if cfg.amp == "none":
        return contextlib.nullcontext
    if device.type != "cuda":
        if cfg.amp == "bf16":
            return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    return lambda: torch.autocast("cuda", dtype=dtype)


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FerdataError(f"{path}: checkpoint does not exist")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt files
        raise FerdataError(f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ck, dict) or ck.get("ckpt_version") != CKPT_VERSION or "model" not in ck:
        raise FerdataError(f"{path}: not a ferdata checkpoint (version {CKPT_VERSION})")
    return ck


def fit(cfg: TrainConfig, out, resume: bool = False,
        on_step: Optional[Callable[[dict], None]] = None) -> dict:
    """Train ``cfg.model`` per ``cfg``; returns the final evaluation dict."""
    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rank, world, local_rank = _dist()
    device = resolve_device(cfg.device if world == 1 or cfg.device != "auto" else
                            (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"))
    seed_everything(cfg.seed)
    inputs = model_inputs(cfg.model, **cfg.model_kwargs)
    data = tdata.build(cfg, out, inputs, rank=rank, world_size=world)
    classes = data.classes
    lut = torch.full((256,), -1, dtype=torch.long)
    for i, c in enumerate(classes):
        lut[CLASS_INDEX[c]] = i
    prep = BatchPrep(inputs, lut, device, cfg.channels_last and device.type == "cuda", data.lbp_key)

    model = create_model(cfg.model, num_classes=len(classes), **cfg.model_kwargs).to(device)
    if cfg.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    n_params = count_parameters(model)
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                              weight_decay=cfg.weight_decay)
    if cfg.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    elif cfg.scheduler == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=cfg.plateau_factor,
                                                           patience=cfg.plateau_patience)
    else:
        sched = None
    class_weight = None
    if cfg.class_balance == "loss":
        counts = np.maximum(np.asarray(data.class_counts, np.float64), 1)
        class_weight = torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32, device=device)
    crit = FERAttLoss(w_cls=cfg.w_cls, w_rep=cfg.w_rep, w_att=cfg.w_att, class_weight=class_weight,
                      label_smoothing=cfg.label_smoothing).to(device)
    scaler = torch.amp.GradScaler("cuda") if (cfg.amp == "fp16" and device.type == "cuda") else None
    amp_ctx = _amp_ctx(cfg, device)

    start_epoch, best, best_epoch, history_bad = 0, -math.inf, -1, 0
    if resume:
        last = out / "last.pt"
        if not last.exists():
            raise FerdataError(f"{last}: nothing to resume (no last.pt in {out})")
        ck = load_checkpoint(last)
        runtime = ("epochs", "num_workers", "device", "noise", "compile", "eval_batch_size")
        if {k: v for k, v in ck["config"].items() if k not in runtime} != _cfg_dict(cfg, ignore=runtime):
            raise FerdataError(f"{last}: the checkpoint was made with a different configuration")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if sched is not None and ck.get("scheduler"):
            sched.load_state_dict(ck["scheduler"])
        if scaler is not None and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        _set_rng_state(ck["rng"])
        start_epoch, best, best_epoch, history_bad = ck["epoch"] + 1, ck["best"], ck["best_epoch"], ck["bad_epochs"]

    train_model = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)

    if rank == 0:
        (out / "config.json").write_text(json.dumps(
            {**_cfg_dict(cfg), "resolved": {"classes": classes, "inputs": inputs.to_dict(), "parameters": n_params,
                                            "device": str(device), "world_size": world,
                                            "train": data.describe_train, "eval": data.describe_eval}},
            indent=1, default=str))
    metrics_path = out / "metrics.jsonl"
    if not resume and rank == 0 and metrics_path.exists():
        metrics_path.unlink()

    final_epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs):
        data.set_epoch(epoch)
        model.train()
        t0 = time.perf_counter()
        wait = 0.0
        tot, n, correct, steps = 0.0, 0, 0, 0
        parts_sum: dict = {}
        it = iter(data.train_loader)
        while True:
            if cfg.max_steps_per_epoch is not None and steps >= cfg.max_steps_per_epoch:
                break
            tw = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            x = prep(batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            wait += time.perf_counter() - tw
            y = x["label"]
            with amp_ctx():
                outd = forward_batch(train_model, x)
                parts = crit(outd, y, x["image"], x.get("mask"))
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(parts["loss"]).backward()
                scaler.step(opt)
                scaler.update()
            else:
                parts["loss"].backward()
                opt.step()
            bs = y.shape[0]
            tot += float(parts["loss"].detach()) * bs
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + float(v.detach()) * bs
            correct += int((outd["logits"].argmax(1) == y).sum())
            n += bs
            steps += 1
            if on_step:
                on_step({"epoch": epoch, "step": steps, "samples": bs})
        dt = time.perf_counter() - t0
        if n == 0:
            raise FerdataError("the training set is empty (check the subject filter / fold)")
        logits, labels, emb = predict(model, data.eval_loader, prep, amp_ctx)
        rep = report(logits, labels, classes, emb)
        val_acc = rep["accuracy"]
        rec = {"epoch": epoch, "train_loss": tot / n, "train_acc": correct / n,
               **{f"train_{k}": v / n for k, v in parts_sum.items() if k != "loss"},
               "val_acc": val_acc, "val_macro_f1": rep["macro"]["f1"], "lr": opt.param_groups[0]["lr"],
               "samples_per_s": n / dt, "data_wait_fraction": wait / dt, "seconds": dt}
        if sched is not None:
            sched.step(val_acc) if cfg.scheduler == "plateau" else sched.step()
        improved = val_acc > best
        if improved:
            best, best_epoch, history_bad = val_acc, epoch, 0
        else:
            history_bad += 1
        state = {"ckpt_version": CKPT_VERSION, "config": _cfg_dict(cfg), "classes": classes,
                 "inputs": inputs.to_dict(), "model_name": cfg.model, "model_kwargs": cfg.model_kwargs,
                 "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict() if sched is not None else None,
                 "scaler": scaler.state_dict() if scaler is not None else None,
                 "rng": _rng_state(), "epoch": epoch, "best": best, "best_epoch": best_epoch,
                 "bad_epochs": history_bad, "lbp": cfg.lbp}
        if rank == 0:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            save_checkpoint(out / "last.pt", state)
            if improved:
                save_checkpoint(out / "best.pt", state)
        final_epoch = epoch
        if cfg.early_stopping and history_bad >= cfg.early_stopping:
            log.info("early stopping at epoch %d (best %.4f at %d)", epoch, best, best_epoch)
            break

    # final evaluation with the best checkpoint
    if rank != 0:
        return {}
    best_path = out / "best.pt"
    if best_path.exists():
        model.load_state_dict(load_checkpoint(best_path)["model"])
    result = evaluate_model(model, data.eval_loader, prep, amp_ctx, classes, out, noise=cfg.noise)
    result.update(best_epoch=best_epoch, epochs_run=final_epoch + 1, parameters=n_params)
    (out / "eval.json").write_text(json.dumps(result, indent=1))
    return result


def evaluate_model(model, loader, prep, amp_ctx, classes, out: Optional[Path], noise=()) -> dict:
    """Metrics (+ confusion JSON/PNG, embeddings, noise sweep) of ``model`` on ``loader``."""
    logits, labels, emb = predict(model, loader, prep, amp_ctx)
    rep = report(logits, labels, classes, emb)
    result = {"eval": rep}
    if noise:
        result["noise"] = {str(s): report(*predict(model, loader, prep, amp_ctx, noise=float(s))[:2], classes)["accuracy"]
                           for s in noise}
    if out is not None:
        out = Path(out)
        cm = np.asarray(rep["confusion_matrix"])
        (out / "confusion.json").write_text(json.dumps({"classes": classes, "matrix": cm.tolist()}))
        plot_confusion(cm, classes, out / "confusion.png")
        if emb is not None:
            np.savez_compressed(out / "embeddings.npz", embedding=emb, label=labels, logits=logits)
    return result


def _cfg_dict(cfg: TrainConfig, ignore=()) -> dict:
    d = dataclasses.asdict(cfg)
    d["noise"] = list(d["noise"])
    for k in ignore:
        d.pop(k, None)
    return json.loads(json.dumps(d, default=str))
