"""FERAtt Fig. 8: input, attention map and attention image for a few test faces, one row per
noise level of the noise study (``attention.png`` in a run folder; ``docs/training.md``)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .models import forward_batch
from .plots import _figure, _save

log = logging.getLogger(__name__)

__all__ = ["attention_rows", "attention_figure"]


@torch.no_grad()
def attention_rows(model, batch: dict, prep, amp_ctx, sigmas: Sequence[float], n: int = 4, seed: int = 0) -> list:
    """``[(sigma, input, attention, reconstruction)]`` for the first ``n`` faces of ``batch``, one
    entry per noise level (σ = 0 first); arrays (n, H, W, C) in [0, 1], attention (n, H, W)."""
    was = model.training
    model.eval()
    x0 = prep(batch, train=False)
    x0 = {k: (v[:n] if torch.is_tensor(v) and v.dim() > 0 else v) for k, v in x0.items()}
    rows = []
    for s in [0.0, *sorted(float(v) for v in sigmas if float(v) > 0)]:
        x = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in x0.items()}
        if s > 0:
            x = prep.with_noise(x, s, torch.Generator().manual_seed(seed))
        with amp_ctx():
            out = forward_batch(model, x)
        rows.append((s, _to01(x["image"]), _to01(out["attention"], signed=False)[..., 0], _to01(out["reconstruction"])))
    model.train(was)
    return rows


def _to01(t: torch.Tensor, signed: bool = True) -> np.ndarray:
    a = t.detach().float().cpu()
    a = (a + 1) / 2 if signed else a
    return a.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def attention_figure(model, loader, prep, amp_ctx, sigmas: Sequence[float], path, n: int = 4,
                     seed: int = 0, title: Optional[str] = None) -> Optional[str]:
    """Draw Fig. 8 to ``path`` from the first batch of ``loader``; None (logged) when the model
    has no attention output or the loader is empty."""
    if "attention" not in getattr(model, "outputs", ()) or "reconstruction" not in getattr(model, "outputs", ()):
        log.info("%s: not drawn (the model has no attention and reconstruction outputs)", Path(path).name)
        return None
    batch = next(iter(loader), None)
    if batch is None:
        log.info("%s: not drawn (no test faces)", Path(path).name)
        return None
    rows = attention_rows(model, batch, prep, amp_ctx, sigmas, n, seed)
    n = rows[0][1].shape[0]
    fig = _figure(1.2 * 3 * n + 0.8, 1.3 * len(rows) + 0.6)
    for r, (s, img, att, rec) in enumerate(rows):
        for i in range(n):
            for j, (a, label, cmap) in enumerate(((img[i], "input", None), (att[i], "attention", "jet"),
                                                  (rec[i], "I_att", None))):
                ax = fig.add_subplot(len(rows), 3 * n, r * 3 * n + 3 * i + j + 1)
                a = a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a
                ax.imshow(a, cmap=cmap if a.ndim == 2 and cmap else ("gray" if a.ndim == 2 else None),
                          vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(label, fontsize=7)
                if i == 0 and j == 0:
                    ax.set_ylabel(f"σ = {s:g}", fontsize=8)
    fig.suptitle(title or "Input, attention map and attention image at each noise level (FERAtt Fig. 8)",
                 fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
