"""Data of a run: the :class:`~ferdata.train.split.Split` made into train / val / test loaders.

``build(cfg, out, inputs)`` resolves the split once (:func:`ferdata.train.split.resolve_split`),
then each side independently:

* **train** — ``train_on = "renders"``: the renders of the training side's faces
  (``data``, selected by face index: a val/test subject's renders are never read);
  ``"faces"``: the real faces of the training side (online augmentation ``augment``
  runs on the device, :mod:`ferdata.train.augment`); ``"both"``: the two together;
* **val / test** — ``eval_on = "faces"``: the real faces of that side; ``"renders"``:
  renders of that side's faces only (from ``test_data`` when given — e.g. a separate
  2,000-image synthetic test render — else from ``data``); ``holdout``: the
  ``val_data`` / ``test_data`` folders.

Every dataset decodes, resizes and converts to gray the same way (``read_spec``),
which ``ferdata eval`` reuses, so a checkpoint is evaluated exactly as it was validated;
the spec also carries ``illumination``, applied to every image by the one ``BatchPrep``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..config import RenderConfig
from .config import TrainConfig
from ..errors import FerdataError
from ..labels import CLASS_INDEX, CLASSES
from ..shards.manifest import complete_shards, load_manifest
from .augment import Augmenter, load_size
from .clean import FaceClean, RenderClean
from .sampler import EpochSampler
from .split import Split, resolve_split

__all__ = ["TrainData", "build", "read_spec", "eval_dataset", "sample_paths", "sample_renders",
           "train_loader_workers"]


@dataclasses.dataclass
class TrainData:
    split: Split
    classes: list
    class_counts: list
    train_dataset: object
    train_loader: object
    val_loader: object
    test_loader: object
    spec: dict                       # read_spec: resize / gray / lbp fields
    augment: Augmenter
    describe: dict
    sampler: Optional[EpochSampler] = None

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.train_dataset, "set_epoch"):
            self.train_dataset.set_epoch(epoch)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        self.augment.set_epoch(epoch)


# ---------------------------------------------------------------- the built-in sample

def sample_paths(out: Path):
    """Where a demo run keeps the built-in sample: faces, backgrounds, train, val and test renders."""
    base = Path(out) / "sample-data"
    return base / "faces.h5", base / "backgrounds", base / "train", base / "val", base / "test"


def sample_renders(out: Path, cfg: TrainConfig):
    """Render the built-in sample: train (seed), val (seed + 1000) and test (seed + 2000) renders."""
    from ..render.run import render
    from ..render.sample import make_sample

    faces, backgrounds, train, val, test = sample_paths(out)
    if not faces.exists():
        make_sample(faces.parent)
    rc = dict(size=cfg.sample_size, shard_size=1024)
    held = max(32, cfg.sample_per_face // 5)
    for folder, seed, n in ((train, cfg.seed, cfg.sample_per_face), (val, cfg.seed + 1000, held),
                            (test, cfg.seed + 2000, held)):
        render(faces, backgrounds, folder, RenderConfig(per_face=n, seed=seed, **rc), workers=1)
    return faces, train, val, test


def _paths(cfg: TrainConfig, out: Path, rank: int, world: int):
    """(faces, data, val_data, test_data), rendering the built-in sample when neither ``data`` nor a
    face store to split is given."""
    if cfg.data or (cfg.faces and cfg.protocol != "holdout"):
        return cfg.faces, cfg.data, cfg.val_data, cfg.test_data
    if rank == 0:
        sample_renders(out, cfg)
    if world > 1:  # the other ranks wait for rank 0's renders
        import torch.distributed as dist

        dist.barrier()
    faces, _, train, val, test = sample_paths(out)
    return (cfg.faces or str(faces), str(train), cfg.val_data or str(val), cfg.test_data or str(test))


# ---------------------------------------------------------------- checks and fields

def check_render_source(data, faces) -> None:
    """Raise unless the renders in ``data`` were made from the face store ``faces``.

    By content: the face count, and every rendered sample's label equals the label of
    the face it was rendered from (``face_index``) — whatever the paths are.
    """
    import h5py

    from ..faces.store import FaceStore

    m = load_manifest(data)
    with FaceStore(faces) as fs:
        labels = fs.labels
    n = int(m.get("face_store", {}).get("faces", -1))
    if n != len(labels):
        raise FerdataError(f"{data}: rendered from a face store of {n} faces, but {faces} has {len(labels)}: "
                           "not the face store these renders were made from")
    for name in complete_shards(data, m):
        with h5py.File(Path(data) / name, "r") as f:
            fi, lab = f["face_index"][:].astype(np.int64), f["label"][:].astype(np.int64)
        if fi.size and (fi.max() >= n or (labels[fi] != lab).any()):
            raise FerdataError(f"{Path(data) / name}: its labels differ from {faces}'s faces: "
                               "not the face store these renders were made from")


def read_spec(cfg: TrainConfig, inputs, manifest: Optional[dict] = None) -> dict:
    """How every dataset of the run reads samples: resize, gray, the LBP field names, and the
    illumination normalisation that :class:`~ferdata.train.prep.BatchPrep` applies to every
    image of every side (``ferdata eval`` rebuilds this spec from the checkpoint's config)."""
    spec = {"resize": list(load_size(cfg.augment, inputs.input_size)), "gray": inputs.in_channels == 1,
            "lbp_eval": None, "lbp_train": None, "illumination": cfg.illumination}
    if "lbp" in inputs.fields:
        fly, stored = f"lbp:{cfg.lbp}", f"lbp/{cfg.lbp}"
        spec["lbp_eval"] = fly
        renders_only = cfg.train_on == "renders" and manifest is not None
        spec["lbp_train"] = stored if (renders_only and stored in manifest.get("lbp", [])) else fly
    return spec


def _classes(cfg: TrainConfig, split: Split, data) -> list:
    """The model's classes: the recipe's ``classes``, else those of the training side. Never
    read from validation or test labels (a test face of a new class adds no output; it is
    refused, naming the side, since no model of this run could predict it)."""
    if split.faces is None or split.train.faces is None:  # holdout: the training renders' classes
        return list(load_manifest(data)["classes"])
    from ..faces.store import FaceStore

    with FaceStore(split.faces) as fs:
        labels = np.asarray(fs.labels)
    present = set(labels[split.train.faces].tolist())
    wanted = set(cfg.classes) if cfg.classes else {CLASSES[i] for i in present}
    classes = [c for c in CLASSES if c in wanted]
    for side in (split.val, split.test):
        extra = sorted(set(labels[side.faces].tolist()) - {CLASS_INDEX[c] for c in classes})
        if extra:
            n = int(np.isin(labels[side.faces], extra).sum())
            raise FerdataError(f"fold {cfg.fold}: the {side.name} side has {n} face(s) of "
                               f"{', '.join(CLASSES[i] for i in extra)}, a class the training side lacks; "
                               "set classes = [...] in the recipe to leave it out, or choose other folds")
    return classes


def _train_fields(cfg, inputs, spec, side: str) -> tuple:
    f = ["image", "label"] + ([spec["lbp_train"]] if spec["lbp_train"] else [])
    if "reconstruction" in inputs.outputs:
        if cfg.att_target == "masked" or side == "faces":
            f.append("mask")
        elif side == "renders":
            f += ["params", "face_index"]
    return tuple(f)


def _eval_fields(spec) -> tuple:
    return ("image", "label") + ((spec["lbp_eval"],) if spec["lbp_eval"] else ())


# ---------------------------------------------------------------- datasets

def eval_dataset(kind: str, path, spec: dict, faces=None, split=None, subjects=None):
    """A val/test dataset read exactly as in training: ``kind`` faces (face store) or renders (shards)."""
    from ..torch import FaceStoreDataset, ShardDataset

    kw = dict(fields=_eval_fields(spec), resize=tuple(spec["resize"]), gray=spec["gray"])
    if kind == "faces":
        return FaceStoreDataset(path, face_indices=faces, split=split, subjects=subjects, **kw)
    return ShardDataset(path, face_indices=faces, subjects=subjects, **kw)


def _render_transform(cfg, inputs, spec, data, faces):
    if "reconstruction" not in inputs.outputs or cfg.att_target == "masked":
        return None
    if faces is None:
        raise FerdataError(f"att_target={cfg.att_target} needs the face store the renders were made from (faces = ...)")
    c = load_manifest(data)["config"]
    return RenderClean(faces, c["size"], tuple(spec["resize"]), gray=bool(c.get("gray")) or spec["gray"],
                       render_cfg=c, released=cfg.att_target == "released")


def _train_datasets(cfg, inputs, spec, split: Split, data, world: int, rank: int):
    """(dataset, map_style) of the training side."""
    from ..torch import Decode, FaceStoreDataset, Select, ShardDataset, ShardIterableDataset

    kw = dict(resize=tuple(spec["resize"]), gray=spec["gray"])
    faces_idx = split.train.faces
    parts = []
    if cfg.train_on in ("renders", "both"):
        fields = _train_fields(cfg, inputs, spec, "renders")
        tf = _render_transform(cfg, inputs, spec, data, split.faces)
        if cfg.train_on == "renders" and cfg.class_balance != "sample":
            return ShardIterableDataset(data, select=Select(face_indices=faces_idx),
                                        decode=Decode(fields=fields, transform=tf, **kw), shuffle=True,
                                        seed=cfg.seed, batch_size=cfg.batch_size, rank=rank, world_size=world), False
        parts.append(ShardDataset(data, fields=fields, face_indices=faces_idx, transform=tf, **kw))
    if cfg.train_on in ("faces", "both"):
        fields = _train_fields(cfg, inputs, spec, "faces")
        tf = FaceClean() if ("reconstruction" in inputs.outputs and cfg.att_target != "masked") else None
        parts.append(FaceStoreDataset(split.faces, fields=fields, face_indices=faces_idx, transform=tf, **kw))
    if len(parts) == 2:  # both give image, label[, lbp][, clean | mask]
        ds = torch.utils.data.ConcatDataset(parts)
        ds.labels = np.concatenate([p.labels for p in parts])
        return ds, True
    return parts[0], True


def _live_train(cfg, inputs, split: Split, out: Path, device, world: int, rank: int):
    """``train_on = "live"``: fresh torch renders of the training side's faces every epoch, on
    the training device (docs/torch.md, "Live renders")."""
    from ..torch.live import LiveRenderLoader
    from ..torch.render import TorchRenderer

    faces = split.faces
    backgrounds = cfg.backgrounds or (str(sample_paths(out)[1]) if faces == str(sample_paths(out)[0]) else None)
    if faces is None or backgrounds is None:
        raise FerdataError("train_on=live needs the face store (faces = ...) and backgrounds = a COCO root or "
                           "image folder (the built-in sample's are used when neither data nor faces is given)")
    rc = {"size": cfg.sample_size, **cfg.live_render, "seed": cfg.seed, "per_face": 1 << 40}
    tr = TorchRenderer(faces, backgrounds, RenderConfig(**rc), device=device or "cpu")
    clean = "reconstruction" in inputs.outputs and cfg.att_target != "masked"
    if clean and cfg.att_target == "released":
        raise FerdataError("att_target=released is made from shards (train_on=renders) and real faces; the live "
                           "torch renderer gives att_target=clean or masked")
    return LiveRenderLoader(tr, cfg.batch_size, cfg.live_epoch_size, seed=cfg.seed, rank=rank, world_size=world,
                            clean=clean, face_indices=split.train.faces)


#: workers of the training loader on a CUDA device when ``num_workers`` is automatic (None)
CUDA_WORKERS = 2


def train_loader_workers(num_workers, device=None) -> int:
    """DataLoader workers of the training loader: ``num_workers``, or when it is None
    (automatic) 0 on a CPU device and :data:`CUDA_WORKERS` on any other.

    On CPU no worker processes is the fast path (docs/torch.md, "Threads or workers"): the
    batch is decoded in the training process on every core (the dataset's decode threads)
    and never crosses processes, where each batch a worker sends costs fresh shared memory
    (measured ~2x the one-thread decode floor's throughput, ``benchmarks/loader_cpu.py``).
    On a GPU the workers overlap decoding with the device's work.
    """
    if num_workers is not None:
        return int(num_workers)
    return 0 if _device(device).type == "cpu" else CUDA_WORKERS


def _device(device) -> torch.device:
    return torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def _loader(ds, cfg, batch_size, sampler=None, lbp_fly=False, batched=False, device=None):
    workers = train_loader_workers(cfg.num_workers, device)
    ctx = "spawn" if (lbp_fly and workers > 0) else None  # numba's OpenMP aborts in forked children
    return torch.utils.data.DataLoader(ds, batch_size=None if batched else batch_size, sampler=sampler,
                                       shuffle=False, num_workers=workers,
                                       pin_memory=_device(device).type == "cuda",
                                       persistent_workers=workers > 0, multiprocessing_context=ctx)


def _eval_side(cfg, side, split: Split, spec, eval_on, data, test_data):
    if split.protocol == "holdout":
        return eval_dataset("renders", side.renders, spec)
    if eval_on == "faces":
        return eval_dataset("faces", split.faces, spec, faces=side.faces)
    return eval_dataset("renders", test_data or data, spec, faces=side.faces)


def _class_counts(labels, classes) -> list:
    bc = np.bincount(np.asarray(labels, np.int64), minlength=256)
    return [float(bc[CLASS_INDEX[c]]) for c in classes]


def build(cfg: TrainConfig, out: Path, inputs, rank: int = 0, world_size: int = 1, device=None) -> TrainData:
    """Resolve the split once and make the three loaders (see the module docstring)."""
    faces, data, val_data, test_data = _paths(cfg, Path(out), rank, world_size)
    split = resolve_split(cfg, faces=faces, data=data, val_data=val_data, test_data=test_data,
                          builtin_sample=not (cfg.data or (cfg.faces and cfg.protocol != "holdout")))
    eval_on = cfg.eval_on if cfg.eval_on != "auto" else ("renders" if split.protocol == "holdout" else "faces")
    if split.protocol == "holdout" and eval_on == "faces":
        raise FerdataError("protocol=holdout evaluates on renders (val_data, test_data): set eval_on=renders")
    uses_renders = cfg.train_on in ("renders", "both") or eval_on == "renders"
    if uses_renders and not data:
        raise FerdataError(f"train_on={cfg.train_on}, eval_on={eval_on}: needs renders (data = a shard folder "
                           "rendered from the face store)")
    if split.protocol != "holdout" and uses_renders:
        check_render_source(data, split.faces)
        if test_data and eval_on == "renders":
            check_render_source(test_data, split.faces)
    manifest = load_manifest(data) if cfg.train_on in ("renders", "both") else None
    spec = read_spec(cfg, inputs, manifest)
    classes = _classes(cfg, split, data)
    if cfg.train_on == "live":
        train_ds, map_style = _live_train(cfg, inputs, split, Path(out), device, world_size, rank), False
    else:
        train_ds, map_style = _train_datasets(cfg, inputs, spec, split, data, world_size, rank)
    sampler = None
    if map_style:
        w = None
        if cfg.class_balance == "sample":
            counts = np.bincount(train_ds.labels, minlength=256)
            w = 1.0 / np.maximum(counts[train_ds.labels], 1)
        sampler = EpochSampler(len(train_ds), weights=w, seed=cfg.seed, rank=rank, world_size=world_size)
    lbp_fly = bool(spec["lbp_train"] and spec["lbp_train"].startswith("lbp:"))
    train_loader = (train_ds if cfg.train_on == "live" else
                    _loader(train_ds, cfg, cfg.batch_size, sampler, lbp_fly, batched=not map_style,
                            device=device))
    loaders = []
    for side in (split.val, split.test):
        ds = _eval_side(cfg, side, split, spec, eval_on, data, test_data)
        loaders.append(torch.utils.data.DataLoader(ds, batch_size=cfg.eval_batch_size, shuffle=False, num_workers=0))
    describe = {"split": split.describe(), "train_on": cfg.train_on, "eval_on": eval_on, "data": data,
                "faces": split.faces, "val_n": len(loaders[0].dataset), "test_n": len(loaders[1].dataset),
                "train_n": len(train_ds) if map_style else train_ds.num_samples}
    counts = _class_counts(train_ds.labels, classes)
    present = [c for c, n in zip(classes, counts) if n > 0]
    if len(present) < 2:
        raise FerdataError(f"the training side holds {len(present)} class(es) ({', '.join(present) or 'none'}): "
                           "accuracy would be meaningless; check classes, the fold and the composition")
    return TrainData(split, classes, counts, train_ds, train_loader,
                     loaders[0], loaders[1], spec, Augmenter(cfg.augment, inputs.input_size, cfg.seed),
                     describe, sampler)
