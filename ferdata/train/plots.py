"""The figures a FER researcher looks at after an evaluation (FERAtt §4):

* :func:`noise_plot` — accuracy (%, 0–100) vs Gaussian noise σ, one curve per model, error
  bars clipped to [0, 100] %, the chance level dashed (Fig. 9/10; :func:`noise_plot_data`
  computes what is drawn, :func:`noise_figure` returns the Figure);
* :func:`tsne_plot` — 2-D Barnes-Hut t-SNE of the embeddings coloured by class (Fig. 6;
  scikit-learn, the ``plots`` extra);
* :func:`retrieval_plot` — per query face, its top-5 nearest faces by cosine similarity
  of the embeddings, framed green when the expression matches, red otherwise (Fig. 7);
* :func:`write_eval_pictures` — whichever of these an evaluation folder allows:
  ``noise.png`` from ``eval.json`` ``"noise"`` (trained clean, tested with noise) and
  ``"noise_train"`` (FERAtt §4.4: fine-tuned with noise σ, then tested); ``tsne.png``
  from ``embeddings.npz`` (``embedding``, ``label``); ``retrieval.png`` when
  ``embeddings.npz`` also holds the faces (``image``: ``(N, H, W[, C])``); a figure not
  drawn is logged with its reason and listed in ``pictures.json`` (``docs/figures.md``).

matplotlib's Agg canvas is used directly (no pyplot, no global backend switch); every
PNG is written under a temporary name and renamed into place. The drawing functions
return the numbers they drew (t-SNE coordinates, neighbour indices) so callers and
tests can check them.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["noise_plot", "noise_figure", "noise_plot_data", "MAX_RETRIEVAL_IMAGES", "tsne_plot", "tsne_embed", "retrieval_plot", "cosine_topk", "write_eval_pictures"]


def _figure(w: float, h: float, dpi: int = 110):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> str:
    """PNG to ``path`` atomically (:func:`ferdata.atomic.atomic_write`)."""
    from ..atomic import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return str(path)


# ---------------------------------------------------------------- noise (Fig. 9)

def _curves(noise: Mapping) -> Dict[str, Dict[float, float]]:
    if noise and all(isinstance(v, (int, float)) for v in noise.values()):
        noise = {"accuracy": noise}
    out = {}
    for name, c in noise.items():
        pts = {float(s): float(a) for s, a in c.items()}
        if pts:
            out[str(name)] = dict(sorted(pts.items()))
    if not out:
        raise ValueError("no noise results to plot")
    return out


def noise_plot_data(noise: Mapping, errors: Optional[Mapping] = None,
                    num_classes: Optional[int] = None) -> dict:
    """What :func:`noise_plot` draws, in percent: ``{"curves": {name: (sigma, acc %, yerr)},
    "chance": 100 / num_classes or None}``. ``yerr`` is ``(2, n)`` (below, above) clipped so
    that every bar stays inside [0, 100] %, or ``None`` without errors for that curve."""
    curves = _curves(noise)
    errs = _curves(errors) if errors else {}
    out = {}
    for name, pts in curves.items():
        x = np.array(list(pts), dtype=np.float64)
        y = 100.0 * np.array(list(pts.values()), dtype=np.float64)
        e = errs.get(name)
        yerr = None
        if e:
            sd = 100.0 * np.abs(np.array([e.get(s, 0.0) for s in x], dtype=np.float64))
            yerr = np.stack([np.minimum(sd, np.clip(y, 0, 100)), np.minimum(sd, np.clip(100 - y, 0, 100))])
        out[name] = (x, y, yerr)
    chance = 100.0 / int(num_classes) if num_classes else None
    return {"curves": out, "chance": chance}


NOISE_XLABEL = "Gaussian noise σ (standard deviation; pixel values in [0, 1])"
NOISE_YLABEL = "accuracy (%)"


def noise_figure(noise: Mapping, errors: Optional[Mapping] = None, title: Optional[str] = None,
                 num_classes: Optional[int] = None):
    """The matplotlib ``Figure`` of :func:`noise_plot` (one Axes: ``fig.axes[0]``)."""
    data = noise_plot_data(noise, errors, num_classes)
    curves = data["curves"]
    fig = _figure(6.0, 4.2 + 0.22 * (len(curves) + 1))
    ax = fig.add_subplot(1, 1, 1)
    for name, (x, y, yerr) in curves.items():
        ax.errorbar(x, y, yerr=yerr, marker="o", capsize=3, label=name, clip_on=False)
    if data["chance"] is not None:
        ax.axhline(data["chance"], color="0.4", linestyle="--", linewidth=1.0,
                   label=f"chance ({data['chance']:.1f} %, {num_classes} classes)")
        ax.text(0.99, data["chance"] + 1.0, "chance", transform=ax.get_yaxis_transform(), ha="right", va="bottom",
                fontsize=7, color="0.4")
    ax.set_ylim(0.0, 100.0)
    ax.set_xlabel(NOISE_XLABEL)
    ax.set_ylabel(NOISE_YLABEL)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    ax.set_title(title or "Accuracy under Gaussian noise", fontsize=9)
    fig.tight_layout()
    return fig


def noise_plot(noise: Mapping, path, errors: Optional[Mapping] = None, title: Optional[str] = None,
               num_classes: Optional[int] = None) -> str:
    """Accuracy (percent, y axis 0–100) vs noise σ, as FERAtt Fig. 9 draws it.

    ``noise``: ``{sigma: accuracy}`` (one curve) or ``{model: {sigma: accuracy}}``;
    accuracies in [0, 1], σ keys may be strings. ``errors``: same shape as the
    multi-curve form, drawn as error bars (e.g. the sd over folds) clipped to [0, 100] %.
    ``num_classes``: draws the chance level 100 / num_classes % as a dashed line.
    """
    return _save(noise_figure(noise, errors, title, num_classes), path)


# ---------------------------------------------------------------- t-SNE (Fig. 6)

def tsne_embed(embeddings, seed: int = 0, perplexity: float = 30.0, max_iter: int = 1000) -> np.ndarray:
    """``(N, 2)`` Barnes-Hut t-SNE of ``(N, d)`` embeddings (scikit-learn, PCA init;
    perplexity capped at (N − 1) / 3; ``max_iter`` ≥ 250)."""
    try:
        from sklearn.manifold import TSNE
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError("t-SNE needs scikit-learn: pip install 'ferdata[plots]'") from exc
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 5:
        raise ValueError(f"t-SNE needs (N >= 5, d) embeddings, got shape {x.shape}")
    perp = float(min(perplexity, (x.shape[0] - 1) / 3.0))
    tsne = TSNE(n_components=2, perplexity=perp, init="pca", learning_rate="auto",
                random_state=seed, method="barnes_hut", max_iter=max_iter)
    if x.shape[0] > 1000:
        return tsne.fit_transform(x)
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    with threadpool_limits(limits=1):  # small sets: one thread is faster than OpenMP's hand-offs
        return tsne.fit_transform(x)


def tsne_plot(embeddings, labels, path, classes: Optional[Sequence[str]] = None, seed: int = 0,
              max_points: int = 3000, title: Optional[str] = None, max_iter: int = 1000):
    """Draw the t-SNE of ``embeddings`` coloured by ``labels`` to ``path``.

    At most ``max_points`` samples (a seeded random subset) are embedded. Returns
    ``(coords (M, 2), indices (M,))`` — the 2-D points and which samples they are.
    """
    x = np.asarray(embeddings)
    y = np.asarray(labels).astype(np.int64).ravel()
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"embeddings {x.shape} and labels {y.shape} do not match")
    idx = np.arange(x.shape[0])
    if idx.size > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx.size, max_points, replace=False))
    xy = tsne_embed(x[idx], seed=seed, max_iter=max_iter)
    fig = _figure(6.0, 5.2)
    ax = fig.add_subplot(1, 1, 1)
    cmap = _colors(int(y.max()) + 1 if y.size else 1)
    for c in np.unique(y[idx]):
        m = y[idx] == c
        name = classes[c] if classes is not None and c < len(classes) else str(c)
        ax.scatter(xy[m, 0], xy[m, 1], s=8, color=cmap[c], label=f"{name} ({int(m.sum())})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=2, loc="best")
    ax.set_title(title or f"t-SNE of the embeddings ({idx.size} samples)")
    fig.tight_layout()
    _save(fig, path)
    return xy, idx


def _colors(n: int):
    from matplotlib import colormaps

    cm = colormaps["tab10" if n <= 10 else "tab20"]
    return [cm(i % cm.N) for i in range(max(n, 1))]


# ---------------------------------------------------------------- retrieval (Fig. 7)

def cosine_topk(embeddings, queries: Sequence[int], k: int = 5):
    """``(indices (q, k), similarities (q, k))`` of each query's k most cosine-similar
    other samples (itself excluded; ties broken by index)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k must be in [1, {x.shape[0] - 1}], got {k}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    q = np.asarray(queries, dtype=np.int64)
    sim = x[q] @ x.T
    sim[np.arange(q.size), q] = -np.inf
    nn = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return nn, np.take_along_axis(sim, nn, axis=1)


def _pick_queries(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """One random sample per class (classes in order), then random others, up to ``n``."""
    rng = np.random.default_rng(seed)
    picks = [int(rng.choice(np.flatnonzero(labels == c))) for c in np.unique(labels)][:n]
    rest = np.setdiff1d(np.arange(labels.size), picks)
    if len(picks) < n and rest.size:
        picks += rng.choice(rest, min(n - len(picks), rest.size), replace=False).tolist()
    return np.asarray(picks, dtype=np.int64)


def _display(im: np.ndarray) -> np.ndarray:
    im = np.asarray(im)
    if im.ndim == 3 and im.shape[0] in (1, 3) and im.shape[-1] not in (1, 3):
        im = np.moveaxis(im, 0, -1)
    if im.ndim == 3 and im.shape[-1] == 1:
        im = im[..., 0]
    if im.dtype != np.uint8:
        im = im.astype(np.float64)
        lo, hi = float(im.min()), float(im.max())
        im = (im - lo) / (hi - lo) if hi > lo else np.zeros_like(im)
    return im


def retrieval_plot(embeddings, images, labels, path, classes: Optional[Sequence[str]] = None,
                   queries: int = 6, k: int = 5, seed: int = 0, title: Optional[str] = None):
    """Top-``k`` retrieval by cosine similarity for ``queries`` query faces (one per class first).

    ``images``: ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)``, uint8 or float.
    Returns ``(query_indices (q,), neighbour_indices (q, k))``.
    """
    x = np.asarray(embeddings)
    y = np.asarray(labels).astype(np.int64).ravel()
    if x.ndim != 2 or not (x.shape[0] == y.shape[0] == len(images)):
        raise ValueError(f"embeddings {x.shape}, images ({len(images)}) and labels {y.shape} do not match")
    k = min(k, x.shape[0] - 1)
    q = _pick_queries(y, queries, seed)
    nn, sim = cosine_topk(x, q, k)
    name = (lambda c: classes[c] if classes is not None and c < len(classes) else str(c))
    fig = _figure(1.45 * (k + 1), 1.6 * q.size + 0.4)
    for r, qi in enumerate(q):
        row = [(qi, None)] + [(int(j), float(s)) for j, s in zip(nn[r], sim[r])]
        for c, (j, s) in enumerate(row):
            ax = fig.add_subplot(q.size, k + 1, r * (k + 1) + c + 1)
            im = _display(images[j])
            ax.imshow(im, cmap="gray" if im.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            color = "black" if s is None else ("green" if y[j] == y[qi] else "red")
            for sp in ax.spines.values():
                sp.set_color(color)
                sp.set_linewidth(3 if s is not None else 1.5)
            ax.set_title(f"query: {name(y[j])}" if s is None else f"{name(y[j])} {s:.2f}", fontsize=7, color=color)
    fig.suptitle(title or f"Top-{k} retrieval by cosine similarity (green: same expression)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return q, nn


# ---------------------------------------------------------------- an evaluation folder

def noise_accuracies(ev: dict, key: str) -> Optional[Dict[str, float]]:
    """``{sigma: test accuracy}`` of an eval.json's ``"noise"`` sweep (the model trained clean,
    tested with noise) or ``"noise_train"`` study (fine-tuned with noise σ, then tested: FERAtt §4.4)."""
    d = ev.get(key)
    if not isinstance(d, dict) or not d:
        return None
    vals = {s: (v.get("test_accuracy") if isinstance(v, dict) else v) for s, v in d.items()}
    return {s: float(v) for s, v in vals.items() if v is not None} or None


#: at most this many evaluated faces are stored in ``embeddings.npz`` for the retrieval figure
MAX_RETRIEVAL_IMAGES = 2000
#: fewer embeddings than this: no t-SNE (its perplexity needs a few neighbours)
TSNE_MIN_SAMPLES = 5
NO_EMBEDDING = "no embeddings.npz: the model has no embedding head (it returns no embedding to draw)"


def _skip(skipped: dict, out, name: str, reason: str, level: int = logging.WARNING) -> None:
    skipped[name] = reason
    log.log(level, "%s: %s not drawn: %s", out, name, reason)


def _noise_picture(out: Path, ev: dict, skipped: dict) -> Optional[str]:
    rep = ev.get("test") or ev.get("eval") or {}
    classes = rep.get("classes")
    curves = {name: acc for key, name in (("noise_train", "fine-tuned with noise"), ("noise", "trained clean"))
              if (acc := noise_accuracies(ev, key))}
    if not curves:
        _skip(skipped, out, "noise.png", "eval.json has no noise study (set noise = [...] or noise_train = [...])",
              logging.INFO)
        return None
    for acc in curves.values():          # σ = 0: the clean test accuracy of the same model
        if "accuracy" in rep and not any(float(s) == 0.0 for s in acc):
            acc["0"] = float(rep["accuracy"])
    return noise_plot(curves, out / "noise.png", title="Test accuracy under Gaussian noise",
                      num_classes=len(classes) if classes else None)


def _no_retrieval(n: int, images) -> Optional[str]:
    """Why the retrieval figure cannot be drawn from ``n`` embeddings and ``images``, or None."""
    if n < 2:
        return f"too few samples for retrieval ({n} < 2)"
    if images is not None:
        return None
    if n > MAX_RETRIEVAL_IMAGES:
        return f"faces not stored in embeddings.npz: n = {n} > MAX_RETRIEVAL_IMAGES = {MAX_RETRIEVAL_IMAGES}"
    return "embeddings.npz holds no faces ('image'): the evaluated dataset could not be read by index"


def _embedding_pictures(out: Path, classes, seed: int, tsne_max_iter: int, skipped: dict) -> List[str]:
    emb_path = out / "embeddings.npz"
    if not emb_path.exists():
        for name in ("tsne.png", "retrieval.png"):
            _skip(skipped, out, name, NO_EMBEDDING, logging.INFO)
        return []
    with np.load(emb_path) as z:
        arrays = {k: z[k] for k in z.files}
    emb, lab = arrays.get("embedding"), arrays.get("label")
    if emb is None or lab is None:
        for name in ("tsne.png", "retrieval.png"):
            _skip(skipped, out, name, "embeddings.npz holds no 'embedding' and 'label' arrays")
        return []
    n, images = len(lab), arrays.get("image", arrays.get("images"))
    draws = {"tsne.png": lambda p: tsne_plot(emb, lab, p, classes, seed=seed, max_iter=tsne_max_iter),
             "retrieval.png": lambda p: retrieval_plot(emb, images, lab, p, classes, seed=seed)}
    if n < TSNE_MIN_SAMPLES:
        del draws["tsne.png"]
        _skip(skipped, out, "tsne.png", f"too few samples for t-SNE ({n} < {TSNE_MIN_SAMPLES})")
    why = _no_retrieval(n, images)
    if why:
        del draws["retrieval.png"]
        _skip(skipped, out, "retrieval.png", why, logging.INFO if n > MAX_RETRIEVAL_IMAGES else logging.WARNING)
    written = []
    for name, draw in draws.items():
        try:
            draw(out / name)
            written.append(str(out / name))
        except (ValueError, ImportError) as exc:   # ImportError: "pip install 'ferdata[plots]'"
            _skip(skipped, out, name, str(exc))
    return written


def write_eval_pictures(out_dir, seed: int = 0, tsne_max_iter: int = 1000) -> List[str]:
    """Draw ``noise.png``, ``tsne.png``, ``retrieval.png`` in ``out_dir`` where its
    ``eval.json`` / ``embeddings.npz`` allow; returns the paths written. A figure not drawn
    (no noise study, no embeddings, too few samples, scikit-learn missing, faces not stored)
    is skipped with one log line saying why; ``pictures.json`` records
    ``{"written": [names], "not_drawn": {name: reason}}`` for a look afterwards."""
    from ..atomic import write_json_atomic

    out = Path(out_dir)
    ev = {}
    if (out / "eval.json").exists():
        with open(out / "eval.json") as fh:
            ev = json.load(fh)
    classes = (ev.get("test") or ev.get("eval") or {}).get("classes")
    skipped: Dict[str, str] = {}
    noise = _noise_picture(out, ev, skipped)
    written = ([noise] if noise else []) + _embedding_pictures(out, classes, seed, tsne_max_iter, skipped)
    if out.is_dir():
        write_json_atomic(out / "pictures.json", {"written": [Path(p).name for p in written], "not_drawn": skipped},
                          indent=1)
    return written
