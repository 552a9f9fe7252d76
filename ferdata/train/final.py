"""The end of a run: ``best.pt`` evaluated once on val and test; the noise studies; eval.json."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..atomic import atomic_write
from .checkpoint import load_checkpoint, settle_best, write_json
from .engine import predict, report, train_epoch
from .metrics import plot_confusion
from .plots import MAX_RETRIEVAL_IMAGES

__all__ = ["final_evaluation", "evaluate_model", "noise_finetune", "run_label"]


def evaluate_model(model, loader, prep, amp, classes, out=None, noise=(), seed: int = 0, *,
                   name: Optional[str] = None, split: Optional[str] = None) -> dict:
    """``{"report": ..., "noise": {sigma: accuracy}}`` of ``model`` on ``loader``; with ``out``,
    the confusion matrix (JSON + PNG) and the embeddings are written there. ``confusion.png``
    is titled ``"<name> · <split> · n=<N> · accuracy <acc> %"`` (``name`` defaults to the
    folder's name, ``split`` to ``"eval"``)."""
    logits, labels, emb = predict(model, loader, prep, amp)
    rep = report(logits, labels, classes, emb)
    res = {"report": rep}
    if noise:
        res["noise"] = {str(s): report(*predict(model, loader, prep, amp, noise=float(s), seed=seed)[:2],
                                       classes)["accuracy"] for s in noise}
    if out is not None:
        out = Path(out)
        cm = np.asarray(rep["confusion_matrix"])
        write_json(out / "confusion.json", {"classes": list(classes), "matrix": cm.tolist()})
        plot_confusion(cm, classes, out / "confusion.png", run=name or out.resolve().name, split=split or "eval",
                       n=rep.get("n"), accuracy=rep.get("accuracy"))
        if emb is not None:   # with the faces (first MAX_RETRIEVAL_IMAGES) for the retrieval figure
            arrays = dict(embedding=emb, label=labels, logits=logits, **_images(loader.dataset, len(labels)))
            atomic_write(out / "embeddings.npz", lambda f: np.savez_compressed(f, **arrays))
    return res


def _images(dataset, n: int) -> dict:
    """``{"image": (n, H, W, C) uint8}`` of the evaluated samples, in loader order (small sets only)."""
    if n > MAX_RETRIEVAL_IMAGES or not hasattr(dataset, "__getitem__"):
        return {}
    imgs = [dataset[i]["image"] for i in range(n)]
    return {"image": torch.stack(imgs).permute(0, 2, 3, 1).numpy()}


def run_label(name: Optional[str], out) -> str:
    """A run's name in figure titles: the config's ``name`` and, when it differs, the folder
    (``"deep (fold-03)"``; a cv fold keeps the cv's name)."""
    folder = Path(out).resolve().name
    return f"{name} ({folder})" if name and name != folder else (name or folder)


def write_pictures(out, seed: int = 0) -> list:
    """The evaluation figures (noise.png, tsne.png, retrieval.png) the outputs allow; the paths
    written (a figure not drawn: its reason logged and kept in ``pictures.json``, docs/figures.md)."""
    from .plots import write_eval_pictures

    return write_eval_pictures(out, seed=seed)


def noise_finetune(run, data, sigma: float, epochs: int) -> dict:
    """FERAtt §4.4: fine-tune a copy of the selected model with noise ``sigma`` on the training
    inputs (same optimiser settings), then test it with the same noise. In memory only."""
    cfg = run.cfg
    model = copy.deepcopy(run.model)
    opt = type(run.opt)(model.parameters(), **run.opt.defaults)
    g = torch.Generator().manual_seed(cfg.seed + 7919)
    for e in range(epochs):
        data.set_epoch(cfg.epochs + e)
        train_epoch(model, data.train_loader, run.prep, run.crit, opt, run.scaler, run.amp, e,
                    cfg.max_steps_per_epoch, noise=float(sigma), noise_gen=g)
    val = report(*predict(model, data.val_loader, run.prep, run.amp, noise=float(sigma), seed=cfg.seed)[:2],
                 run.classes)
    test = report(*predict(model, data.test_loader, run.prep, run.amp, noise=float(sigma), seed=cfg.seed)[:2],
                  run.classes)
    return {"val_accuracy": val["accuracy"], "test_accuracy": test["accuracy"], "test_macro_f1": test["macro"]["f1"]}


def final_evaluation(run, data, out: Path, prog) -> dict:
    """Load ``best.pt``; evaluate val and test once; write and return eval.json."""
    best = Path(out) / "best.pt"
    ck = settle_best(out, prog.best_epoch)  # best.pt holds exactly the selected epoch (read once, here)
    if ck is None and best.exists():
        ck = load_checkpoint(best)
    if ck is not None:
        run.model.load_state_dict(ck["model"])
    val = report(*predict(run.model, data.val_loader, run.prep, run.amp)[:2], run.classes)
    test = evaluate_model(run.model, data.test_loader, run.prep, run.amp, run.classes, out, noise=run.cfg.noise,
                          seed=run.cfg.seed, name=run_label(run.cfg.name, out), split="test")
    result = {"val": val, "test": test["report"], "best_epoch": prog.best_epoch,
              "epochs_run": prog.last_epoch + 1, "parameters": run.parameters,
              "select_metric": run.cfg.select_metric}
    if "noise" in test:
        result["noise"] = test["noise"]
    if run.cfg.noise_train:
        result["noise_train"] = {str(s): noise_finetune(run, data, s, run.cfg.noise_epochs)
                                 for s in run.cfg.noise_train}
    write_json(Path(out) / "eval.json", result)
    write_pictures(out, seed=run.cfg.seed)
    from .attention_fig import attention_figure

    attention_figure(run.model, data.test_loader, run.prep, run.amp, run.cfg.noise, Path(out) / "attention.png",
                     seed=run.cfg.seed, title=f"{run.cfg.name}: test faces (FERAtt Fig. 8)")
    return result
