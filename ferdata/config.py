"""Dataclass configs and their TOML/JSON round trip."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import FerdataError
from .typed import TypedConfig, check_choice, check_ranges, coerce_fields

MIN_SIZE, MAX_SIZE = 16, 4096   # bounds of every image side (face store, render)


@dataclass
class IngestConfig(TypedConfig):
    """How faces are found, aligned and masked (``ferdata ingest``)."""

    _what = "ingest config"

    size: Optional[int] = None          # crop side; None: 256, or the native size of pre-cropped datasets
    forehead: float = 0.0               # raise brows by this many eye-brow distances for the mask
    upsample: int = 0                   # dlib HOG upsampling
    detector: str = "hog"               # hog | cnn | auto (CNN when HOG finds nothing)
    retry_upsample: Optional[int] = 1   # retry with this upsampling when no face is found
    detect_aligned: bool = False        # also detect landmarks on pre-cropped faces (FER2013/FER+)
    eye_weight: float = 10.0             # weight of eye corners in the alignment fit
    on_error: str = "skip"              # skip | raise

    RANGES = {"size": (MIN_SIZE, MAX_SIZE), "forehead": (0.0, 2.0), "upsample": (0, 4),
              "retry_upsample": (0, 4), "eye_weight": (0.0, None)}

    def validate(self) -> "IngestConfig":
        check_ranges(self, self.RANGES, self._what)
        check_choice(self, "on_error", ("skip", "raise"), self._what)
        return self


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict, source: str = "config"):
    """Build dataclass ``cls`` from ``data``: unknown keys and values of the wrong type
    are one error naming ``source`` (a file, ``--set``), the key and the value."""
    return cls(**coerce_fields(cls, data, source))


def config_hash(d: dict) -> str:
    """Stable short hash of a JSON-able dict."""
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def load_toml(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FerdataError(f"{path}: recipe/config file does not exist")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise FerdataError(f"{path}: invalid TOML ({exc})") from exc


@dataclass
class RenderConfig(TypedConfig):
    """Every parameter of the renderer (DESIGN.md §5; docs/rendering.md).

    Defaults reproduce FERAtt's generator (seed 000): 128×128 RGB, 9,231 renders
    per face, scale 0.8–1.2, rotation ±30°, translation ±0.2, flip, luminance ratio
    in CIELAB, photometric jitter — with a soft alpha instead of a hard paste.
    """

    _what = "render config"

    size: int = 128
    per_face: int = 9231
    seed: int = 0
    # geometry
    scale_min: float = 0.8
    scale_max: float = 1.2
    rotation: float = 30.0          # degrees, uniform in ±rotation
    translate: float = 0.2          # fraction of size, uniform in ±translate
    perspective: float = 0.0        # corner jitter as a fraction of size (0 = off)
    flip: float = 0.5               # probability of a horizontal flip
    # luminance / blending
    luminance: str = "ratio"        # ratio | reinhard | none
    lum_min: float = 0.5
    lum_max: float = 1.5
    blend: str = "alpha"            # alpha | poisson | hard
    alpha_mode: str = "gaussian"    # gaussian | distance
    erode: Optional[float] = None   # px; None: size/64
    feather: Optional[float] = None  # px; None: size/32
    # photometric augmentation
    brightness_min: float = 0.75
    brightness_max: float = 1.25
    contrast: float = 0.25          # contrast factor in 1 ± contrast
    gamma: float = 0.25             # gamma in 1 ± gamma
    blur_p: float = 0.5
    blur_sigma: float = 1.5         # max sigma at 128 px (scaled by size/128)
    noise: float = 0.05             # max noise sigma as a fraction of 255
    gray: bool = False
    # backgrounds
    exclude_categories: tuple = (1,)  # COCO category ids/names to exclude (person)
    include_categories: tuple = ()
    # shards
    shard_size: int = 8192
    encoding: Optional[str] = None  # raw | jpeg; None: jpeg at >= 96 px
    jpeg_quality: int = 95

    def resolved(self) -> "RenderConfig":
        """A copy with the automatic values filled in (what is stored)."""
        d = dataclasses.asdict(self)
        if d["erode"] is None:
            d["erode"] = self.size / 64.0
        if d["feather"] is None:
            d["feather"] = self.size / 32.0
        if d["encoding"] is None:
            from .shards.schema import default_encoding

            d["encoding"] = default_encoding(self.size)
        d["exclude_categories"] = tuple(d["exclude_categories"])
        d["include_categories"] = tuple(d["include_categories"])
        return RenderConfig(**d)

    RANGES = {
        "size": (MIN_SIZE, MAX_SIZE), "per_face": (1, None), "seed": (0, None),
        "scale_min": (1e-3, None), "scale_max": (1e-3, None), "rotation": (0.0, 180.0),
        "translate": (0.0, 1.0), "perspective": (0.0, 0.5), "flip": (0.0, 1.0),
        "lum_min": (1e-3, None), "lum_max": (1e-3, None), "erode": (0.0, None), "feather": (0.0, None),
        "brightness_min": (0.0, None), "brightness_max": (0.0, None), "contrast": (0.0, 1.0),
        "gamma": (0.0, 0.99), "blur_p": (0.0, 1.0), "blur_sigma": (0.0, None), "noise": (0.0, 1.0),
        "shard_size": (1, 2**20), "jpeg_quality": (1, 100),
    }
    CHOICES = {"luminance": ("ratio", "reinhard", "none"), "blend": ("alpha", "poisson", "hard"),
               "alpha_mode": ("gaussian", "distance"), "encoding": (None, "raw", "jpeg")}

    def validate(self) -> "RenderConfig":
        check_ranges(self, self.RANGES, self._what)
        for name, choices in self.CHOICES.items():
            check_choice(self, name, choices, self._what)
        for lo, hi in (("scale_min", "scale_max"), ("lum_min", "lum_max"), ("brightness_min", "brightness_max")):
            if getattr(self, lo) > getattr(self, hi):
                raise FerdataError(f"{self._what}: {lo} must be <= {hi}, got {getattr(self, lo)!r} > "
                                   f"{getattr(self, hi)!r}")
        return self


def check_model_name(name: str, what: str = "train config") -> None:
    """Raise FerdataError unless ``name`` is a registered model (imports torch: call from
    TrainConfig.validate only, i.e. when training)."""
    from .train.models import list_models

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
