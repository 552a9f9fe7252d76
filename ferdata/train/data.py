"""Data for the training loop: which renders to train on, which faces to evaluate on.

Protocols
---------
``kfold``    subject-independent k-fold over the face store's subjects
             (``folds`` groups, or ``subjects_per_fold`` — CK+ leave-10-subjects-out);
             fold ``fold`` is held out: train on renders of the other subjects'
             faces, evaluate on the real faces of the held-out subjects.
``official`` the dataset's own splits (FER2013/FER+): train on renders of faces in
             'train', evaluate on the real 'test' faces ('val' if no 'test').
``holdout``  evaluate on held-out renders (``val_data``, or for the built-in sample
             a second render with another seed): checks the loop, not generalisation
             to new people.
No subject is ever on both sides (checked).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..config import RenderConfig, TrainConfig
from ..errors import FerdataError
from ..labels import CLASS_INDEX
from ..shards.manifest import load_manifest
from .folds import check_subject_disjoint, subject_kfold


@dataclasses.dataclass
class TrainData:
    train_dataset: object
    eval_dataset: object
    train_loader: object
    eval_loader: object
    classes: list
    class_counts: list
    lbp_key: Optional[str]
    describe_train: dict
    describe_eval: dict
    sampler: object = None
    seed: int = 0

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.train_dataset, "set_epoch"):
            self.train_dataset.set_epoch(epoch)
        if self.sampler is not None and hasattr(self.sampler, "generator"):
            # the weighted sampler's draw is a function of (seed, epoch), like the shard order
            self.sampler.generator.manual_seed(int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0]))


def sample_paths(out: Path) -> tuple[Path, Path, Path, Path]:
    """Where a demo run keeps the built-in sample: faces, backgrounds, train and held-out renders."""
    base = out / "sample-data"
    return base / "faces.h5", base / "backgrounds", base / "train", base / "val"


def sample_renders(out: Path, cfg: TrainConfig) -> tuple[Path, Path, Path]:
    """Render the built-in sample for a demo run (train seed, held-out seed + 1000)."""
    from ..render.run import render
    from ..sample import make_sample

    faces, backgrounds, train, val = sample_paths(out)
    if not faces.exists():
        make_sample(faces.parent)
    rc = dict(size=cfg.sample_size, shard_size=1024)
    render(faces, backgrounds, train, RenderConfig(per_face=cfg.sample_per_face, seed=cfg.seed, **rc), workers=1)
    render(faces, backgrounds, val,
           RenderConfig(per_face=max(32, cfg.sample_per_face // 5), seed=cfg.seed + 1000, **rc), workers=1)
    return faces, train, val


def _lbp_fields(cfg: TrainConfig, inputs, manifest: dict):
    """The dataset fields that provide the LBP input: (train, eval).

    Training reads ``lbp/<name>`` when ``ferdata lbp`` added it to every shard (the
    manifest's ``lbp`` list), else computes it on the fly; evaluation on real faces
    always computes it on the fly.
    """
    if "lbp" not in inputs.fields:
        return None, None
    on_the_fly = f"lbp:{cfg.lbp}"
    stored = f"lbp/{cfg.lbp}"
    return (stored if stored in manifest.get("lbp", []) else on_the_fly), on_the_fly


def build(cfg: TrainConfig, out: Path, inputs, rank: int = 0, world_size: int = 1) -> TrainData:
    from ..facestore import FaceStore
    from ..torch import FaceStoreDataset, ShardDataset, ShardIterableDataset

    data = Path(cfg.data) if cfg.data else None
    faces = Path(cfg.faces) if cfg.faces else None
    val_data = Path(cfg.val_data) if cfg.val_data else None
    if data is None:
        if rank == 0:
            faces_s, data, val_s = sample_renders(Path(out), cfg)
        else:
            faces_s, _, data, val_s = sample_paths(Path(out))
        if world_size > 1:  # the other ranks wait for rank 0's renders
            import torch.distributed as dist

            dist.barrier()
        faces = faces or faces_s
        val_data = val_data or val_s
    manifest = load_manifest(data)
    classes = list(manifest["classes"])
    eval_on = cfg.eval_on
    if eval_on == "auto":
        eval_on = "faces" if (faces is not None and cfg.protocol != "holdout") else "renders"

    train_subjects = eval_subjects = None
    desc_train = {"shards": str(data), "samples": manifest["total_samples"]}
    if eval_on == "faces":
        if faces is None:
            raise FerdataError("eval_on=faces needs a face store (faces = ...)")
        with FaceStore(faces) as fs:
            subj, splits = fs.subjects, fs.splits
        if cfg.protocol == "kfold":
            folds = subject_kfold(subj, k=cfg.folds, subjects_per_fold=cfg.subjects_per_fold
                                  if cfg.folds is None else None, seed=cfg.seed) \
                if (cfg.folds or cfg.subjects_per_fold) else subject_kfold(subj, k=5, seed=cfg.seed)
            if not 0 <= cfg.fold < len(folds):
                raise FerdataError(f"fold {cfg.fold} out of range: {len(folds)} folds")
            fold = folds[cfg.fold]
            check_subject_disjoint(subj, fold.train, fold.test)
            eval_subjects = sorted(set(subj[fold.test]))
            train_subjects = sorted(set(subj[fold.train]))
        elif cfg.protocol == "official":
            test_name = "test" if (splits == "test").any() else "val"
            eval_idx = np.flatnonzero(splits == test_name)
            train_idx = np.flatnonzero(splits == "train")
            if len(eval_idx) == 0 or len(train_idx) == 0:
                raise FerdataError(f"{faces}: protocol=official needs 'train' and 'test'/'val' splits")
            eval_subjects = None
            desc_train["split"] = "train"
        else:
            raise FerdataError("protocol=holdout evaluates on renders: set eval_on=renders")
        if train_subjects is not None and eval_subjects is not None:
            if set(train_subjects) & set(eval_subjects):  # pragma: no cover - guarded by folds
                raise FerdataError("a subject is on both sides of the split")
            desc_train["subjects"] = len(train_subjects)
    lbp_train, lbp_eval = _lbp_fields(cfg, inputs, manifest)
    fields = ["image", "label"]
    if "reconstruction" in inputs.outputs:
        fields.append("mask")
    tfields = fields + ([lbp_train] if lbp_train else [])

    # decode + resize + gray in the workers; BatchPrep only normalises on the device
    common = dict(fields=tuple(tfields), resize=tuple(inputs.input_size), gray=inputs.in_channels == 1)
    split_kw = {}
    if cfg.protocol == "official" and eval_on == "faces":
        split_kw = dict(split="train", faces=faces)
    if cfg.class_balance == "sample":
        train_ds = ShardDataset(data, subjects=train_subjects, **split_kw, **common)
        labels = train_ds.labels
        counts = np.bincount(labels, minlength=256)
        w = 1.0 / np.maximum(counts[labels], 1)
        gen = torch.Generator().manual_seed(cfg.seed)
        sampler = torch.utils.data.WeightedRandomSampler(torch.as_tensor(w, dtype=torch.double), len(w),
                                                         generator=gen)
        ctx = "spawn" if (lbp_train and lbp_train.startswith("lbp:") and cfg.num_workers > 0) else None
        loader = torch.utils.data.DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler,
                                             num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available(),
                                             persistent_workers=cfg.num_workers > 0, drop_last=True,
                                             multiprocessing_context=ctx)
    else:
        sampler = None
        train_ds = ShardIterableDataset(data, shuffle=True, seed=cfg.seed, subjects=train_subjects,
                                        batch_size=cfg.batch_size, rank=rank, world_size=world_size,
                                        **split_kw, **common)
        # numba's OpenMP layer aborts in a forked child once the parent ran an LBP kernel:
        # workers that compute LBP on the fly are spawned
        ctx = "spawn" if (lbp_train and lbp_train.startswith("lbp:") and cfg.num_workers > 0) else None
        loader = torch.utils.data.DataLoader(train_ds, batch_size=None, num_workers=cfg.num_workers,
                                             pin_memory=torch.cuda.is_available(),
                                             persistent_workers=cfg.num_workers > 0, multiprocessing_context=ctx)
    efields = fields + ([lbp_eval] if lbp_eval else [])
    if eval_on == "faces":
        split = None
        if cfg.protocol == "official":
            split = "test" if (splits == "test").any() else "val"
        eval_ds = FaceStoreDataset(faces, fields=tuple(efields), subjects=eval_subjects, split=split,
                                   resize=tuple(inputs.input_size), gray=inputs.in_channels == 1)
        desc_eval = {"faces": str(faces), "subjects": eval_subjects, "split": split, "n": len(eval_ds)}
    else:
        if val_data is None:
            raise FerdataError("eval_on=renders needs val_data (a shard folder of held-out renders)")
        eval_ds = ShardDataset(val_data, fields=tuple(efields), resize=tuple(inputs.input_size),
                               gray=inputs.in_channels == 1)
        desc_eval = {"shards": str(val_data), "n": len(eval_ds)}
    eval_loader = torch.utils.data.DataLoader(eval_ds, batch_size=cfg.eval_batch_size, shuffle=False,
                                              num_workers=0)
    # class counts of the training selection (for class-weighted loss)
    bc = np.bincount(train_ds.labels, minlength=256)
    lab_counts = np.array([bc[CLASS_INDEX[c]] for c in classes], np.float64)
    return TrainData(train_ds, eval_ds, loader, eval_loader, classes, lab_counts.tolist(),
                     lbp_train, desc_train, desc_eval, sampler, cfg.seed)
