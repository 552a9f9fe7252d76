"""Figures as the papers draw them (docs/figures.md): noise curves on 0–100 % with clipped error
bars and the chance level, confusion matrices titled run · split · n · accuracy, and the reason
a t-SNE / retrieval figure is absent, logged and kept in pictures.json."""
import json
import logging
import sys

import cv2
import numpy as np
import pytest

from ferdata.train import metrics as M
from ferdata.train import plots as P

CLASSES = ["neutral", "happiness", "surprise"]
CM = np.array([[3, 1, 0], [0, 2, 1], [0, 0, 1]])          # n = 8, accuracy 6/8


def test_noise_plot_data_clips_error_bars_and_gives_chance():
    d = P.noise_plot_data({"a": {0.0: 0.98, 0.1: 0.5, 0.3: 0.02}}, {"a": {0.0: 0.05, 0.1: 0.1, 0.3: 0.05}},
                          num_classes=7)
    x, y, yerr = d["curves"]["a"]
    np.testing.assert_allclose(x, [0.0, 0.1, 0.3])
    np.testing.assert_allclose(y, [98, 50, 2])
    np.testing.assert_allclose(yerr, [[5, 10, 2], [2, 10, 5]])       # below, above: bars end at 0 and 100
    assert (y - yerr[0]).min() >= 0 and (y + yerr[1]).max() <= 100
    assert d["chance"] == pytest.approx(100 / 7)
    assert P.noise_plot_data({0.1: 0.5})["chance"] is None and P.noise_plot_data({0.1: 0.5})["curves"]["accuracy"][2] is None


def test_noise_figure_axes_percent_chance_and_bars_inside(tmp_path):
    fig = P.noise_figure({"feratt": {0.05: 0.97, 0.3: 0.4}}, {"feratt": {0.05: 0.08, 0.3: 0.5}}, num_classes=3)
    ax = fig.axes[0]
    assert ax.get_ylim() == (0.0, 100.0)
    assert "%" in ax.get_ylabel() and "σ" in ax.get_xlabel() and "[0, 1]" in ax.get_xlabel()
    chance = [ln for ln in ax.get_lines() if ln.get_label().startswith("chance")]
    assert len(chance) == 1 and chance[0].get_linestyle() == "--"
    assert np.allclose(chance[0].get_ydata(), 100 / 3)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("chance") for t in legend) and "feratt" in legend
    assert [t.get_position()[1] for t in ax.texts if t.get_text() == "chance"] == [pytest.approx(100 / 3 + 1)]
    bars = [seg for coll in ax.collections for seg in coll.get_segments()]
    ys = np.concatenate([np.asarray(s)[:, 1] for s in bars])
    assert ys.min() == pytest.approx(0.0) and ys.max() == pytest.approx(100.0)  # 40 ± 50, 97 ± 8: clipped
    p = P.noise_plot({"0.05": 0.8, "0.3": 0.4}, tmp_path / "n.png", num_classes=7)
    assert cv2.imread(p) is not None and not list(tmp_path.glob("*.tmp*"))


def test_confusion_title_run_split_n_accuracy(tmp_path):
    assert M.confusion_title("deep", "test", 8, 0.75) == "deep · test · n=8 · accuracy 75.00 %"
    fig = M.confusion_figure(CM, CLASSES, run="deep", split="test")          # n and accuracy from the matrix
    assert fig.axes[0].get_title() == "deep · test · n=8 · accuracy 75.00 %"
    assert M.confusion_figure(CM, CLASSES, title="fold 0").axes[0].get_title() == "fold 0"   # old callers
    assert M.confusion_figure(CM, CLASSES).axes[0].get_title() == ""
    titled = cv2.imread(M.plot_confusion(CM, CLASSES, tmp_path / "t.png", run="deep", split="test"))
    plain = cv2.imread(M.plot_confusion(CM, CLASSES, tmp_path / "p.png"))
    assert titled.shape == plain.shape and (titled != plain).any()
    assert not list(tmp_path.glob(".*tmp*"))                                # written atomically


def test_cv_outputs_title_confusion_and_draw_noise_with_chance(tmp_path, monkeypatch):
    from ferdata.experiments.cv_summary import write_outputs

    titles, noise_axes = [], []
    real_cf, real_nf = M.confusion_figure, P.noise_figure
    monkeypatch.setattr(M, "confusion_figure", lambda *a, **k: titles.append(real_cf(*a, **k)) or titles[-1])
    monkeypatch.setattr(P, "noise_figure", lambda *a, **k: noise_axes.append(real_nf(*a, **k)) or noise_axes[-1])
    summary = {"name": "feratt", "n_folds": 2, "folds_done": [0, 1], "complete": True,
               "folds": [{"fold": 0, "accuracy": 0.7}, {"fold": 1, "accuracy": 0.8}],
               "mean": {"accuracy": 0.75}, "std": {"accuracy": 0.07}, "classes": CLASSES,
               "confusion_matrix": CM.tolist(), "noise": {"0.1": {"mean": 0.6, "std": 0.5}}}
    write_outputs(tmp_path, summary)
    assert titles[0].axes[0].get_title() == "feratt · test (all 2 folds) · n=8 · accuracy 75.00 %"
    ax = noise_axes[0].axes[0]
    assert ax.get_ylim() == (0.0, 100.0)
    assert [np.mean(ln.get_ydata()) for ln in ax.get_lines() if ln.get_label().startswith("chance")] == \
        [pytest.approx(100 / 3)]
    ys = np.concatenate([np.asarray(s)[:, 1] for c in ax.collections for s in c.get_segments()])
    assert ys.min() >= 0 and ys.max() == pytest.approx(100.0)             # 60 ± 50 clipped at the top
    assert cv2.imread(str(tmp_path / "confusion.png")) is not None and (tmp_path / "noise.png").exists()


def _clusters(n=30, d=8, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return (rng.normal(0, 1, (3, d))[y] * 4 + rng.normal(0, 0.3, (n, d))).astype(np.float32), y


def _reasons(folder, caplog):
    logged = {r.getMessage() for r in caplog.records if r.name == "ferdata.train.plots"}
    saved = json.loads((folder / "pictures.json").read_text())
    return logged, saved


def test_absent_tsne_and_retrieval_say_why(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="ferdata.train.plots")
    (tmp_path / "eval.json").write_text(json.dumps({"test": {"classes": CLASSES, "accuracy": 0.9}}))
    assert P.write_eval_pictures(tmp_path) == []                                # no embedding head
    logged, saved = _reasons(tmp_path, caplog)
    assert saved["written"] == [] and set(saved["not_drawn"]) == {"noise.png", "tsne.png", "retrieval.png"}
    assert "no embedding head" in saved["not_drawn"]["tsne.png"] and "noise study" in saved["not_drawn"]["noise.png"]
    assert sum("tsne.png not drawn" in m and "no embedding head" in m for m in logged) == 1

    x, y = _clusters(3)
    np.savez(tmp_path / "embeddings.npz", embedding=x, label=y, image=np.zeros((3, 8, 8), np.uint8))
    caplog.clear()
    got = P.write_eval_pictures(tmp_path)
    logged, saved = _reasons(tmp_path, caplog)
    assert [p.split("/")[-1] for p in got] == ["retrieval.png"] == saved["written"]
    assert saved["not_drawn"]["tsne.png"] == "too few samples for t-SNE (3 < 5)"
    assert any("tsne.png not drawn: too few samples" in m for m in logged)

    x, y = _clusters(30)
    np.savez(tmp_path / "embeddings.npz", embedding=x, label=y)             # more faces than are stored
    monkeypatch.setattr(P, "MAX_RETRIEVAL_IMAGES", 20)
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)               # scikit-learn missing
    caplog.clear()
    assert P.write_eval_pictures(tmp_path) == []
    logged, saved = _reasons(tmp_path, caplog)
    assert "pip install 'ferdata[plots]'" in saved["not_drawn"]["tsne.png"]
    assert saved["not_drawn"]["retrieval.png"] == \
        "faces not stored in embeddings.npz: n = 30 > MAX_RETRIEVAL_IMAGES = 20"
    assert any("tsne.png not drawn" in m and "ferdata[plots]" in m for m in logged)
    assert any("retrieval.png not drawn" in m and "MAX_RETRIEVAL_IMAGES" in m for m in logged)
    level = {m: r.levelno for r in caplog.records for m in ("tsne.png", "retrieval.png") if m in r.getMessage()}
    assert level == {"tsne.png": logging.WARNING, "retrieval.png": logging.INFO}   # a missing extra warns


def test_fit_and_eval_title_confusion_and_record_pictures(tmp_path, monkeypatch):
    """A run's confusion.png names the run, the split, n and the accuracy; ferdata eval's too."""
    from fixtures import train_fixtures as tf
    from ferdata.train import fit
    from ferdata.train.config import TrainConfig
    from ferdata.train.evaluate import evaluate_checkpoint
    from ferdata.train.final import run_label

    assert run_label("deep", tmp_path / "fold-03") == "deep (fold-03)" and run_label("x", tmp_path / "x") == "x"
    titles = []
    real = M.confusion_figure
    monkeypatch.setattr(M, "confusion_figure", lambda *a, **k: titles.append(real(*a, **k).axes[0].get_title())
                        or real(*a, **k))
    res = fit(TrainConfig(name="tiny", eval_on="renders", protocol="holdout", epochs=1, batch_size=16,
                          num_workers=0, sample_per_face=16, sample_size=32, eval_batch_size=64,
                          model="preactresnet18", model_kwargs=tf.TINY_MODEL), tmp_path / "tiny")
    t = res["test"]
    assert titles == [f"tiny · test · n={t['n']} · accuracy {100 * t['accuracy']:.2f} %"]
    pictures = json.loads((tmp_path / "tiny" / "pictures.json").read_text())
    assert set(pictures["written"]) | set(pictures["not_drawn"]) == {"noise.png", "tsne.png", "retrieval.png"}
    ev = evaluate_checkpoint(tmp_path / "tiny" / "best.pt", tmp_path / "tiny" / "sample-data" / "test",
                             tmp_path / "ev", device="cpu")
    assert titles[1].startswith("tiny · all faces · n=") and titles[1].endswith(f"{100 * ev['eval']['accuracy']:.2f} %")
