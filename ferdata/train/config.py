"""``TrainConfig``: one training run's settings (``docs/training.md``; recipes in ``recipes/*.toml``).

Every key is declared once, with :func:`setting`: its default, its group (data, protocol,
model, optimisation, augmentation, runtime, outputs), its bounds or choices and a one-line
help. ``validate()`` and the CLI help both read those declarations, so they cannot disagree.
Keys stay flat (``cfg.lr``, ``--set lr=…``, recipe keys as before); a recipe may also group
them in tables named after the groups (``[optimisation]`` with ``lr = 1e-4``), and
``--set optimisation.lr=1e-4`` works too. A key renamed later is listed in
:data:`RENAMED`: the old name still works and warns once.

Training's own config lives with the trainer: validating a model name needs the model
registry (torch), and ``ferdata.config`` stays a leaf that imports nothing above it.
"""
from __future__ import annotations

import dataclasses
import enum
import math
import warnings
from dataclasses import dataclass
from typing import Optional

from ..errors import FerdataError
from ..typed import TypedConfig

GROUPS = ("data", "protocol", "model", "optimisation", "augmentation", "runtime", "outputs")

#: Old key -> current key. The old name keeps working in recipes and ``--set`` and warns once.
RENAMED: dict = {}
_warned: set = set()


class TrainOn(str, enum.Enum):
    """What the training side is made of (``train_on``)."""

    RENDERS = "renders"   # shards rendered from the training faces
    FACES = "faces"       # the real faces, with online augmentation
    BOTH = "both"         # renders and real faces
    LIVE = "live"         # fresh renders every epoch (the torch renderer)

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec) -> str:
        return format(self.value, spec)


def setting(default, group: str, help: str = "", *, lo=None, hi=None, lo_open: bool = False,
            hi_open: bool = False, choices=None, items_lo=None):
    """One declared key: default, group, bounds (``lo``/``hi``, open or closed; ``items_lo``
    for every item of a list), or ``choices``; read by ``validate()`` and the CLI help."""
    assert group in GROUPS, group
    meta = {"group": group, "help": help, "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open,
            "choices": tuple(choices) if choices else None, "items_lo": items_lo}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def bound_text(meta: dict) -> str:
    """``>= 1``, ``> 0``, ``in (0, 1)``, ``in [1, 4]``, ``one of a|b`` — or '' when unbounded."""
    lo, hi = meta["lo"], meta["hi"]
    if meta["choices"]:
        return "|".join(str(c) for c in meta["choices"])
    if lo is not None and hi is not None:
        return f"in {'(' if meta['lo_open'] else '['}{lo}, {hi}{')' if meta['hi_open'] else ']'}"
    if lo is not None:
        return f"{'>' if meta['lo_open'] else '>='} {lo}"
    if hi is not None:
        return f"{'<' if meta['hi_open'] else '<='} {hi}"
    return ""


def _outside(v, meta) -> bool:
    lo, hi = meta["lo"], meta["hi"]
    if isinstance(v, float) and math.isnan(v):
        return True
    return ((lo is not None and (v <= lo if meta["lo_open"] else v < lo))
            or (hi is not None and (v >= hi if meta["hi_open"] else v > hi)))


def check_model_name(name: str, what: str = "train config") -> None:
    """Raise FerdataError unless ``name`` is a registered model (imports torch: call from
    TrainConfig.validate only, i.e. when training)."""
    from .models import list_models

    known = list_models()
    if name not in known:
        raise FerdataError(f"{what}: model {name!r} is not a registered model (known: {', '.join(known)})")


#: The validation metrics logged every epoch (``ferdata.train.engine.val_record``), any of which selects.
SELECT_METRICS = ("val_acc", "val_macro_f1", "val_macro_precision", "val_macro_recall")
_MODELS_HELP = "a registered model (ferdata.train.models.list_models())"
_TRAIN_ON = tuple(t.value for t in TrainOn)
#: Where a run's progress goes besides metrics.jsonl (``ferdata.train.loggers``).
LOGGERS = ("jsonl", "tensorboard", "csv")


@dataclass
class TrainConfig(TypedConfig):
    """A training run (``ferdata train``; recipes in recipes/*.toml set these keys)."""

    _what = "train config"

    # Declaration order is the order of config.json (unchanged); each key names its group.
    name: str = setting("run", "outputs", "run name (default run folder runs/<name>, table row)")
    model: str = setting("preactresnet18", "model", _MODELS_HELP)
    model_kwargs: dict = setting({}, "model", "keyword arguments of the model's constructor")
    pretrained: str = setting("none", "model", "initial weights: none | a weight file in its published layout | "
                              "a known name looked up in $TORCH_HOME/hub/checkpoints (resnet34, vgg16, vgg16_bn, "
                              "vgg_face); never downloaded")
    data: Optional[str] = setting(None, "data", "shard folder; none: render the built-in sample")
    faces: Optional[str] = setting(None, "data", "face store the renders were made from (faces, subjects, splits)")
    val_data: Optional[str] = setting(None, "data", "holdout: shard folder of validation renders")
    test_data: Optional[str] = setting(None, "data", "holdout: test renders; kfold/official: renders for eval_on=renders")
    lbp: str = setting("circle_P8_R1", "model", "LBP variant for models with an lbp input (shard or on the fly)")
    protocol: str = setting("kfold", "protocol", "kfold (subject-independent) | official (dataset splits) | holdout",
                            choices=("kfold", "official", "holdout"))
    folds: Optional[int] = setting(None, "protocol", "k for kfold (default 5 unless subjects_per_fold)", lo=2)
    subjects_per_fold: Optional[int] = setting(None, "protocol", "e.g. 10 for CK+ leave-10-subjects-out", lo=1)
    fold: int = setting(0, "protocol", "which fold this run trains and tests", lo=0)
    val_subjects: Optional[int] = setting(None, "protocol", "kfold: subjects held out of training for validation",
                                          lo=1)
    val_fraction: float = setting(0.1, "protocol", "kfold: else this fraction of the training subjects (>= 1)",
                                  lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    train_on: TrainOn = setting(TrainOn.RENDERS, "data", "what the training side is made of", choices=_TRAIN_ON)
    backgrounds: Optional[str] = setting(None, "data", "live: COCO root / image folder (default: the sample's)")
    live_render: dict = setting({}, "data", "live: RenderConfig keys (size default sample_size)")
    live_epoch_size: Optional[int] = setting(None, "data", "live: renders per epoch (default 64 per training face)",
                                             lo=1)
    holdout_same_faces: bool = setting(False, "protocol", "holdout: allow train/val/test renders of the same faces "
                                       "(measures render generalisation, not FER; recorded and flagged)")
    eval_on: str = setting("auto", "protocol", "faces | renders | auto (faces when a face store is given)",
                           choices=("auto", "faces", "renders"))
    augment: str = setting("none", "augmentation", "online augmentation of real faces: none | seed001 | seed002 | seed004",
                           choices=("none", "seed001", "seed002", "seed004"))
    illumination: str = setting("none", "data", "illumination normalisation of every image, training and evaluation "
                                "alike: none | diffusion (isotropic diffusion, seed 002 §4.2; ferdata.train.illumination)",
                                choices=("none", "diffusion"))
    select_metric: str = setting("val_macro_f1", "protocol", "model selection metric (logged every epoch)",
                                 choices=SELECT_METRICS)
    classes: Optional[list] = setting(None, "protocol", "keep only these classes (e.g. VA-CNN drops contempt)")
    neutral_subjects: Optional[int] = setting(None, "protocol", "neutral: first frame of N seeded subjects (CK+: 33)",
                                              lo=1)
    intensity: Optional[int] = setting(None, "protocol", "BU-3DFE: expressive faces of this intensity + one neutral",
                                       lo=1, hi=4)
    epochs: int = setting(60, "optimisation", "training epochs", lo=1)
    batch_size: int = setting(200, "optimisation", "samples per step", lo=1)
    optimizer: str = setting("adam", "optimisation", "adam | sgd (nesterov)", choices=("adam", "sgd"))
    lr: float = setting(1e-4, "optimisation", "learning rate", lo=0.0, lo_open=True)
    momentum: float = setting(0.9, "optimisation", "SGD momentum", lo=0.0, hi=1.0, hi_open=True)
    weight_decay: float = setting(0.0, "optimisation", "L2 weight decay", lo=0.0)
    scheduler: str = setting("none", "optimisation", "none | cosine | plateau (on select_metric)",
                             choices=("none", "cosine", "plateau"))
    plateau_patience: int = setting(5, "optimisation", "plateau: epochs without improvement before a cut", lo=0)
    plateau_factor: float = setting(0.1, "optimisation", "plateau: lr factor of a cut", lo=0.0, hi=1.0,
                                    lo_open=True, hi_open=True)
    early_stopping: int = setting(0, "optimisation", "epochs without select_metric improvement (0 = off)", lo=0)
    class_balance: str = setting("none", "optimisation", "none | loss (class-weighted CE) | sample (weighted sampler)",
                                 choices=("none", "loss", "sample"))
    w_cls: float = setting(1.0, "optimisation", "FERAtt loss weight: classification", lo=0.0)
    w_rep: float = setting(1.0, "optimisation", "FERAtt loss weight: representation", lo=0.0)
    w_att: float = setting(1.0, "optimisation", "FERAtt loss weight: attention", lo=0.0)
    cls_loss: str = setting("ce", "optimisation", "ce | bce (FERAtt's paper states BCE; its code uses CE)",
                            choices=("ce", "bce"))
    rep_sigma: float = setting(1.0, "optimisation", "sigma of the Gaussian manifold loss (FERAtt's code: 1.0)",
                               lo=0.0, lo_open=True)
    att_target: str = setting("clean", "optimisation", "FERAtt attention target: masked (eq. 1: input * mask) | "
                              "released (the warped face under its mask, before luminance matching: the released "
                              "code's x_org) | clean (the luminance-matched face on black)",
                              choices=("clean", "masked", "released"))
    att_loss: str = setting("paper", "optimisation", "FERAtt attention loss: paper (pixel-wise MSE, §3.1) | released "
                            "(the released Attloss: 5 mean tanh(3|d|), clamped at 30) | released_mse (its AttMSEloss: "
                            "10 MSE clamped at 30, defined there but not used)",
                            choices=("paper", "released", "released_mse"))
    label_smoothing: float = setting(0.0, "optimisation", "label smoothing of CE", lo=0.0, hi=1.0, hi_open=True)
    max_steps_per_epoch: Optional[int] = setting(None, "optimisation", "cap on steps per epoch", lo=1)
    seed: int = setting(0, "runtime", "seed of weights, order and augmentation", lo=0)
    device: str = setting("auto", "runtime", "auto | cpu | cuda | cuda:N")
    amp: str = setting("none", "runtime", "none | bf16 | fp16 (CUDA)", choices=("none", "bf16", "fp16"))
    channels_last: bool = setting(False, "runtime", "channels-last memory format")
    compile: bool = setting(False, "runtime", "torch.compile the model")
    num_workers: Optional[int] = setting(None, "runtime", "DataLoader workers (none: automatic, 0 on CPU where the "
                                         "decode threads use every core, 2 on CUDA)", lo=0)
    eval_batch_size: int = setting(256, "runtime", "samples per evaluation batch", lo=1)
    noise: tuple = setting((), "augmentation", "noise sweep sigmas of the final test evaluation", items_lo=0.0)
    noise_train: tuple = setting((), "augmentation", "FERAtt §4.4: fine-tune from best.pt with each sigma, then test",
                                 items_lo=0.0)
    noise_epochs: int = setting(5, "augmentation", "epochs of each noise fine-tuning", lo=1)
    overwrite: bool = setting(False, "outputs", "fit into a folder that already holds a run: replace it")
    sample_per_face: int = setting(300, "data", "renders per face when data is none (built-in sample)", lo=1)
    sample_size: int = setting(64, "data", "render size when data is none (built-in sample)", lo=16, hi=4096)
    logger: str = setting("jsonl", "outputs", "where progress goes besides metrics.jsonl (always written): jsonl "
                          "(nothing more) | tensorboard (per-step loss and lr, validation metrics, confusion image, "
                          "hparams; the tensorboard extra) | csv (steps.csv, epochs.csv)", choices=LOGGERS)

    def __post_init__(self):
        super().__post_init__()
        if self.train_on in _TRAIN_ON:
            object.__setattr__(self, "train_on", TrainOn(self.train_on))

    @classmethod
    def declared(cls, name: str) -> dict:
        """The declaration of key ``name`` (group, help, bounds, choices)."""
        return dict(cls.__dataclass_fields__[name].metadata)

    @classmethod
    def groups(cls) -> dict:
        """``{group: [keys]}`` in declaration order."""
        out = {g: [] for g in GROUPS}
        for f in dataclasses.fields(cls):
            out[f.metadata["group"]].append(f.name)
        return out

    @classmethod
    def help_text(cls, name: str) -> str:
        """``help [bounds; default]`` of key ``name``, as the CLI shows it."""
        f = cls.__dataclass_fields__[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        bound = bound_text(f.metadata)
        return f"{f.metadata['help']} [{bound + '; ' if bound else ''}default {default}]"

    def validate(self) -> "TrainConfig":
        for f in dataclasses.fields(self):
            self._check_declared(f.name, f.metadata)
        self._check_together()
        return self

    def _check_declared(self, k: str, meta) -> None:
        v = getattr(self, k)
        if v is None:
            return
        if meta["choices"] and v not in meta["choices"]:
            raise FerdataError(f"train config: {k} must be {bound_text(meta)}, got {str(v)!r}")
        if meta["lo"] is not None or meta["hi"] is not None:
            if _outside(v, meta):
                raise FerdataError(f"train config: {k} must be {bound_text(meta)}, got {v!r}")
        if meta["items_lo"] is not None:
            for x in v:
                if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x) or x < meta["items_lo"]:
                    raise FerdataError(f"train config: {k} must hold finite numbers >= {meta['items_lo']}, got {x!r}")

    def _check_together(self) -> None:
        def bad(k, why):
            raise FerdataError(f"train config: {k} {why}")
        if self.folds is not None and self.subjects_per_fold is not None:
            bad("folds/subjects_per_fold", "give one of them, not both")
        if self.live_epoch_size is not None and self.live_epoch_size < self.batch_size:
            bad("live_epoch_size", f"({self.live_epoch_size}) is smaller than batch_size ({self.batch_size}): "
                                   "an epoch would hold no full batch")
        if self.train_on in (TrainOn.FACES, TrainOn.BOTH) and self.protocol == "holdout":
            bad("train_on", "faces/both need a face store with subjects or splits (protocol kfold or official)")


def flatten_keys(d: dict, source: str) -> dict:
    """Recipe/``--set`` keys as TrainConfig keys: group tables and ``group.key`` flattened,
    renamed keys mapped (warning once each); a key in the wrong group is an error."""
    out = {}
    groups = TrainConfig.groups()
    for k, v in d.items():
        if k in groups and isinstance(v, dict):
            for kk, vv in v.items():
                out[_key_in_group(k, kk, groups, source)] = vv
        elif isinstance(k, str) and "." in k and k.split(".", 1)[0] in groups:
            g, kk = k.split(".", 1)
            out[_key_in_group(g, kk, groups, source)] = v
        else:
            out[_current(k, source)] = v
    return out


def _key_in_group(group: str, key: str, groups: dict, source: str) -> str:
    key = _current(key, source)
    if key not in groups[group]:
        owner = next((g for g, ks in groups.items() if key in ks), None)
        where = f"it belongs to [{owner}]" if owner else f"keys of [{group}]: {', '.join(groups[group])}"
        raise FerdataError(f"{source}: {group}.{key} is not a key of [{group}] ({where})")
    return key


def _current(key: str, source: str) -> str:
    new = RENAMED.get(key)
    if new is None:
        return key
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"{source}: key {key!r} is now {new!r} (the old name still works)", FutureWarning,
                      stacklevel=3)
    return new
