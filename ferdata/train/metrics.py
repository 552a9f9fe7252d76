"""Evaluation metrics (numpy only — no torch, no scikit-learn).

Accuracy, per-class and averaged precision / recall / F1, the confusion matrix, top-k
accuracy of class scores, top-k retrieval accuracy of embeddings (FERAtt Fig. 7),
nearest-class-mean accuracy (FERAtt's Gaussian representation), a JSON-able report
and a confusion-matrix figure (docs/training.md: "confusion matrix (JSON + PNG)").

Conventions (those of scikit-learn, which the tests check against hand-computed values):

* ``cm[i, j]`` counts samples of true class ``i`` predicted as ``j``.
* A per-class score whose denominator is 0 (a class never predicted → precision;
  never present → recall) is 0.
* Macro averages run over the classes that occur in ``y_true`` or ``y_pred`` (the
  "present" classes — scikit-learn's default when no label list is given), so a fold
  without contempt is not penalised for it; pass ``labels`` to fix the set.
* FERAtt's Table 1 reports F1 as the harmonic mean of macro precision and macro recall;
  the report gives it as ``macro.f1_of_macro`` next to the usual mean of per-class F1.
"""
from __future__ import annotations

import math
import os
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

__all__ = [
    "confusion_matrix", "accuracy", "precision_recall_f1", "averaged_scores", "topk_accuracy",
    "retrieval_topk_accuracy", "nearest_class_mean_accuracy", "classification_report",
    "aggregate_reports", "plot_confusion", "confusion_figure", "confusion_title",
]


def _labels_1d(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.equal(np.mod(a, 1), 0)):
            raise ValueError(f"{name} must hold integer class indices")
        a = a.astype(np.int64)
    a = a.astype(np.int64, copy=False)
    if a.size and a.min() < 0:
        raise ValueError(f"{name} holds a negative class index ({a.min()})")
    return a


def _preds(y_pred) -> np.ndarray:
    """1-D predictions, or the argmax of a 2-D ``(N, C)`` score array."""
    p = np.asarray(y_pred)
    if p.ndim == 2:
        return p.argmax(axis=1).astype(np.int64)
    return _labels_1d(p, "y_pred")


def confusion_matrix(y_true, y_pred, num_classes: Optional[int] = None) -> np.ndarray:
    """Confusion matrix ``(C, C)`` int64, rows = true class, columns = predicted class.

    Parameters
    ----------
    y_true : (N,) int class indices.
    y_pred : (N,) int class indices, or (N, C) scores (argmax is taken).
    num_classes : int, optional — C (default: 1 + the largest index seen, or the score width).

    Examples
    --------
    >>> confusion_matrix([0, 1, 1, 2], [0, 2, 1, 2]).tolist()
    [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    """
    t = _labels_1d(y_true, "y_true")
    scores = np.asarray(y_pred)
    p = _preds(scores)
    if t.shape != p.shape:
        raise ValueError(f"y_true ({t.shape[0]}) and y_pred ({p.shape[0]}) differ in length")
    if num_classes is None:
        num_classes = max(int(t.max()) + 1 if t.size else 0, int(p.max()) + 1 if p.size else 0,
                          scores.shape[1] if scores.ndim == 2 else 0)
    num_classes = int(num_classes)
    if t.size and (t.max() >= num_classes or p.max() >= num_classes):
        raise ValueError(f"class index >= num_classes ({num_classes})")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy(y_true, y_pred) -> float:
    """Fraction of correct predictions (``y_pred`` may be ``(N, C)`` scores). NaN for no samples."""
    t = _labels_1d(y_true, "y_true")
    p = _preds(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true ({t.shape[0]}) and y_pred ({p.shape[0]}) differ in length")
    return float(np.mean(t == p)) if t.size else float("nan")


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.zeros(np.broadcast(a, b).shape)
    np.divide(a, b, out=out, where=b != 0)
    return out


def precision_recall_f1(cm) -> Dict[str, np.ndarray]:
    """Per-class ``precision``, ``recall``, ``f1`` (float64) and ``support`` (int64) from a confusion matrix."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = _div(tp, predicted)
    recall = _div(tp, support)
    f1 = _div(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def averaged_scores(cm, labels: Optional[Iterable[int]] = None) -> Dict[str, Dict[str, float]]:
    """Macro and support-weighted averages of precision / recall / F1.

    ``labels``: class indices to average over (default: the present classes — those
    with a non-zero row or column).
    """
    cm = np.asarray(cm)
    per = precision_recall_f1(cm)
    if labels is None:
        idx = np.flatnonzero((cm.sum(axis=0) > 0) | (cm.sum(axis=1) > 0))
    else:
        idx = np.asarray(sorted(set(int(i) for i in labels)), dtype=np.int64)
    if idx.size == 0:
        nan = float("nan")
        return {"macro": {"precision": nan, "recall": nan, "f1": nan, "f1_of_macro": nan},
                "weighted": {"precision": nan, "recall": nan, "f1": nan}}
    p, r, f = (per[k][idx] for k in ("precision", "recall", "f1"))
    mp, mr = float(p.mean()), float(r.mean())
    w = per["support"][idx].astype(np.float64)
    ws = w.sum()
    weighted = ({k: float((per[k][idx] * w).sum() / ws) for k in ("precision", "recall", "f1")} if ws > 0
                else {"precision": 0.0, "recall": 0.0, "f1": 0.0})
    return {"macro": {"precision": mp, "recall": mr, "f1": float(f.mean()),
                      "f1_of_macro": (2 * mp * mr / (mp + mr)) if (mp + mr) > 0 else 0.0},
            "weighted": weighted}


def topk_accuracy(scores, y_true, k: int = 1) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores (ties: lowest index first)."""
    s = np.asarray(scores, dtype=np.float64)
    t = _labels_1d(y_true, "y_true")
    if s.ndim != 2 or s.shape[0] != t.shape[0]:
        raise ValueError(f"scores must be (N, C) with N = len(y_true), got {s.shape} and {t.shape[0]}")
    if not 1 <= k <= s.shape[1]:
        raise ValueError(f"k must be in [1, {s.shape[1]}], got {k}")
    if t.size == 0:
        return float("nan")
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return float(np.mean((order == t[:, None]).any(axis=1)))


def _pairwise_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def retrieval_topk_accuracy(embeddings, labels, k: int = 5, metric: str = "euclidean", mode: str = "precision",
                            chunk: int = 1024) -> float:
    """Top-k retrieval accuracy of embeddings (FERAtt Fig. 7: "top-5 retrieved images").

    Every sample queries all the *others*; its k nearest neighbours are retrieved.

    Parameters
    ----------
    embeddings : (N, d) float array.
    labels : (N,) int.
    k : int — neighbours retrieved (1 ≤ k < N).
    metric : {"euclidean", "cosine"}
    mode : {"precision", "hit"}
        ``"precision"``: mean fraction of the k retrieved with the query's label
        (precision@k); ``"hit"``: fraction of queries with at least one (hit@k).
    chunk : int — queries per block (memory ~ chunk·N floats).

    Ties in distance are broken by sample index (stable sort).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    y = _labels_1d(labels, "labels")
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"embeddings must be (N, d) with N = len(labels), got {x.shape} and {y.shape[0]}")
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, N-1] = [1, {n - 1}], got {k}")
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    elif metric != "euclidean":
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    if mode not in ("precision", "hit"):
        raise ValueError(f"mode must be 'precision' or 'hit', got {mode!r}")
    total = 0.0
    for s in range(0, n, chunk):
        q = slice(s, min(n, s + chunk))
        d = _pairwise_sq(x[q], x)
        rows = np.arange(d.shape[0])
        d[rows, rows + s] = np.inf                       # exclude the query itself
        nn_idx = np.argsort(d, axis=1, kind="stable")[:, :k]
        same = y[nn_idx] == y[q][:, None]
        total += float(same.mean(axis=1).sum() if mode == "precision" else same.any(axis=1).sum())
    return total / n


def nearest_class_mean_accuracy(embeddings, labels, means=None) -> float:
    """Accuracy of assigning each embedding to the nearest class mean.

    ``means`` ``(C, d)``: given anchors; default: the class means of ``embeddings``
    themselves (FERAtt's code evaluates its Gaussian representation this way; with equal
    isotropic Gaussians the MAP class is the nearest mean).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    y = _labels_1d(labels, "labels")
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"embeddings must be (N, d) with N = len(labels), got {x.shape} and {y.shape[0]}")
    if y.size == 0:
        return float("nan")
    if means is None:
        classes = np.unique(y)
        mu = np.stack([x[y == c].mean(axis=0) for c in classes])
    else:
        mu = np.asarray(means, dtype=np.float64)
        classes = np.arange(mu.shape[0])
    pred = classes[_pairwise_sq(x, mu).argmin(axis=1)]
    return float(np.mean(pred == y))


def classification_report(y_true, y_pred, classes: Optional[Sequence[str]] = None,
                          num_classes: Optional[int] = None, scores=None,
                          topk: Sequence[int] = (2, 3), labels: Optional[Iterable[int]] = None) -> dict:
    """All classification metrics as a JSON-able dict (plain ``int`` / ``float`` / lists).

    Parameters
    ----------
    y_true, y_pred : (N,) int (``y_pred`` may be (N, C) scores).
    classes : class names, index-aligned (default ``"0"``, ``"1"``, …); their number
        fixes C unless ``num_classes`` is given.
    scores : (N, C) float, optional — adds ``topk`` accuracies (``"top2"``, …).
    labels : classes to macro-average over (default: present classes).

    Returns
    -------
    dict with ``n``, ``accuracy``, ``classes``, ``macro_over`` (the classes averaged: those
    of ``classes`` with a test sample or a prediction, unless ``labels``), ``per_class`` (name →
    precision/recall/f1/support), ``macro`` (precision, recall, f1, f1_of_macro),
    ``weighted``, ``confusion_matrix`` (list of lists, rows = true) and ``topk``.
    """
    if num_classes is None and classes is not None:
        num_classes = len(classes)
    if scores is None and np.asarray(y_pred).ndim == 2:
        scores = y_pred
    cm = confusion_matrix(y_true, y_pred, num_classes)
    c = cm.shape[0]
    names = [str(n) for n in classes] if classes is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{len(names)} class names for {c} classes")
    per = precision_recall_f1(cm)
    avg = averaged_scores(cm, labels)
    n = int(cm.sum())
    over = (np.flatnonzero((cm.sum(axis=0) > 0) | (cm.sum(axis=1) > 0)) if labels is None
            else sorted(set(int(i) for i in labels)))
    report = {
        "n": n,
        "accuracy": float(np.trace(cm) / n) if n else float("nan"),
        "classes": names,
        "macro_over": [names[i] for i in over],   # the classes the macro averages ran over
        "per_class": {names[i]: {"precision": float(per["precision"][i]), "recall": float(per["recall"][i]),
                                 "f1": float(per["f1"][i]), "support": int(per["support"][i])} for i in range(c)},
        "macro": avg["macro"],
        "weighted": avg["weighted"],
        "confusion_matrix": cm.astype(int).tolist(),
    }
    if scores is not None:
        s = np.asarray(scores)
        report["topk"] = {f"top{k}": topk_accuracy(s, y_true, k) for k in topk if 1 <= k <= s.shape[1]}
    return report


def aggregate_reports(reports: Sequence[dict]) -> dict:
    """Mean and (population) standard deviation over folds of the scalar metrics of
    :func:`classification_report` (as FERAtt Table 1's "mean ± std"), plus the summed
    confusion matrix. Returns ``{"folds": k, "mean": {...}, "std": {...}, "confusion_matrix": ...}``
    with flattened keys such as ``"macro.f1"``.
    """
    if not reports:
        raise ValueError("no reports to aggregate")
    keys = ["accuracy"] + [f"{g}.{m}" for g in ("macro", "weighted") for m in reports[0][g]]
    keys += [f"topk.{m}" for m in reports[0].get("topk", {})
             if all(m in r.get("topk", {}) for r in reports)]        # top-k only where every fold has it
    vals: Dict[str, List[float]] = {k: [] for k in keys}
    for r in reports:
        for k in keys:
            g, _, m = k.partition(".")
            vals[k].append(float(r[g][m]) if m else float(r[g]))
    out = {"folds": len(reports),
           "mean": {k: float(np.mean(v)) for k, v in vals.items()},
           "std": {k: float(np.std(v)) for k, v in vals.items()}}
    shapes = {np.asarray(r["confusion_matrix"]).shape for r in reports}
    if len(shapes) == 1:
        out["confusion_matrix"] = np.sum([np.asarray(r["confusion_matrix"]) for r in reports], axis=0).astype(int).tolist()
    return out


def confusion_title(run: Optional[str] = None, split: Optional[str] = None, n: Optional[int] = None,
                    accuracy: Optional[float] = None) -> str:
    """``"<run> · <split> · n=<N> · accuracy <acc> %"`` (the parts given; accuracy in [0, 1])."""
    parts = [str(p) for p in (run, split) if p]
    if n is not None:
        parts.append(f"n={int(n)}")
    if accuracy is not None and math.isfinite(float(accuracy)):
        parts.append(f"accuracy {100 * float(accuracy):.2f} %")
    return " · ".join(parts)


def confusion_figure(cm, classes: Optional[Sequence[str]], normalize: bool = True, title: Optional[str] = None,
                     cmap: str = "Blues", dpi: int = 120, *, run: Optional[str] = None,
                     split: Optional[str] = None, n: Optional[int] = None, accuracy: Optional[float] = None):
    """The matplotlib ``Figure`` :func:`plot_confusion` saves (the matrix is ``fig.axes[0]``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    c = cm.shape[0]
    names = [str(n) for n in classes] if classes is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{len(names)} class names for a {c}×{c} matrix")
    if title is None and (run or split):
        total = int(cm.sum())
        acc = accuracy if accuracy is not None else (float(np.trace(cm)) / total if total else None)
        title = confusion_title(run, split, total if n is None else n, acc)
    rates = _div(cm, cm.sum(axis=1, keepdims=True)) if normalize else cm.astype(np.float64)
    side = max(4.0, 0.6 * c + 2.0)
    fig = Figure(figsize=(side + 1.0, side), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    vmax = 1.0 if normalize else max(1.0, float(rates.max()))
    im = ax.imshow(rates, cmap=cmap, vmin=0.0, vmax=vmax)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(c))
    ax.set_yticks(range(c))
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticklabels(names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=9)
    for i in range(c):
        for j in range(c):
            txt = f"{rates[i, j]:.2f}\n({int(cm[i, j])})" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=7 if c > 6 else 9,
                    color="white" if rates[i, j] > 0.6 * vmax else "black")
    fig.tight_layout()
    return fig


def plot_confusion(cm, classes: Optional[Sequence[str]], path, normalize: bool = True,
                   title: Optional[str] = None, cmap: str = "Blues", dpi: int = 120, *,
                   run: Optional[str] = None, split: Optional[str] = None, n: Optional[int] = None,
                   accuracy: Optional[float] = None) -> str:
    """Draw a confusion matrix to an image file (PNG by the extension) with matplotlib's Agg canvas.

    Cells show the row-normalised rate (``normalize=True``: recall per true class) and the
    count. Without ``title``, ``run`` and/or ``split`` give the title
    ``"<run> · <split> · n=<N> · accuracy <acc> %"`` (:func:`confusion_title`; ``n`` defaults
    to the matrix's sum, ``accuracy`` to its trace over that). Uses
    ``matplotlib.figure.Figure`` + ``FigureCanvasAgg`` directly — no pyplot, no global
    backend switch, safe in worker processes. Written atomically; returns ``str(path)``.
    """
    from ..atomic import atomic_save

    fig = confusion_figure(cm, classes, normalize, title, cmap, dpi, run=run, split=split, n=n, accuracy=accuracy)
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    atomic_save(path, lambda tmp: fig.savefig(tmp))
    return path
