"""Losses of the seed models: classification, FERAtt reconstruction, structured Gaussian manifold.

Seed 000 (FERAtt) eq. 1 trains with

    L = L_att(I_att, I ⊗ I_mask) + L_rep(ẑ, w) + L_cls(ŵ, w)

* ``L_att`` — pixel-wise MSE between the attention image and the masked input
  (:func:`reconstruction_loss`);
* ``L_rep`` — the structured Gaussian manifold loss (§3.3, eqs. 2–5;
  :func:`gaussian_manifold_loss`): the MSE between the posterior P(w_j | f(x)) of an
  isotropic Gaussian per class in the embedding space and the label posterior P(w_j | x);
* ``L_cls`` — BCE in the paper; cross-entropy is offered as well and is the default
  (:func:`classification_loss`).

:class:`FERAttLoss` sums them from a model's output dict; for a model without
``embedding`` / ``reconstruction`` outputs it reduces to the classification loss, so
the training loop can use it for every registered model.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Union

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "classification_loss", "reconstruction_loss", "masked_target", "gaussian_log_posterior",
    "gaussian_posterior", "gaussian_manifold_loss", "class_means", "GaussianManifoldLoss",
    "FERAttLoss", "feratt_loss",
]


def _target_probs(target: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Integer labels ``(B,)`` → one-hot ``(B, C)``; a ``(B, C)`` float target is returned as is."""
    if target.dim() == 1:
        if torch.is_floating_point(target):
            raise ValueError("a 1-D target must hold integer class indices")
        try:
            return F.one_hot(target.long(), num_classes).to(dtype)
        except RuntimeError as e:       # out-of-range index
            raise ValueError(f"class index out of range [0, {num_classes}): {e}") from None
    if target.dim() == 2:
        if target.shape[1] != num_classes:
            raise ValueError(f"soft target has {target.shape[1]} classes, expected {num_classes}")
        return target.to(dtype)
    raise ValueError(f"target must be (B,) class indices or (B, C) probabilities, got shape {tuple(target.shape)}")


def classification_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "ce",
                        weight: Optional[torch.Tensor] = None, label_smoothing: float = 0.0,
                        reduction: str = "mean") -> torch.Tensor:
    """Classification loss on logits.

    Parameters
    ----------
    logits : (B, C) float tensor.
    target : (B,) int64 class indices, or (B, C) class probabilities (e.g. FER+ vote
        distributions).
    kind : {"ce", "bce"}
        ``"ce"``: softmax cross-entropy (default). ``"bce"``: binary cross-entropy with
        logits against the one-hot (or soft) target, as FERAtt's paper states (§3.2);
        averaged over batch and classes.
    weight : (C,) tensor, optional — per-class weights.
    label_smoothing : float — for ``"ce"`` (PyTorch's definition); for ``"bce"`` the
        target becomes ``t·(1−ε) + ε/C``.
    reduction : {"mean", "sum", "none"}

    Examples
    --------
    >>> import torch
    >>> classification_loss(torch.zeros(2, 4), torch.tensor([0, 3])).item()  # log 4
    1.3862943649291992
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, C), got shape {tuple(logits.shape)}")
    c = logits.shape[1]
    if kind == "ce":
        if target.dim() == 1:
            if torch.is_floating_point(target):
                raise ValueError("a 1-D target must hold integer class indices")
            return F.cross_entropy(logits, target.long(), weight=weight, label_smoothing=label_smoothing,
                                   reduction=reduction)
        return F.cross_entropy(logits, _target_probs(target, c, logits.dtype), weight=weight,
                               label_smoothing=label_smoothing, reduction=reduction)
    if kind == "bce":
        t = _target_probs(target, c, logits.dtype)
        if label_smoothing:
            t = t * (1.0 - label_smoothing) + label_smoothing / c
        loss = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
        if weight is not None:
            loss = loss * weight.to(loss.dtype)
        loss = loss.mean(dim=1)
        return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss
    raise ValueError(f"kind must be 'ce' or 'bce', got {kind!r}")


def masked_target(image: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``I ⊗ I_mask``: the image with the background zeroed.

    ``mask`` may be ``(B, H, W)`` or ``(B, 1, H, W)``; uint8 masks are 0/255 (docs/datasets.md, face store)
    and are scaled to 0/1, bool and float masks are used as they are.
    """
    if mask is None:
        return image
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if mask.dtype == torch.uint8:
        m = mask.to(image.dtype) / 255.0
    else:
        m = mask.to(image.dtype)
    if m.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} and image {tuple(image.shape)} differ in size")
    return image * m


ATT_LOSSES = ("paper", "released", "released_mse")


def reconstruction_loss(reconstruction: torch.Tensor, image: torch.Tensor, mask: Optional[torch.Tensor] = None,
                        reduction: str = "mean", kind: str = "paper") -> torch.Tensor:
    """FERAtt's attention loss L_att between I_att and its target.

    ``kind``: ``"paper"`` — "the pixel-wise MSE" of seed 000 §3.1; ``"released"`` — the
    released code's ``Attloss``, the one its trainer builds: ``5·mean(tanh(3·|t − I_att|))``
    (written there as ``(e^{6d} − 1)/(e^{6d} + 1)``) clamped at 30 before the ×5;
    ``"released_mse"`` — its ``AttMSEloss`` (defined, not used there): ``10·MSE`` clamped
    at 30. Eq. 1 prints the target as ``I ⊗ I_mask`` (``att_target = "masked"``: the
    input and its ``mask`` are passed); the released code compares with ``x_org``
    (``att_target = "released"``) — the trainer passes such a target as ``image`` with no
    ``mask`` (docs/training.md, "FERAtt as published").

    ``image`` must have the model input's normalisation. When ``reconstruction`` is smaller
    than the image (e.g. the 32×32 ``reconstruction_small``), the target is average-pooled
    to its size. ``reduction`` applies to ``"paper"`` only (the released forms are means).
    """
    if kind not in ATT_LOSSES:
        raise ValueError(f"kind must be one of {', '.join(ATT_LOSSES)}, got {kind!r}")
    target = masked_target(image, mask)
    if reconstruction.shape[-2:] != target.shape[-2:]:
        target = F.adaptive_avg_pool2d(target, reconstruction.shape[-2:])
    if reconstruction.shape != target.shape:
        raise ValueError(f"reconstruction {tuple(reconstruction.shape)} vs target {tuple(target.shape)}")
    target = target.to(reconstruction.dtype)
    if kind == "paper":
        return F.mse_loss(reconstruction, target, reduction=reduction)
    if kind == "released":
        return 5.0 * torch.clamp(torch.tanh(3.0 * (target - reconstruction).abs()).mean(), max=30.0)
    return 10.0 * torch.clamp(F.mse_loss(reconstruction, target), max=30.0)


def class_means(embedding: torch.Tensor, target_probs: torch.Tensor):
    """Class means from a batch: ``μ_j = Σ_b t_bj z_b / Σ_b t_bj``; returns ``(means (C, d), present (C,) bool)``.

    With one-hot targets this is the per-class average; classes with no mass in the
    batch are marked absent (their row is 0). Gradients flow through the means.
    """
    mass = target_probs.sum(dim=0)                                   # (C,)
    present = mass > 0
    means = (target_probs.t() @ embedding) / mass.clamp_min(torch.finfo(embedding.dtype).tiny).unsqueeze(1)
    return means, present


def gaussian_log_posterior(embedding: torch.Tensor, means: torch.Tensor, sigma: Union[float, torch.Tensor] = 1.0,
                           priors: Optional[torch.Tensor] = None,
                           present: Optional[torch.Tensor] = None) -> torch.Tensor:
    """log P(w_j | f(x)) for isotropic Gaussians N(μ_j, σ_j² I) (seed 000 eqs. 2 and 4).

    ``log P_j ∝ log p(w_j) − d·log σ_j − ‖z − μ_j‖² / (2σ_j²)``, normalised with a
    log-sum-exp over the classes (numerically stable, unlike exponentiating first).

    Parameters
    ----------
    embedding : (B, d)
    means : (C, d)
    sigma : float or (C,) tensor — class standard deviations. Default 1.0: the paper gives no
        value; the released code's ``DGMMLoss`` (torchlib/netlosses.py) has ``sigma=1.0`` and its
        trainers never pass another. It uses one shared σ, ``exp(−‖z−μ‖²/(2σ²))`` normalised over
        the classes present in the batch (the −d·log σ term cancels then). The ``rep_sigma``
        recipe key sets it.
    priors : (C,) tensor, optional — class priors p(w_j) (default uniform).
    present : (C,) bool tensor, optional — classes to consider; others get −inf.
    """
    if embedding.dim() != 2 or means.dim() != 2 or embedding.shape[1] != means.shape[1]:
        raise ValueError(f"embedding (B, d) and means (C, d) needed, got {tuple(embedding.shape)}, {tuple(means.shape)}")
    d = embedding.shape[1]
    # explicit differences: exact, and a finite gradient at zero distance (cdist's is not)
    d2 = (embedding.unsqueeze(1) - means.to(embedding.dtype).unsqueeze(0)).pow(2).sum(dim=2)  # (B, C)
    if isinstance(sigma, torch.Tensor) and sigma.dim() > 0:
        s = sigma.to(embedding.dtype)
        logits = -d2 / (2.0 * s.pow(2)) - d * torch.log(s)
    else:
        s = float(sigma)
        if s <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        logits = -d2 / (2.0 * s * s)
    if priors is not None:
        logits = logits + torch.log(priors.to(embedding.dtype).clamp_min(torch.finfo(embedding.dtype).tiny))
    if present is not None:
        logits = logits.masked_fill(~present.unsqueeze(0), float("-inf"))
    return torch.log_softmax(logits, dim=1)


def gaussian_posterior(embedding: torch.Tensor, means: torch.Tensor, sigma: Union[float, torch.Tensor] = 1.0,
                       priors: Optional[torch.Tensor] = None, present: Optional[torch.Tensor] = None) -> torch.Tensor:
    """P(w_j | f(x)) ``(B, C)`` — see :func:`gaussian_log_posterior`."""
    return gaussian_log_posterior(embedding, means, sigma, priors, present).exp()


def gaussian_manifold_loss(embedding: torch.Tensor, target: torch.Tensor, num_classes: Optional[int] = None,
                           sigma: Union[float, torch.Tensor] = 1.0, means: Optional[torch.Tensor] = None,
                           priors: Optional[torch.Tensor] = None, reduction: str = "mean") -> torch.Tensor:
    """Structured Gaussian manifold loss L_rep of FERAtt (seed 000 §3.3, eq. 5).

    ``L_rep = E_i ‖P(w | f(x_i)) − P(w | x_i)‖²``: the squared error, summed over the
    classes and averaged over the batch, between the Gaussian posterior of the
    embedding (eqs. 2, 4) and the label posterior (one-hot, or a soft label
    distribution).

    Class means: the paper leaves open where μ_j come from. By default (``means=None``)
    they are the **batch class means** of the embeddings (with gradient; FERAtt's
    released code does the same), and only the classes present in the batch compete in
    the posterior. Pass ``means`` ``(C, d)`` (fixed or learnable anchors) to use them
    for every class instead. ``sigma`` = 1 by default.

    The loss is 0 when every embedding sits at its class mean far from the others, and
    grows to ≈ 1 − 1/K for K overlapping classes (uniform posterior).

    Note (batch means): a sample contributes to its own class mean, which shortens its
    distance to it by a factor ≈ (1 − 1/n_c); in high dimension with few samples per
    class this alone favours the right class (random 64-d embeddings, 10 per class,
    already score low). Large batches (FERAtt: 200) or fixed ``means`` avoid it.

    Parameters
    ----------
    embedding : (B, d) float tensor (ẑ of ``feratt_rep_cls``).
    target : (B,) int class indices or (B, C) probabilities.
    num_classes : int, optional — C (default: ``means.shape[0]``, the soft target's
        width, or ``max(target) + 1``).
    sigma, priors : see :func:`gaussian_log_posterior`.
    reduction : {"mean", "sum", "none"}
    """
    if embedding.dim() != 2:
        raise ValueError(f"embedding must be (B, d), got shape {tuple(embedding.shape)}")
    if num_classes is None:
        if means is not None:
            num_classes = means.shape[0]
        elif target.dim() == 2:
            num_classes = target.shape[1]
        else:
            num_classes = int(target.max()) + 1 if target.numel() else 1
    t = _target_probs(target, num_classes, embedding.dtype)
    if t.shape[0] != embedding.shape[0]:
        raise ValueError(f"{embedding.shape[0]} embeddings but {t.shape[0]} targets")
    if means is None:
        mu, present = class_means(embedding, t)
    else:
        if means.shape != (num_classes, embedding.shape[1]):
            raise ValueError(f"means must be ({num_classes}, {embedding.shape[1]}), got {tuple(means.shape)}")
        mu, present = means, None
    post = gaussian_posterior(embedding, mu, sigma, priors, present)
    per = (post - t).pow(2).sum(dim=1)
    if reduction == "mean":
        return per.mean()
    if reduction == "sum":
        return per.sum()
    if reduction == "none":
        return per
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class GaussianManifoldLoss(nn.Module):
    """Module form of :func:`gaussian_manifold_loss`.

    ``means=None`` → batch class means (default). ``means`` = a ``(C, d)`` tensor →
    fixed anchors (a buffer), or learnable ones with ``learn_means=True`` (then add this
    module's parameters to the optimiser). :meth:`simplex_means` builds well-separated
    fixed anchors.
    """

    def __init__(self, num_classes: Optional[int] = None, sigma: float = 1.0,
                 means: Optional[torch.Tensor] = None, learn_means: bool = False):
        super().__init__()
        self.num_classes, self.sigma = num_classes, float(sigma)
        if means is None:
            self.means = None
        elif learn_means:
            self.means = nn.Parameter(means.detach().clone().float())
        else:
            self.register_buffer("means", means.detach().clone().float())

    @staticmethod
    def simplex_means(num_classes: int, dim: int, radius: float = 3.0) -> torch.Tensor:
        """``radius``·e_j: C mutually equidistant anchors (distance radius·√2) in R^dim (dim ≥ C)."""
        if dim < num_classes:
            raise ValueError(f"dim ({dim}) must be >= num_classes ({num_classes})")
        return radius * torch.eye(num_classes, dim)

    def forward(self, embedding: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return gaussian_manifold_loss(embedding, target, self.num_classes, self.sigma, self.means)


class FERAttLoss(nn.Module):
    """FERAtt's joint loss (seed 000 eq. 1) from a model's output dict.

    ``loss = w_cls·L_cls(logits) + w_rep·L_rep(embedding) + w_att·L_att(reconstruction)``

    Terms whose output is missing (no ``embedding``, no ``reconstruction``, or no
    ``image`` given) or whose weight is 0 are skipped, so it serves every registered
    model (it is plain classification for the others).

    ``forward(outputs, target, image=None, mask=None)`` returns a dict of scalar
    tensors: ``"loss"`` (the total, to back-propagate) and each term computed
    (``"cls"``, ``"rep"``, ``"att"``) for logging.

    Parameters
    ----------
    w_cls, w_rep, w_att : float, default 1 (the paper sums the three unweighted).
    cls_kind : {"ce", "bce"} — see :func:`classification_loss` (default "ce").
    class_weight : (C,) tensor, optional; label_smoothing : float.
    sigma : float — of the manifold loss; means : (C, d), optional — anchors (default
        batch means).
    """

    def __init__(self, w_cls: float = 1.0, w_rep: float = 1.0, w_att: float = 1.0, cls_kind: str = "ce",
                 class_weight: Optional[torch.Tensor] = None, label_smoothing: float = 0.0, sigma: float = 1.0,
                 means: Optional[torch.Tensor] = None, att_kind: str = "paper"):
        super().__init__()
        if att_kind not in ATT_LOSSES:
            raise ValueError(f"att_kind must be one of {', '.join(ATT_LOSSES)}, got {att_kind!r}")
        self.att_kind = att_kind
        if cls_kind not in ("ce", "bce"):
            raise ValueError(f"cls_kind must be 'ce' or 'bce', got {cls_kind!r}")
        for name, w in (("w_cls", w_cls), ("w_rep", w_rep), ("w_att", w_att)):
            if not (w >= 0 and math.isfinite(w)):
                raise ValueError(f"{name} must be a finite number >= 0, got {w}")
        self.w_cls, self.w_rep, self.w_att = float(w_cls), float(w_rep), float(w_att)
        self.cls_kind, self.label_smoothing = cls_kind, float(label_smoothing)
        if class_weight is not None:
            self.register_buffer("class_weight", torch.as_tensor(class_weight, dtype=torch.float32))
        else:
            self.class_weight = None
        self.manifold = GaussianManifoldLoss(sigma=sigma, means=means)

    def forward(self, outputs: Mapping[str, torch.Tensor], target: torch.Tensor,
                image: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        if "logits" not in outputs:
            raise KeyError("model outputs lack 'logits'")
        logits = outputs["logits"]
        parts: Dict[str, torch.Tensor] = {}
        total = logits.new_zeros(())
        if self.w_cls > 0:
            parts["cls"] = classification_loss(logits.float(), target, self.cls_kind, self.class_weight,
                                               self.label_smoothing)
            total = total + self.w_cls * parts["cls"]
        if self.w_rep > 0 and "embedding" in outputs:
            self.manifold.num_classes = logits.shape[1]
            parts["rep"] = self.manifold(outputs["embedding"].float(), target)
            total = total + self.w_rep * parts["rep"]
        if self.w_att > 0 and "reconstruction" in outputs and image is not None:
            parts["att"] = reconstruction_loss(outputs["reconstruction"].float(), image.float(), mask,
                                               kind=self.att_kind)
            total = total + self.w_att * parts["att"]
        parts["loss"] = total
        return parts


def feratt_loss(outputs: Mapping[str, torch.Tensor], target: torch.Tensor, image: Optional[torch.Tensor] = None,
                mask: Optional[torch.Tensor] = None, **kwargs) -> Dict[str, torch.Tensor]:
    """Functional form of :class:`FERAttLoss` (``kwargs`` go to its constructor)."""
    return FERAttLoss(**kwargs)(outputs, target, image, mask)
