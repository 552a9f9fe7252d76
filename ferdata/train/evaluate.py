"""Evaluate a checkpoint on a face store or a shard folder."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..labels import CLASS_INDEX
from .loop import BatchPrep, _amp_ctx, evaluate_model, load_checkpoint, resolve_device
from .models import ModelInputs, create_model


def evaluate_checkpoint(checkpoint, data, out, noise=(), device="auto", subjects=None, split=None,
                        batch_size: int = 256) -> dict:
    from ..config import TrainConfig
    from ..torch import FaceStoreDataset, ShardDataset

    ck = load_checkpoint(checkpoint)
    dev = resolve_device(device)
    classes = ck["classes"]
    inp = ck["inputs"]
    inputs = ModelInputs(inp["name"], tuple(inp["fields"]), tuple(inp["input_size"]), inp["in_channels"],
                         inp["extra_channels"], tuple(inp["outputs"]))
    model = create_model(ck["model_name"], num_classes=len(classes), **ck["model_kwargs"]).to(dev)
    model.load_state_dict(ck["model"])
    fields = ["image", "label"] + ([f"lbp:{ck.get('lbp', 'circle_P8_R1')}"] if "lbp" in inputs.fields else [])
    data = Path(data)
    if data.is_dir():
        ds = ShardDataset(data, fields=tuple(fields), subjects=subjects)
    else:
        ds = FaceStoreDataset(data, fields=tuple(fields), subjects=subjects, split=split)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    lut = torch.full((256,), -1, dtype=torch.long)
    for i, c in enumerate(classes):
        lut[CLASS_INDEX[c]] = i
    prep = BatchPrep(inputs, lut, dev, False, fields[-1] if len(fields) > 2 else None)
    cfg = TrainConfig(**{k: v for k, v in ck["config"].items() if k in TrainConfig.__dataclass_fields__})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res = evaluate_model(model, loader, prep, _amp_ctx(cfg, dev), classes, out, noise=noise)
    res["checkpoint"] = str(checkpoint)
    res["data"] = str(data)
    (out / "eval.json").write_text(json.dumps(res, indent=1))
    return res
