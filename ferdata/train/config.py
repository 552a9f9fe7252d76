"""``TrainConfig``: one training run's settings (``docs/training.md``; recipes in ``recipes/*.toml``).

Training's own config lives with the trainer: validating a model name needs the model
registry (torch), and ``ferdata.config`` stays a leaf that imports nothing above it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from ..errors import FerdataError
from ..typed import TypedConfig


def check_model_name(name: str, what: str = "train config") -> None:
    """Raise FerdataError unless ``name`` is a registered model (imports torch: call from
    TrainConfig.validate only, i.e. when training)."""
    from .models import list_models

    known = list_models()
    if name not in known:
        raise FerdataError(f"{what}: model {name!r} is not a registered model (known: {', '.join(known)})")


@dataclass
class TrainConfig(TypedConfig):
    """A training run (``ferdata train``; recipes in recipes/*.toml set these keys)."""

    _what = "train config"

    name: str = "run"
    model: str = "preactresnet18"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    # data: shards to train on; a face store of real faces (faces/subjects/splits)
    data: Optional[str] = None          # shard folder; None: render the built-in sample
    faces: Optional[str] = None         # face store the renders were made from (real faces, subjects, splits)
    val_data: Optional[str] = None      # holdout: shard folder of validation renders
    test_data: Optional[str] = None     # holdout: test renders; kfold/official: renders for eval_on=renders
    lbp: str = "circle_P8_R1"           # LBP variant for models with an "lbp" input (from the shard or on the fly)
    # protocol (docs/training.md): three disjoint sides train / val / test, built once
    protocol: str = "kfold"             # kfold (subject-independent) | official (dataset splits) | holdout
    folds: Optional[int] = None         # k for kfold (default 5 when subjects_per_fold is not set either)
    subjects_per_fold: Optional[int] = None  # e.g. 10 for CK+ leave-10-subjects-out (not with folds)
    fold: int = 0
    val_subjects: Optional[int] = None  # kfold: subjects held out of the training side for validation
    val_fraction: float = 0.1           # kfold: else this fraction of the training side's subjects (>= 1)
    train_on: str = "renders"           # renders | faces (real faces + online augmentation) | both | live
    backgrounds: Optional[str] = None   # live: COCO root / image folder (default: the built-in sample's)
    live_render: dict = dataclasses.field(default_factory=dict)  # live: RenderConfig keys (size default sample_size)
    live_epoch_size: Optional[int] = None  # live: renders per epoch (default: 64 per training face)
    eval_on: str = "auto"               # faces | renders | auto (faces when a face store is given, not holdout)
    augment: str = "none"               # online augmentation of real faces: none | seed001 | seed002 | seed004
    select_metric: str = "val_macro_f1"  # model selection (best.pt, plateau, early stopping): val_* key
    # dataset composition (a selection over the face store; docs/training.md)
    classes: Optional[list] = None      # keep only these classes (e.g. VA-CNN drops contempt)
    neutral_subjects: Optional[int] = None  # neutral: first frame of N seeded-random subjects (FERAtt CK+: 33)
    intensity: Optional[int] = None     # BU-3DFE: expressive faces of this intensity (1-4) + one neutral each
    # optimisation
    epochs: int = 60
    batch_size: int = 200
    optimizer: str = "adam"             # adam | sgd (nesterov)
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "none"             # none | cosine | plateau (on select_metric)
    plateau_patience: int = 5
    plateau_factor: float = 0.1
    early_stopping: int = 0             # epochs without select_metric improvement (0 = off)
    class_balance: str = "none"         # none | loss (class-weighted CE) | sample (weighted sampler)
    w_cls: float = 1.0                  # FERAtt loss weights (terms a model lacks are skipped)
    w_rep: float = 1.0
    w_att: float = 1.0
    cls_loss: str = "ce"                # ce | bce (FERAtt's paper states BCE; its code uses CE)
    rep_sigma: float = 1.0              # sigma of the Gaussian manifold loss (FERAtt's code: 1.0)
    att_target: str = "clean"           # clean (the face on black, FERAtt's x_org) | masked (input * mask)
    label_smoothing: float = 0.0
    max_steps_per_epoch: Optional[int] = None
    # runtime
    seed: int = 0
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    amp: str = "none"                   # none | bf16 | fp16 (CUDA)
    channels_last: bool = False
    compile: bool = False
    num_workers: int = 2
    eval_batch_size: int = 256
    noise: tuple = ()                   # noise sweep sigmas for the final test evaluation
    noise_train: tuple = ()             # FERAtt §4.4: fine-tune from best.pt with noise sigma, then test (each)
    noise_epochs: int = 5               # epochs of each noise fine-tuning
    overwrite: bool = False             # fit into a folder that already holds a run: replace it
    sample_per_face: int = 300          # renders per face when data is None (built-in sample)
    sample_size: int = 64

    _CHOICES = {"optimizer": ("adam", "sgd"), "scheduler": ("none", "cosine", "plateau"),
                "protocol": ("kfold", "official", "holdout"), "eval_on": ("auto", "faces", "renders"),
                "train_on": ("renders", "faces", "both", "live"), "augment": ("none", "seed001", "seed002", "seed004"),
                "class_balance": ("none", "loss", "sample"), "amp": ("none", "bf16", "fp16"),
                "cls_loss": ("ce", "bce"), "att_target": ("clean", "masked")}

    def validate(self) -> "TrainConfig":
        def bad(k, why):
            raise FerdataError(f"train config: {k} {why}")
        for k, allowed in self._CHOICES.items():
            if getattr(self, k) not in allowed:
                bad(k, f"must be {'|'.join(allowed)}, got {getattr(self, k)!r}")
        if self.epochs < 1 or self.batch_size < 1:
            bad("epochs/batch_size", "must be >= 1")
        if not self.lr > 0:
            bad("lr", "must be > 0")
        if self.folds is not None and self.subjects_per_fold is not None:
            bad("folds/subjects_per_fold", "give one of them, not both")
        if self.val_subjects is not None and self.val_subjects < 1:
            bad("val_subjects", f"must be >= 1, got {self.val_subjects}")
        if not 0.0 < self.val_fraction < 1.0:
            bad("val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        if not self.select_metric.startswith("val_"):
            bad("select_metric", f"must be a validation metric (val_acc, val_macro_f1, ...), got {self.select_metric!r}")
        if self.intensity is not None and not 1 <= self.intensity <= 4:
            bad("intensity", f"must be 1..4, got {self.intensity}")
        if self.neutral_subjects is not None and self.neutral_subjects < 1:
            bad("neutral_subjects", f"must be >= 1, got {self.neutral_subjects}")
        if not self.rep_sigma > 0:
            bad("rep_sigma", f"must be > 0, got {self.rep_sigma}")
        if self.train_on in ("faces", "both") and self.protocol == "holdout":
            bad("train_on", "faces/both need a face store with subjects or splits (protocol kfold or official)")
        return self
