"""Evaluation figures: noise curve (FERAtt Fig. 9), t-SNE (Fig. 6), top-5 retrieval (Fig. 7)."""
import json

import cv2
import numpy as np
import pytest

from ferdata.train.plots import cosine_topk, noise_plot, retrieval_plot, tsne_plot, write_eval_pictures

CLASSES = ["angry", "happy", "sad"]


def read_png(path):
    raw = open(path, "rb").read()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert im is not None and im.std() > 5          # decodes, and is not a blank canvas
    return im[..., ::-1]                               # RGB


def clusters(n_per=30, d=16, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (3, d)) * 4
    x = np.concatenate([c + spread * rng.normal(0, 1, (n_per, d)) for c in centres])
    y = np.repeat(np.arange(3), n_per)
    return x.astype(np.float32), y


def has_color(rgb, color, tol=40, min_pixels=20):
    return int((np.abs(rgb.astype(int) - np.array(color)).max(axis=-1) < tol).sum()) >= min_pixels


def test_noise_plot_one_and_several_curves(tmp_path):
    read_png(noise_plot({"0.05": 0.8, "0.1": 0.7, "0.3": 0.4}, tmp_path / "one.png"))
    p = noise_plot({"baseline": {0.05: 0.8, 0.3: 0.3}, "feratt": {0.05: 0.85, 0.3: 0.6}}, tmp_path / "two.png",
                   errors={"baseline": {0.05: 0.02, 0.3: 0.05}, "feratt": {0.05: 0.01, 0.3: 0.03}})
    read_png(p)
    assert not list(tmp_path.glob("*.tmp-*"))
    with pytest.raises(ValueError, match="no noise"):
        noise_plot({}, tmp_path / "x.png")


def test_tsne_keeps_separated_clusters_separated(tmp_path):
    x, y = clusters()
    xy, idx = tsne_plot(x, y, tmp_path / "tsne.png", CLASSES, max_iter=300)
    read_png(tmp_path / "tsne.png")
    assert xy.shape == (90, 2) and np.array_equal(idx, np.arange(90))
    cent = np.stack([xy[y == c].mean(0) for c in range(3)])
    nearest = np.argmin(((xy[:, None] - cent[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(nearest, y)                                  # every point nearest its own cluster
    within = max(np.linalg.norm(xy[y == c] - cent[c], axis=1).max() for c in range(3))
    between = min(np.linalg.norm(cent[a] - cent[b]) for a in range(3) for b in range(a + 1, 3))
    assert between > 2 * within


def test_tsne_subsamples_large_sets(tmp_path):
    x, y = clusters(n_per=40)
    xy, idx = tsne_plot(x, y, tmp_path / "t.png", max_points=60, max_iter=250)
    assert xy.shape == (60, 2) and len(set(idx.tolist())) == 60


def test_cosine_topk_matches_brute_force():
    x, _ = clusters(n_per=10, seed=3, spread=2.0)
    nn, sim = cosine_topk(x, [0, 7, 25], k=5)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    for r, q in enumerate([0, 7, 25]):
        s = xn @ xn[q]
        s[q] = -np.inf
        assert nn[r].tolist() == np.argsort(-s, kind="stable")[:5].tolist()
        np.testing.assert_allclose(sim[r], s[nn[r]], rtol=1e-6)
        assert q not in nn[r]


def test_retrieval_plot_neighbours_and_frames(tmp_path):
    x, y = clusters(n_per=8)
    images = np.stack([np.full((24, 24), 60 + 60 * c, np.uint8) for c in y])
    q, nn = retrieval_plot(x, images, y, tmp_path / "r.png", CLASSES, queries=3)
    assert sorted(y[q].tolist()) == [0, 1, 2]                         # one query per class
    assert all((y[nn[r]] == y[q[r]]).all() for r in range(3))       # tight clusters: all top-5 match
    rgb = read_png(tmp_path / "r.png")
    assert has_color(rgb, (0, 128, 0)) and not has_color(rgb, (255, 0, 0))
    y2 = y.copy()
    y2[nn[0][0]] = (y[q[0]] + 1) % 3                                 # a wrong neighbour -> a red frame
    retrieval_plot(x, images, y2, tmp_path / "r2.png", CLASSES, queries=3)
    assert has_color(read_png(tmp_path / "r2.png"), (255, 0, 0))


def test_write_eval_pictures_draws_what_the_folder_allows(tmp_path):
    x, y = clusters(n_per=10)
    (tmp_path / "eval.json").write_text(json.dumps({"test": {"classes": CLASSES, "accuracy": 0.9},
                                                    "noise": {"0.05": 0.8, "0.2": 0.6},
                                                    "noise_train": {"0.05": {"test_accuracy": 0.85},
                                                                    "0.2": {"test_accuracy": 0.75}}}))
    np.savez(tmp_path / "embeddings.npz", embedding=x, label=y, logits=np.zeros((30, 3)))
    got = write_eval_pictures(tmp_path, tsne_max_iter=250)
    assert sorted(p.split("/")[-1] for p in got) == ["noise.png", "tsne.png"]   # no faces: no retrieval
    images = np.random.default_rng(0).integers(0, 255, (30, 3, 16, 16), dtype=np.uint8)  # NCHW
    np.savez(tmp_path / "embeddings.npz", embedding=x, label=y, image=images)
    assert (tmp_path / "retrieval.png").name in [p.split("/")[-1] for p in write_eval_pictures(tmp_path, tsne_max_iter=250)]
    for f in ("noise.png", "tsne.png", "retrieval.png"):
        read_png(tmp_path / f)
    small = tmp_path / "small"
    small.mkdir()
    np.savez(small / "embeddings.npz", embedding=x[:3], label=y[:3])
    assert write_eval_pictures(small) == []                           # too few for t-SNE: skipped, no error


@pytest.mark.slow
def test_feratt_fig8_attention_png_per_noise_level(tmp_path):
    """A FERAtt run writes attention.png: input, attention map and I_att for a few test faces,
    one row per noise level; models without attention outputs draw nothing."""
    import json

    from fixtures import train_fixtures as tf
    from ferdata.train import fit
    from ferdata.train.attention_fig import attention_rows
    from ferdata.train.config import TrainConfig

    cfg = TrainConfig(model="feratt_cls", model_kwargs={"width": 8, "rep_size": 8, "input_size": [32, 32]},
                      epochs=1, batch_size=8,
                      lr=1e-3, num_workers=0, sample_per_face=16, sample_size=32, eval_batch_size=32,
                      eval_on="renders", protocol="holdout", noise=(0.1, 0.3), w_rep=0.0)
    fit(cfg, tmp_path / "run")
    png = tmp_path / "run" / "attention.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ev = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert set(ev["noise"]) == {"0.1", "0.3"}
    fit(TrainConfig(model="preactresnet18", model_kwargs=tf.TINY_MODEL, epochs=1, batch_size=8, num_workers=0,
                    sample_per_face=16, sample_size=32, eval_on="renders", protocol="holdout"), tmp_path / "base")
    assert not (tmp_path / "base" / "attention.png").exists()
    # one row per noise level, sigma 0 first, the three panels in [0, 1]
    import torch

    from ferdata.train.models import create_model, model_inputs
    from ferdata.train.augment import Augmenter
    from ferdata.train.prep import BatchPrep
    m = create_model("feratt_cls", num_classes=2, width=8, rep_size=8)
    prep = BatchPrep(model_inputs(m), ["neutral", "happiness"], torch.device("cpu"),
                     {"resize": [128, 128], "gray": False, "lbp_eval": None, "lbp_train": None},
                     Augmenter("none", (128, 128)), False)
    batch = {"image": torch.randint(0, 255, (3, 3, 128, 128), dtype=torch.uint8), "label": torch.tensor([0, 1, 0])}
    import contextlib
    rows = attention_rows(m, batch, prep, contextlib.nullcontext, [0.3, 0.1], n=2)
    assert [r[0] for r in rows] == [0.0, 0.1, 0.3]
    assert rows[0][1].shape == (2, 128, 128, 3) and rows[0][2].shape == (2, 128, 128)
    assert all(0 <= a.min() and a.max() <= 1 for r in rows for a in r[1:])
    assert not np.array_equal(rows[0][1], rows[2][1])         # the noisy input differs
