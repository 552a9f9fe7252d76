"""Pretrained initialisation as published: ImageNet ResNet34 / VGG-16 and VGG-Face files, never downloaded.

``create_model(name, pretrained=...)`` calls :func:`load_pretrained`. ``pretrained`` is
``"none"``, a path to a weight file, or a known name (:data:`PUBLISHED`) looked up as
``$TORCH_HOME/hub/checkpoints/<published file name>`` (``torch.hub.get_dir()``: ``TORCH_HOME``
defaults to ``~/.cache/torch``; nothing is ever downloaded). A known name wins over a file
of that name in the working directory.

What loads into what (:data:`TAKES`; the file's layout is read from its keys):

===================  =======================================  =========================================
model                file                                     into
===================  =======================================  =========================================
``feratt_cls``,      ``resnet34-b627a593.pth`` (torchvision)  ``attention_net.encoder.<key>`` for every
``feratt_rep_cls``                                            key but ``fc.*`` — by name (needs
                                                              ``att_encoder="resnet34"``)
``lbp_attention``    ``vgg16-397923af.pth`` or                conv1_1 … conv4_3 (the first 10 of 13)
                     ``vgg16_bn-6c64b313.pth``                into ``image_stream.front`` and, the same
                                                              tensors, ``lbp_stream.front``
``vggface_stn_msa``  ``vgg_face_dag.pth`` (``conv1_1`` …     conv1_1 … conv5_3 into ``features`` (needs
                     ``conv5_3``, ``fc6``-``fc8``), or the    ``config="vgg16"``)
                     two VGG-16 files
===================  =======================================  =========================================

Rules, for every conv of the published file that the model has, in order:

* ``weight`` is copied exactly. The first conv of a 1-channel input (a gray image, the LBP
  stream) gets the published RGB kernels **summed** over the input channels (a gray image
  g seen as RGB (g, g, g) gives the same response); other channel counts are an error.
* Our convs are followed by BatchNorm and have no bias: the published conv ``bias`` b is
  folded into that BN's ``running_mean`` (``running_mean − b``; ``−b`` when the file has
  no BN), which gives the published conv(+BN) output exactly in eval mode.
* BN ``weight``, ``bias``, ``running_var`` (and ``running_mean``) are copied where the
  file has them (``vgg16_bn``, ``resnet34``); ``num_batches_tracked`` when present.
* Keys of the file the model does not use are ``unused`` (classifier, fc, conv5 for the
  10-conv streams); parameters and buffers of the model not set from the file are
  ``missing`` (decoder, heads, …; ``num_batches_tracked`` is not listed). Both are logged
  and returned in the report: ``{"file", "sha256", "layout", "loaded", "unused", "missing"}``.

A missing file, a file that is not a state dict, one whose keys or shapes do not fit the
model, or a model that takes no published weights is one :class:`FerdataError` line naming
the file and the published file name(s) expected in ``$TORCH_HOME/hub/checkpoints``.
Nothing is copied unless every tensor fits. Input scaling is not adapted: the models get
[-1, 1] images (ImageNet files were trained on mean/std-normalised RGB, VGG-Face on
mean-subtracted 0–255 RGB); the BN after every conv re-normalises in training.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from ...errors import FerdataError

__all__ = ["PUBLISHED", "TAKES", "VGG16_CONVS", "checkpoints_dir", "resolve_pretrained", "detect_layout",
           "vgg_layer_keys", "load_pretrained"]

log = logging.getLogger(__name__)

#: known name → the published file name (torchvision's hub names; VGG-Face: the common PyTorch
#: conversion of the Oxford VGG-Face model, keys conv1_1 … conv5_3, fc6, fc7, fc8).
PUBLISHED = {"resnet34": "resnet34-b627a593.pth", "vgg16": "vgg16-397923af.pth",
             "vgg16_bn": "vgg16_bn-6c64b313.pth", "vgg_face": "vgg_face_dag.pth"}

#: model → the layouts (known names) it takes, the paper's first.
TAKES = {"feratt_cls": ("resnet34",), "feratt_rep_cls": ("resnet34",), "lbp_attention": ("vgg16", "vgg16_bn"),
         "vggface_stn_msa": ("vgg_face", "vgg16", "vgg16_bn")}

#: VGG-16 (configuration D) convs in order, as the VGG-Face conversion names them.
VGG16_CONVS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
               "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3")
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

#: one copy: our state-dict key, how, the file's key(s)
Op = Tuple[str, str, Tuple[Optional[str], ...]]


def checkpoints_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()``, which never downloads)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _expected(takes: Sequence[str]) -> str:
    return " or ".join(PUBLISHED[k] for k in takes)


@dataclass(frozen=True)
class _Ctx:
    """Who loads what: makes the one-line errors."""

    model: str
    file: str
    takes: Tuple[str, ...]

    def fail(self, why: str) -> FerdataError:
        return FerdataError(f"pretrained weights {self.file}: {why}; {self.model} takes {_expected(self.takes)} "
                            f"(a path, or pretrained={'|'.join(self.takes)} for the file in {checkpoints_dir()} = "
                            f"$TORCH_HOME/hub/checkpoints; nothing is downloaded)")


def resolve_pretrained(model: str, pretrained: str) -> Path:
    """The weight file ``pretrained`` names for ``model`` (a path or a known name); checks
    that the model takes published weights and that the file exists. Loads nothing."""
    takes = TAKES.get(model)
    if takes is None:
        fits = ", ".join(f"{m} ({'/'.join(t)})" for m, t in TAKES.items())
        raise FerdataError(f"pretrained={pretrained!r}: model {model!r} has no published weights that fit it "
                           f"(use pretrained='none'; models that take them: {fits})")
    if pretrained in PUBLISHED:
        path = checkpoints_dir() / PUBLISHED[pretrained]
        if pretrained not in takes:
            raise _Ctx(model, str(path), takes).fail(f"{pretrained!r} does not fit {model}")
    else:
        path = Path(pretrained).expanduser()
    if not path.is_file():
        raise _Ctx(model, str(path), takes).fail("no such file")
    return path


def detect_layout(sd: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The published layout (a :data:`PUBLISHED` name) a state dict's keys follow, else None."""
    if "conv1.weight" in sd and "layer1.0.conv1.weight" in sd:
        return "resnet34"
    if "conv1_1.weight" in sd:
        return "vgg_face"
    if "features.0.weight" in sd:
        return "vgg16_bn" if "features.1.running_mean" in sd else "vgg16"
    return None


def vgg_layer_keys(layout: str) -> List[Tuple[str, Optional[str]]]:
    """The 13 (conv, BN or None) key prefixes of a VGG-16 file, in order: VGG-Face's
    ``convX_Y``, or torchvision's ``features.N`` (``make_layers``: conv [, BN], ReLU for
    each conv, a max-pool after each stage)."""
    if layout == "vgg_face":
        return [(name, None) for name in VGG16_CONVS]
    bn = layout == "vgg16_bn"
    out, i = [], 0
    for v in _VGG16_CFG:
        if v == "M":
            i += 1
            continue
        out.append((f"features.{i}", f"features.{i + 1}" if bn else None))
        i += 3 if bn else 2
    return out


def _conv_bn(module: nn.Module, prefix: str) -> List[Tuple[str, Optional[str], bool]]:
    """``(conv name, following BN name or None, conv has a bias)`` of ``module``'s convs, in order."""
    mods = list(module.named_modules(prefix=prefix))
    out = []
    for j, (name, m) in enumerate(mods):
        if isinstance(m, nn.Conv2d):
            nxt = mods[j + 1] if j + 1 < len(mods) else None
            bn = nxt[0] if nxt is not None and isinstance(nxt[1], nn.BatchNorm2d) else None
            out.append((name, bn, m.bias is not None))
    return out


def _vgg_ops(ours: List[Tuple[str, Optional[str], bool]], layout: str) -> List[Op]:
    """Copies of the first ``len(ours)`` published VGG-16 convs into ours (module docstring)."""
    ops: List[Op] = []
    for i, ((pc, pb), (oc, ob, has_bias)) in enumerate(zip(vgg_layer_keys(layout), ours)):
        ops.append((f"{oc}.weight", "first" if i == 0 else "copy", (f"{pc}.weight",)))
        if has_bias:
            ops.append((f"{oc}.bias", "copy", (f"{pc}.bias",)))
        if ob is None:
            continue
        if pb is not None:
            ops += [(f"{ob}.{p}", "copy", (f"{pb}.{p}",)) for p in ("weight", "bias", "running_var")]
            ops.append((f"{ob}.num_batches_tracked", "if_present", (f"{pb}.num_batches_tracked",)))
        if not has_bias:
            ops.append((f"{ob}.running_mean", "fold", (f"{pc}.bias", f"{pb}.running_mean" if pb else None)))
        elif pb is not None:
            ops.append((f"{ob}.running_mean", "copy", (f"{pb}.running_mean",)))
    return ops


def _architecture_problem(name: str, model: nn.Module) -> Optional[str]:
    """Why this instance cannot take published weights (an option), or None."""
    if name.startswith("feratt") and getattr(model.attention_net, "encoder_kind", None) != "resnet34":
        return "the ResNet34 weights need model_kwargs att_encoder='resnet34' (the default U-Net encoder has none)"
    if name == "vggface_stn_msa" and len(_conv_bn(model.features, "features")) != len(VGG16_CONVS):
        return "VGG weights need model_kwargs config='vgg16' (the 13 convs of VGG-16)"
    return None


def _plan(name: str, model: nn.Module, layout: str) -> List[Op]:
    """Our key ← the file's key(s), for model ``name`` and a file of ``layout``."""
    if name.startswith("feratt"):
        ops = []
        for k in model.attention_net.encoder.state_dict():
            how = "first" if k == "conv1.weight" else "if_present" if k.endswith("num_batches_tracked") else "copy"
            ops.append((f"attention_net.encoder.{k}", how, (k,)))
        return ops
    if name == "lbp_attention":
        return [op for s in ("image_stream", "lbp_stream")
                for op in _vgg_ops(_conv_bn(getattr(model, s).front, f"{s}.front"), layout)]
    return _vgg_ops(_conv_bn(model.features, "features"), layout)


def _value(how: str, src: Tuple[Optional[str], ...], sd: Mapping[str, torch.Tensor],
           target: torch.Tensor) -> torch.Tensor:
    w = sd[src[0]]
    if how == "fold":
        return -w if src[1] is None else sd[src[1]] - w
    if how == "first" and w.dim() == 4 and target.dim() == 4 and target.shape[1] == 1 and w.shape[1] == 3:
        return w.sum(dim=1, keepdim=True)            # gray input: the RGB kernels summed
    return w


def _gather(ops: List[Op], sd: Mapping[str, torch.Tensor], target: Dict[str, torch.Tensor],
            ctx: _Ctx) -> Tuple[Dict[str, torch.Tensor], set]:
    """Every value to copy, checked (keys, shapes) before anything is copied."""
    values, used = {}, set()
    for key, how, src in ops:
        if how == "if_present" and src[0] not in sd:
            continue
        lacking = [s for s in src if s is not None and s not in sd]
        if lacking:
            raise ctx.fail(f"has no {lacking[0]} (its layout does not match {ctx.model})")
        if not all(isinstance(sd[s], torch.Tensor) for s in src if s is not None):
            raise ctx.fail(f"{src[0]} is not a tensor")
        v = _value(how, src, sd, target[key])
        if tuple(v.shape) != tuple(target[key].shape):
            raise ctx.fail(f"{src[0]} has shape {tuple(sd[src[0]].shape)}, {ctx.model} needs "
                           f"{tuple(target[key].shape)} for {key} (built with other options?)")
        values[key] = v
        used.update(s for s in src if s is not None)
    return values, used


def _read(path: Path, ctx: _Ctx) -> Mapping[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:                      # unpickling, zip or tensor errors: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ctx.fail(f"not a readable torch weight file ({first})") from None
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(k, str) for k in sd):
        raise ctx.fail("is not a state dict (a mapping of key names to tensors)")
    return sd


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_pretrained(model: nn.Module, pretrained: Optional[str], name: Optional[str] = None) -> Optional[dict]:
    """Copy the published weights ``pretrained`` (``"none"``, a path or a known name) into
    ``model`` (registered as ``name``; default ``model.model_name``) per the module rules.

    Returns None for ``"none"``, else ``{"file", "sha256", "layout", "loaded", "unused",
    "missing"}`` (``layout``: the published file name whose layout the file has;
    ``loaded``/``unused``: the file's keys; ``missing``: the model's keys left at their
    initialisation). Raises :class:`FerdataError` (one line) when it does not fit.
    """
    if pretrained is None or str(pretrained).lower() in ("", "none"):
        return None
    name = name or getattr(model, "model_name", type(model).__name__)
    path = resolve_pretrained(name, str(pretrained))
    ctx = _Ctx(name, str(path), TAKES[name])
    problem = _architecture_problem(name, model)
    if problem:
        raise ctx.fail(problem)
    sd = _read(path, ctx)
    layout = detect_layout(sd)
    if layout not in ctx.takes:
        raise ctx.fail(f"has the {PUBLISHED[layout]} layout" if layout else
                       f"keys match no published layout ({next(iter(sd))}, …)")
    target = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    values, used = _gather(_plan(name, model, layout), sd, target, ctx)
    with torch.no_grad():
        for key, v in values.items():
            target[key].copy_(v.to(dtype=target[key].dtype))
    report = {"file": str(path.resolve()), "sha256": sha256_file(path), "layout": PUBLISHED[layout],
              "loaded": [k for k in sd if k in used], "unused": [k for k in sd if k not in used],
              "missing": [k for k in model.state_dict() if k not in values and not k.endswith("num_batches_tracked")]}
    log.info("pretrained %s (%s layout) → %s: %d tensors loaded, %d unused, %d model tensors kept their "
             "initialisation", path, report["layout"], name, len(report["loaded"]), len(report["unused"]),
             len(report["missing"]))
    log.info("pretrained %s: unused keys of the file: %s", path.name, ", ".join(report["unused"]) or "none")
    log.info("pretrained %s: missing (not in the file) for %s: %s", path.name, name,
             ", ".join(report["missing"]) or "none")
    return report
