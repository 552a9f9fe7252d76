"""Model registry of the seeds' FER models (docs/training.md; timm-style, written from the papers).

Registered names
----------------
=====================  ==========================  ==========  ========  ==================
name                   seed                        inputs      size H×W  channels (image)
=====================  ==========================  ==========  ========  ==================
``preactresnet18``     000 §4.2 (baseline)         image       32×32     3
``feratt_cls``         000 §3.1 (FERAtt+Cls)       image       128×128   3
``feratt_rep_cls``     000 §3.1–3.3 (+Rep)         image       128×128   3
``lbp_attention``      001 §3.1–3.2                image, lbp  256×256   3 (+1 LBP)
``va_cnn``             002 §3.2 (eq. 4)            image       144×112   1
``va_cnn_symmetric``   002 §3.2 (eq. 5)            image       144×112   1
``deep_emotion``       004 §III-B (CNN + STN)      image       48×48     1
``deep_emotion_msa``   004 §III-C (+ MSA)          image       48×48     1
``vggface_stn_msa``    004 §III-D (VGG + STN+MSA)  image       48×48     1
=====================  ==========================  ==========  ========  ==================

Forward contract (uniform)
--------------------------
``model(*inputs)`` takes float tensors ``(B, C, H, W)`` in the order of
``model.inputs`` — ``model(image)`` for all models but ``lbp_attention``, which is
``model(image, lbp)`` (the LBP code image as one float channel, e.g. codes / 255).
It **always returns a dict** with at least

``"logits"``  ``(B, num_classes)`` unnormalised class scores,

plus model-specific extras (listed in ``model.outputs``):

``"embedding"``            ``(B, d)`` representation ẑ (``feratt_rep_cls``, d=64)
``"reconstruction"``       ``(B, C, H, W)`` FERAtt attention image I_att at input size
                            (compare with ``image * mask`` — :func:`ferdata.train.losses.reconstruction_loss`)
``"reconstruction_small"`` ``(B, C, 32, 32)`` I_att average-pooled: the classifier's input
``"attention"``            a one-channel attention / weight map: FERAtt σ(G_att)
                            ``(B, 1, H, W)``; LBP mask branch F_m averaged over channels
                            ``(B, 1, H/8, W/8)``; VA-CNN weight map B ``(B, 1, H/16, W/16)``
``"theta"``                ``(B, 2, 3)`` STN affine parameters (Deep-Emotion family)
``"msa_weights"``          ``(B, heads)`` MSA head weights (sum to 1)

Input contract
--------------
Each model class exposes ``inputs`` (batch field names), ``input_size`` ``(H, W)``,
``in_channels`` and ``extra_channels`` (e.g. ``{"lbp": 1}``); instances carry the
values they were built with. :func:`model_inputs` gives the same as a JSON-able
:class:`ModelInputs` from a name (without building the model) or from a model, so
the training loop can build the matching data transforms; :func:`forward_batch`
calls a model on a batch dict.

Pretrained weights
------------------
``create_model(name, pretrained="resnet34" | "vgg16" | "vgg16_bn" | "vgg_face" | PATH)``
copies the published ImageNet / VGG-Face tensors into ``feratt_cls``/``feratt_rep_cls``
(``att_encoder="resnet34"``), ``lbp_attention`` and ``vggface_stn_msa`` (``config="vgg16"``);
files are never downloaded (:mod:`ferdata.train.models.pretrained`).

Examples
--------
>>> from ferdata.train.models import create_model, list_models, model_inputs
>>> m = create_model("va_cnn", num_classes=7)
>>> model_inputs("lbp_attention").fields
('image', 'lbp')
>>> out = m(*m.example_inputs(2)); out["logits"].shape
torch.Size([2, 7])
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Tuple

import torch
from torch import nn

__all__ = [
    "register_model", "create_model", "list_models", "model_entry", "model_inputs",
    "ModelInputs", "forward_batch", "count_parameters", "import_models", "load_pretrained",
]

_REGISTRY: Dict[str, "_Entry"] = {}


@dataclass(frozen=True)
class _Entry:
    name: str
    cls: type
    defaults: Mapping[str, Any]


def register_model(name: str, **defaults: Any) -> Callable[[type], type]:
    """Class decorator registering a model class under ``name``.

    ``defaults`` are keyword arguments bound at creation (so one class can be
    registered under several names, e.g. ``va_cnn_symmetric`` = ``va_cnn`` with
    ``symmetric=True``); :func:`create_model` keywords override them. Decorators
    stack. Registering a taken name raises ``ValueError``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")

    def deco(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"model name {name!r} already registered to {_REGISTRY[name].cls.__name__}")
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"register_model({name!r}) decorates nn.Module classes, got {cls!r}")
        _REGISTRY[name] = _Entry(name, cls, dict(defaults))
        return cls

    return deco


def model_entry(name: str) -> _Entry:
    """The registry entry (class and bound defaults) of ``name``; ``KeyError`` lists the known names."""
    _load_entry_points()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}") from None


def import_models(modules) -> List[str]:
    """Import ``modules`` (dotted names) so their ``@register_model`` classes register
    (``ferdata train --import mypkg.models``); returns the names they added. A module that
    cannot be imported is one :class:`~ferdata.errors.FerdataError` naming it."""
    import importlib

    from ...errors import FerdataError

    before = set(_REGISTRY)
    for m in modules:
        try:
            importlib.import_module(m)
        except Exception as exc:  # noqa: BLE001 - the user's module: report it in one line
            raise FerdataError(f"--import {m}: cannot import it ({type(exc).__name__}: {exc})") from exc
    return sorted(set(_REGISTRY) - before)


_ENTRY_POINTS_LOADED = False


def _load_entry_points() -> None:
    """Models that installed packages declare in the ``ferdata.models`` entry-point group
    (each entry point names a module to import), loaded once, on first lookup."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="ferdata.models"):
        try:
            ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must not hide the built-in models
            import logging

            logging.getLogger(__name__).warning("entry point %s (%s) not loaded: %s", ep.name, ep.value, exc)


def list_models(pattern: str | None = None) -> List[str]:
    """Sorted registered names, optionally filtered by a shell-style ``pattern`` (``"feratt*"``)."""
    _load_entry_points()
    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def create_model(name: str, num_classes: int = 8, pretrained: str | None = "none", **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.
    num_classes : int
        Output classes (default 8: the canonical FER+ order of :mod:`ferdata.labels`).
    pretrained : str
        ``"none"`` (default), a weight file in its published layout, or a known name
        (``resnet34``, ``vgg16``, ``vgg16_bn``, ``vgg_face``) looked up in
        ``$TORCH_HOME/hub/checkpoints``; never downloaded. What loads into which model:
        :mod:`ferdata.train.models.pretrained`. The load report (file, sha256, loaded,
        unused, missing keys) is ``model.pretrained_report`` (None without weights).
    **kwargs
        Model options (see each class's docstring), e.g. ``input_size=(64, 64)``,
        ``in_channels=3``, ``width_mult=0.25``.
    """
    entry = model_entry(name)
    kw = {**entry.defaults, **kwargs}
    model = entry.cls(num_classes=num_classes, **kw)
    model.model_name = name
    model.pretrained_report = load_pretrained(model, pretrained, name)
    return model


@dataclass(frozen=True)
class ModelInputs:
    """What a model needs from the data pipeline (JSON-able through :meth:`to_dict`)."""

    name: str
    fields: Tuple[str, ...]                 #: batch fields, in forward's positional order
    input_size: Tuple[int, int]             #: (H, W)
    in_channels: int                        #: channels of "image"
    extra_channels: Dict[str, int] = field(default_factory=dict)   #: e.g. {"lbp": 1}
    outputs: Tuple[str, ...] = ("logits",)  #: keys of the output dict

    def channels(self, field_name: str) -> int:
        """Channels of one input field."""
        return self.in_channels if field_name == "image" else self.extra_channels[field_name]

    def to_dict(self) -> dict:
        return {"name": self.name, "fields": list(self.fields), "input_size": list(self.input_size),
                "in_channels": self.in_channels, "extra_channels": dict(self.extra_channels),
                "outputs": list(self.outputs)}


def _size(v) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def model_inputs(model_or_name, **kwargs: Any) -> ModelInputs:
    """Input requirements of a model instance, or of a registered name (+ the kwargs you
    would pass to :func:`create_model`; only ``input_size`` / ``in_channels`` matter)
    without building it."""
    if isinstance(model_or_name, nn.Module):
        m = model_or_name
        return ModelInputs(getattr(m, "model_name", type(m).__name__), tuple(m.inputs), _size(m.input_size),
                           int(m.in_channels), dict(m.extra_channels), tuple(m.outputs))
    entry = model_entry(model_or_name)
    kw = {**entry.defaults, **kwargs}
    cls = entry.cls
    size = kw.get("input_size") or cls.input_size
    ch = kw.get("in_channels") or cls.in_channels
    outputs = cls.output_keys(**kw) if hasattr(cls, "output_keys") else tuple(getattr(cls, "outputs", ("logits",)))
    return ModelInputs(entry.name, tuple(cls.inputs), _size(size), int(ch), dict(cls.extra_channels),
                       tuple(outputs))


def forward_batch(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Call ``model`` with the fields of ``batch`` it needs (``model.inputs``), in order.

    ``model`` may be wrapped (DistributedDataParallel: ``.module``; ``torch.compile``:
    ``._orig_mod``): the fields are read from the wrapped model. A missing field raises
    ``KeyError`` naming the field and the model.
    """
    inner = model
    while not hasattr(inner, "inputs") and (hasattr(inner, "module") or hasattr(inner, "_orig_mod")):
        inner = getattr(inner, "module", None) or getattr(inner, "_orig_mod")
    fields = getattr(inner, "inputs", ("image",))
    missing = [f for f in fields if f not in batch]
    if missing:
        raise KeyError(f"batch lacks field(s) {missing} needed by {getattr(model, 'model_name', type(model).__name__)}"
                       f" (needs {list(fields)}, has {sorted(batch)})")
    return model(*[batch[f] for f in fields])


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# Import the families last: their modules use ``register_model`` defined above.
from . import preact, feratt, lbp_attention, va_cnn, deep_emotion  # noqa: E402,F401
from .pretrained import load_pretrained  # noqa: E402
