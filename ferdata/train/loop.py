"""The training loop: model selection on validation only, one final test.

``fit(cfg, out)`` builds the run's :class:`~ferdata.train.split.Split` once
(:mod:`ferdata.train.data`), trains ``cfg.model`` and after every epoch evaluates the
**validation** side only: ``metrics.jsonl`` gets ``train_*`` and ``val_*`` keys (never
a test key); ``best.pt``, ReduceLROnPlateau and early stopping follow
``cfg.select_metric`` (default ``val_macro_f1``; ties keep the earlier epoch). At the
end ``best.pt`` is evaluated once on the validation and the **test** side:
``eval.json`` = ``{"val": report, "test": report, "best_epoch", "epochs_run",
"parameters"[, "noise"][, "noise_train"]}`` (reports of
:func:`ferdata.train.metrics.classification_report`), plus the test confusion matrix
(JSON + PNG) and embeddings.

``resume=True`` continues from ``last.pt`` bit for bit on CPU (model, optimiser,
scheduler, RNG states; the data order is a pure function of (seed, epoch)). Without
it, a folder that already holds a run is refused unless ``cfg.overwrite``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..atomic import atomic_write_text
from .config import TrainConfig
from ..errors import FerdataError
from ..signals import check as check_stop
from . import data as tdata
from .checkpoint import (CKPT_VERSION, append_jsonl, load_checkpoint, prepare_run_folder, run_lock, save_epoch,
                         settle_best, write_json)
from .engine import predict, report, train_epoch, val_record
from .loggers import RunLogger, check_logger, open_logger
from .losses import FERAttLoss

from .models import count_parameters, create_model, model_inputs
from .prep import BatchPrep
from .runtime import (amp_ctx, dist_info, input_memory_format, resolve_device, rng_state, seed_everything,
                      set_rng_state, set_torch_threads)

log = logging.getLogger(__name__)

#: keys that may change between a run and its resume
RUNTIME_KEYS = ("epochs", "num_workers", "device", "noise", "compile", "eval_batch_size", "overwrite",
                "noise_train", "noise_epochs", "logger")


@dataclasses.dataclass
class Run:
    """What one run trains: model, optimiser, schedule, loss, batch preparation."""

    cfg: TrainConfig
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: object
    crit: FERAttLoss
    scaler: object
    amp: Callable
    prep: BatchPrep
    classes: list
    inputs: object
    parameters: int


@dataclasses.dataclass
class Progress:
    """Where training stands (saved in every checkpoint)."""

    start_epoch: int = 0
    best: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped: bool = False
    last_epoch: int = -1
    global_step: int = 0     # optimiser steps over the run (the loggers' x axis)


def _cfg_dict(cfg: TrainConfig, ignore=()) -> dict:
    d = dataclasses.asdict(cfg)
    for k in ignore:
        d.pop(k, None)
    return json.loads(json.dumps(d, default=lambda v: list(v) if isinstance(v, tuple) else str(v)))


def _optimizer(cfg: TrainConfig, params):
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)


def _scheduler(cfg: TrainConfig, opt):
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.scheduler == "plateau":  # on select_metric, larger is better
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=cfg.plateau_factor,
                                                          patience=cfg.plateau_patience)
    return None


def _criterion(cfg: TrainConfig, data, device) -> FERAttLoss:
    weight = None
    if cfg.class_balance == "loss":
        counts = np.maximum(np.asarray(data.class_counts, np.float64), 1)
        weight = torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)
    return FERAttLoss(w_cls=cfg.w_cls, w_rep=cfg.w_rep, w_att=cfg.w_att, cls_kind=cfg.cls_loss,
                      class_weight=weight, label_smoothing=cfg.label_smoothing, sigma=cfg.rep_sigma,
                      att_kind=cfg.att_loss).to(device)


def setup(cfg: TrainConfig, data, inputs, device) -> Run:
    """Model, optimiser, schedule, loss and batch preparation of a run."""
    model = create_model(cfg.model, num_classes=len(data.classes), pretrained=cfg.pretrained,
                         **cfg.model_kwargs).to(device)
    cl = input_memory_format(model, device, cfg.channels_last) == torch.channels_last
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = _optimizer(cfg, model.parameters())
    scaler = torch.amp.GradScaler("cuda") if (cfg.amp == "fp16" and device.type == "cuda") else None
    prep = BatchPrep(inputs, data.classes, device, data.spec, data.augment, cl,
                     lbp=cfg.lbp if "lbp" in inputs.fields else None, att_target=cfg.att_target)
    return Run(cfg, model, opt, _scheduler(cfg, opt), _criterion(cfg, data, device), scaler,
               amp_ctx(cfg.amp, device), prep, data.classes, inputs, count_parameters(model))


def _state(run: Run, prog: Progress, epoch: int) -> dict:
    return {"ckpt_version": CKPT_VERSION, "config": _cfg_dict(run.cfg), "classes": run.classes,
            "inputs": run.inputs.to_dict(), "model_name": run.cfg.model, "model_kwargs": run.cfg.model_kwargs,
            "model": run.model.state_dict(), "optimizer": run.opt.state_dict(),
            "scheduler": run.sched.state_dict() if run.sched is not None else None,
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "rng": rng_state(), "epoch": epoch, "best": prog.best, "best_epoch": prog.best_epoch,
            "bad_epochs": prog.bad_epochs, "stopped": prog.stopped, "lbp": run.cfg.lbp,
            "global_step": prog.global_step}


def resume_from(run: Run, out: Path) -> Progress:
    """Load ``out/last.pt`` into ``run``; the same configuration (but RUNTIME_KEYS) is required."""
    last = out / "last.pt"
    ck = load_checkpoint(last)
    mine, theirs = _cfg_dict(run.cfg, RUNTIME_KEYS), {k: v for k, v in ck["config"].items() if k not in RUNTIME_KEYS}
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if diff:
        raise FerdataError(f"{last}: made with a different configuration ({', '.join(diff)} differ)")
    run.model.load_state_dict(ck["model"])
    run.opt.load_state_dict(ck["optimizer"])
    if run.sched is not None and ck.get("scheduler"):
        run.sched.load_state_dict(ck["scheduler"])
    if run.scaler is not None and ck.get("scaler"):
        run.scaler.load_state_dict(ck["scaler"])
    set_rng_state(ck["rng"])
    settle_best(out, ck["best_epoch"])
    _trim_metrics(out / "metrics.jsonl", ck["epoch"])
    return Progress(ck["epoch"] + 1, ck["best"], ck["best_epoch"], ck["bad_epochs"], bool(ck.get("stopped")),
                    ck["epoch"], int(ck.get("global_step", 0)))


def _trim_metrics(path: Path, last_epoch: int) -> None:
    """Keep the metrics of the epochs the checkpoint holds (a crash may have logged one more)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break
        if rec.get("epoch", 1 << 30) <= last_epoch:
            keep.append(line)
    atomic_write_text(path, "".join(k + "\n" for k in keep))


def select(cfg: TrainConfig, prog: Progress, rec: dict, epoch: int) -> bool:
    """Update ``prog`` from this epoch's validation record; True when it is the new best (ties: earlier wins)."""
    if cfg.select_metric not in rec:
        raise FerdataError(f"select_metric={cfg.select_metric!r} is not logged; use one of "
                           f"{', '.join(k for k in rec if k.startswith('val_'))}")
    value = float(rec[cfg.select_metric])
    improved = value > prog.best
    if improved:
        prog.best, prog.best_epoch, prog.bad_epochs = value, epoch, 0
    else:
        prog.bad_epochs += 1
    return improved


def epoch_samples(data, cfg: TrainConfig) -> Optional[int]:
    """Samples this rank trains on per epoch (None when the loader cannot say)."""
    ds = data.train_dataset
    n = len(data.sampler) if data.sampler is not None else (getattr(ds, "rank_samples", None)
                                                            or getattr(ds, "num_samples", None))
    if n is None:
        return None
    return int(min(n, cfg.max_steps_per_epoch * cfg.batch_size) if cfg.max_steps_per_epoch else n)


def single_class(rep: dict) -> Optional[int]:
    """The one class index predicted for every sample of a report whose labels hold several, else None."""
    cm = np.asarray(rep["confusion_matrix"])
    predicted, true = np.flatnonzero(cm.sum(0)), np.flatnonzero(cm.sum(1))
    return int(predicted[0]) if len(predicted) == 1 and len(true) > 1 else None


def _status(on_status, stage: str, **info) -> None:
    log.info("%s", stage)
    if on_status:
        on_status({"stage": stage, **info})


def _validate(run: Run, data, rec: dict, warned: bool) -> tuple:
    """The epoch's validation: ``rec`` completed (``val_*``, ``lr``, ``val_single_class``), its report,
    and whether the one-class warning has been given (once per run)."""
    rep = report(*predict(run.model, data.val_loader, run.prep, run.amp)[:2], run.classes)
    rec.update(val_record(rep))
    rec["lr"] = run.opt.param_groups[0]["lr"]
    one = single_class(rep)
    rec["val_single_class"] = one is not None
    if one is not None and not warned:
        log.warning("epoch %d: the model predicts %s for every validation sample (flagged val_single_class in "
                    "metrics.jsonl); check lr, class_balance and the data", rec["epoch"], run.classes[one])
        warned = True
    return rep, warned


def run_epochs(run: Run, data, train_model, prog: Progress, out: Path, rank: int, on_step=None,
               on_epoch=None, logger: Optional[RunLogger] = None, on_status=None) -> Progress:
    """Train from ``prog.start_epoch``; validate, select, checkpoint after every epoch (then, on
    rank 0, ``on_epoch(record)``: the metrics.jsonl record plus ``epochs``, ``improved``, ``best_epoch``).
    ``logger`` gets every step and epoch; ``on_status`` what the run waits for (``fit``)."""
    cfg, logger, warned = run.cfg, logger or RunLogger(), False
    per = epoch_samples(data, cfg)

    def step(s):
        prog.global_step += 1
        logger.step(prog.global_step, s["loss"], s["lr"], s["epoch"])
        if on_step:
            on_step({**s, "global_step": prog.global_step, "epochs": cfg.epochs, "samples_per_epoch": per})

    workers = getattr(data.train_loader, "num_workers", 0)
    first = "starting loader workers" if workers > 0 and cfg.train_on != "live" else "reading the first batch"
    _status(on_status, first, epochs=cfg.epochs, start_epoch=prog.start_epoch, samples_per_epoch=per)
    for epoch in range(prog.start_epoch, cfg.epochs if not prog.stopped else prog.start_epoch):
        data.set_epoch(epoch)
        rec = {"epoch": epoch, **train_epoch(train_model, data.train_loader, run.prep, run.crit, run.opt,
                                             run.scaler, run.amp, epoch, cfg.max_steps_per_epoch,
                                             on_step=step)}
        logger.flush()
        _status(on_status, f"validating epoch {epoch}", epoch=epoch)
        rep, warned = _validate(run, data, rec, warned)
        improved = select(cfg, prog, rec, epoch)
        if run.sched is not None:
            run.sched.step(rec[cfg.select_metric]) if cfg.scheduler == "plateau" else run.sched.step()
        prog.last_epoch = epoch
        prog.stopped = bool(cfg.early_stopping and prog.bad_epochs >= cfg.early_stopping)
        if rank == 0:
            append_jsonl(out / "metrics.jsonl", rec)   # logs first, then the checkpoint; resume trims them
            logger.epoch(rec)
            logger.confusion(epoch, rep["confusion_matrix"], run.classes)
            save_epoch(out, _state(run, prog, epoch), improved)
            if on_epoch:
                on_epoch({**rec, "epochs": cfg.epochs, "improved": improved, "best_epoch": prog.best_epoch})
        check_stop(f"after epoch {epoch} (saved)")
        if prog.stopped:
            log.info("early stopping at epoch %d (best %s %.4f at %d)", epoch, cfg.select_metric, prog.best,
                     prog.best_epoch)
            break
    return prog


def _wrap(model, cfg: TrainConfig, world: int, device):
    m = model
    if world > 1:
        m = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(m) if cfg.compile else m


def fit(cfg: TrainConfig, out, resume: bool = False, on_step: Optional[Callable[[dict], None]] = None,
        on_epoch: Optional[Callable[[dict], None]] = None, on_status: Optional[Callable[[dict], None]] = None) -> dict:
    """Train ``cfg.model`` per ``cfg`` into ``out``; returns the eval.json dict (``{}`` on DDP ranks > 0).

    Callbacks: ``on_step`` after every optimiser step (:func:`ferdata.train.engine.train_epoch`'s
    dict plus ``global_step``, ``epochs``, ``samples_per_epoch``); ``on_epoch`` after every epoch on rank 0 (:func:`run_epochs`);
    ``on_status({"stage": …})`` when the run starts waiting for something: ``"loading data"``,
    ``"building model"``, ``"starting loader workers"`` / ``"reading the first batch"`` (with
    ``epochs``, ``start_epoch``, ``samples_per_epoch``), ``"validating epoch N"``, ``"final evaluation"``.
    """
    from .config import check_model_name

    cfg.validate()
    check_model_name(cfg.model)
    check_logger(cfg.logger)   # TensorBoard missing: one error before any work
    if cfg.pretrained != "none":  # the model takes such weights and the file is there: before any work
        from .models.pretrained import resolve_pretrained

        resolve_pretrained(cfg.model, cfg.pretrained)
    out = Path(out)
    rank, world, local_rank = dist_info()
    if resume and cfg.overwrite:
        raise FerdataError("resume and overwrite exclude each other: --resume continues the run in the folder, "
                           "--overwrite replaces it")
    device = resolve_device(cfg.device if world == 1 or cfg.device != "auto" else
                            (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"))
    threads_before = torch.get_num_threads()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    with (run_lock(out) if rank == 0 else contextlib.nullcontext()):
        if rank == 0:
            prepare_run_folder(out, resume, cfg.overwrite)
        try:
            return _fit(cfg, out, resume, rank, world, device, dict(on_step=on_step, on_epoch=on_epoch,
                                                                     on_status=on_status))
        finally:
            torch.set_num_threads(threads_before)  # the run's choice does not outlive it


def _final_metrics(res: dict) -> dict:
    """What the hparams of a run are shown against (TensorBoard's HPARAMS tab)."""
    return {"hparams/val_accuracy": res["val"]["accuracy"], "hparams/val_macro_f1": res["val"]["macro"]["f1"],
            "hparams/test_accuracy": res["test"]["accuracy"], "hparams/test_macro_f1": res["test"]["macro"]["f1"],
            "hparams/best_epoch": res["best_epoch"]}


def _fit(cfg: TrainConfig, out: Path, resume: bool, rank: int, world: int, device, hooks: dict) -> dict:
    from .final import final_evaluation

    threads = set_torch_threads(tdata.train_loader_workers(cfg.num_workers, device), device)
    seed_everything(cfg.seed)
    inputs = model_inputs(cfg.model, **cfg.model_kwargs)
    _status(hooks["on_status"], "loading data")
    data = tdata.build(cfg, out, inputs, rank=rank, world_size=world, device=device)
    _status(hooks["on_status"], "building model")
    run = setup(cfg, data, inputs, device)
    prog = resume_from(run, out) if resume else Progress()
    if rank == 0:
        write_json(out / "config.json", {**_cfg_dict(cfg), "split": data.describe["split"], "resolved": {
            "classes": data.classes, "inputs": inputs.to_dict(), "parameters": run.parameters,
            "device": str(device), "world_size": world, "data": data.describe, "read": data.spec,
            "torch_threads": threads, "memory_format": "channels_last" if run.prep.channels_last else "nchw",
            "pretrained": getattr(run.model, "pretrained_report", None)}})
    logger = (open_logger(cfg.logger, out, prog.last_epoch if resume else None, prog.global_step) if rank == 0
              else RunLogger())
    try:
        prog = run_epochs(run, data, _wrap(run.model, cfg, world, device), prog, out, rank, logger=logger, **hooks)
        if rank != 0:
            return {}
        _status(hooks["on_status"], "final evaluation")
        res = final_evaluation(run, data, out, prog)
        logger.hparams(_cfg_dict(cfg), _final_metrics(res))
        return res
    finally:
        logger.close()
