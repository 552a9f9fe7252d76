"""Evaluate a checkpoint on a face store or a shard folder, prepared exactly as in training.

The checkpoint's configuration rebuilds the run's read spec (resize, gray, the
illumination normalisation, the augmentation preset's evaluation crop, the LBP variant
computed at the read size and scaled by its largest code) and its
:class:`~ferdata.train.prep.BatchPrep`, so the numbers equal those ``fit`` reports for the
same faces. A checkpoint made before ``illumination`` existed reads as ``"none"``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig
from ..errors import FerdataError
from .augment import Augmenter
from .checkpoint import load_checkpoint, write_json
from .data import check_render_source, eval_dataset, read_spec
from .final import evaluate_model, run_label, write_pictures
from .models import ModelInputs, create_model
from .prep import BatchPrep
from .runtime import amp_ctx, resolve_device

__all__ = ["evaluate_checkpoint"]


def _config(ck: dict) -> TrainConfig:
    known = TrainConfig.__dataclass_fields__
    d = {k: v for k, v in ck["config"].items() if k in known}
    for k in ("noise", "noise_train"):
        if isinstance(d.get(k), list):
            d[k] = tuple(d[k])
    return TrainConfig(**d)


def _face_indices_of_split(shards: Path, faces, split: str) -> np.ndarray:
    from ..faces.store import FaceStore

    if faces is None:
        raise FerdataError(f"--split {split} on the shard folder {shards} needs the face store the renders were "
                           "made from (--faces, or the run's faces =)")
    check_render_source(shards, faces)
    with FaceStore(faces) as fs:
        idx = np.flatnonzero(np.asarray(fs.splits).astype(str) == split)
    if idx.size == 0:
        raise FerdataError(f"{faces}: no face in split {split!r}")
    return idx


def _dataset(data: Path, spec: dict, subjects, split, faces):
    if data.is_dir():
        fidx = _face_indices_of_split(data, faces, split) if split else None
        return eval_dataset("renders", data, spec, faces=fidx, subjects=subjects)
    return eval_dataset("faces", data, spec, split=split, subjects=subjects)


class _Counted:
    """A loader that reports each batch's size after it is consumed (``on_batch(n)``)."""

    def __init__(self, loader, on_batch):
        self.loader, self.dataset, self.on_batch = loader, loader.dataset, on_batch

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield batch
            self.on_batch(len(batch["label"]) if isinstance(batch, dict) else len(batch[0]))


def evaluate_checkpoint(checkpoint, data, out, noise=(), device="auto", subjects=None, split=None,
                        batch_size: int = 256, faces=None, on_status=None, on_batch=None) -> dict:
    """Metrics (+ confusion JSON/PNG, embeddings, noise sweep) of a checkpoint; writes ``out/eval.json``.

    ``on_status({"stage": …[, "total"]})`` names what it waits for (``"loading the checkpoint"``,
    ``"reading data"``, then ``"evaluating"`` with ``total`` = samples × (1 + noise levels),
    ``"writing figures"``); ``on_batch(n)`` after every evaluated batch."""
    status = on_status or (lambda ev: None)
    status({"stage": "loading the checkpoint"})
    ck = load_checkpoint(checkpoint)
    cfg = _config(ck)
    dev = resolve_device(device)
    classes = ck["classes"]
    i = ck["inputs"]
    inputs = ModelInputs(i["name"], tuple(i["fields"]), tuple(i["input_size"]), i["in_channels"],
                         i["extra_channels"], tuple(i["outputs"]))
    model = create_model(ck["model_name"], num_classes=len(classes), **ck["model_kwargs"]).to(dev)
    model.load_state_dict(ck["model"])
    spec = read_spec(cfg, inputs, None)
    status({"stage": "reading data"})
    ds = _dataset(Path(data), spec, subjects, split, faces or cfg.faces)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    if on_batch is not None:
        loader = _Counted(loader, on_batch)
    prep = BatchPrep(inputs, classes, dev, spec, Augmenter(cfg.augment, inputs.input_size, cfg.seed),
                     lbp=cfg.lbp if "lbp" in inputs.fields else None, att_target=cfg.att_target)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    status({"stage": "evaluating", "total": len(ds) * (1 + len(noise))})
    res = evaluate_model(model, loader, prep, amp_ctx(cfg.amp, dev), classes, out, noise=noise, seed=cfg.seed,
                         name=run_label(cfg.name, Path(checkpoint).parent), split=split or "all faces")
    result = {"eval": res["report"], "checkpoint": str(checkpoint), "data": str(data), "split": split}
    if "noise" in res:
        result["noise"] = res["noise"]
    write_json(out / "eval.json", result)
    status({"stage": "writing figures"})
    write_pictures(out, seed=cfg.seed)
    return result
