"""Illumination normalisation by isotropic diffusion (seed 002 §4.2): the formula against hand
computations, and one preprocessing for training, validation, test and ``ferdata eval``."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from ferdata.train.config import TrainConfig
from ferdata.train.illumination import (luminance, normalise_illumination, normalise_illumination_batch,
                                        reflectance, rescale_u8)
from fixtures import train_fixtures as tf


def _dense_neumann(h, w, lam):
    """Id + λ·(grid graph Laplacian, 4 neighbours, no edge leaving the image), written out."""
    a = np.eye(h * w)
    for i in range(h):
        for j in range(w):
            for di, dj in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                if 0 <= i + di < h and 0 <= j + dj < w:
                    a[i * w + j, i * w + j] += lam
                    a[i * w + j, (i + di) * w + j + dj] -= lam
    return a


def test_luminance_by_hand_two_pixels():
    # (1 + λ) L0 − λ L1 = 0 and −λ L0 + (1 + λ) L1 = 3, λ = 1  ->  L = (1, 2)
    np.testing.assert_allclose(luminance(np.array([[0.0, 3.0]]), lam=1.0), [[1.0, 2.0]], atol=1e-12)
    np.testing.assert_allclose(luminance(np.array([[0.0], [3.0]]), lam=1.0), [[1.0], [2.0]], atol=1e-12)


@pytest.mark.parametrize("shape", [(5, 4), (4, 5), (5, 5), (6, 6), (1, 7), (3, 1)])
def test_luminance_solves_the_diffusion_system(shape):
    x = np.random.default_rng(0).random(shape) * 255
    lam = 2.5
    want = np.linalg.solve(_dense_neumann(*shape, lam), x.ravel()).reshape(shape)
    np.testing.assert_allclose(luminance(x, lam), want, atol=1e-9)
    np.testing.assert_allclose(luminance(np.stack([x, 2 * x]), lam), np.stack([want, 2 * want]), atol=1e-9)


def test_reflectance_and_rescale_by_hand():
    img = np.array([[10, 200, 30], [40, 50, 250]], np.uint8)
    lam, eps = 3.0, 1.0
    ill = np.linalg.solve(_dense_neumann(2, 3, lam), img.ravel().astype(float)).reshape(2, 3)
    r = (img + eps) / (ill + eps)
    np.testing.assert_allclose(reflectance(img[None, ..., None].astype(float), lam, eps)[0, ..., 0], r)
    want = np.rint((r - r.min()) / (r.max() - r.min()) * 255).astype(np.uint8)
    assert np.array_equal(normalise_illumination(img, lam=lam, clip=0.0, eps=eps), want)
    # with clipping: the percentiles become 0 and 255
    lo, hi = np.percentile(r, [10, 90])
    want = np.rint((np.clip(r, lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)
    assert np.array_equal(normalise_illumination(img, lam=lam, clip=10.0, eps=eps), want)


@pytest.mark.parametrize("value", [0, 77, 255])
def test_constant_image_stays_flat(value):
    for shape in [(9, 7), (9, 7, 1), (9, 7, 3)]:
        out = normalise_illumination(np.full(shape, value, np.uint8))
        assert out.shape == shape and out.dtype == np.uint8 and (out == 128).all()


def test_output_dtype_shape_and_range():
    rng = np.random.default_rng(1)
    for shape in [(40, 30), (40, 30, 1), (40, 30, 3)]:
        out = normalise_illumination(rng.integers(0, 256, shape, dtype=np.uint8))
        assert out.shape == shape and out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    with pytest.raises(ValueError):
        normalise_illumination_batch(rng.random((2, 8, 8)))          # not uint8
    batch = rng.integers(0, 256, (3, 20, 17), dtype=np.uint8)
    each = np.stack([normalise_illumination(b) for b in batch])
    assert np.array_equal(normalise_illumination_batch(batch), each)


def test_gray_rgb_image_equals_gray():
    g = np.random.default_rng(2).integers(0, 256, (24, 20), dtype=np.uint8)
    rgb = normalise_illumination(np.repeat(g[..., None], 3, axis=2))
    gray = normalise_illumination(g)
    for c in range(3):
        assert np.abs(rgb[..., c].astype(int) - gray).max() <= 1


def _texture(h, w, seed=3):
    rng = np.random.default_rng(seed)
    return 0.55 + 0.4 * rng.random((h, w))           # a fine texture around 0.75


def test_multiplicative_illumination_gradient_is_removed():
    h, w = 64, 96
    tex = _texture(h, w)
    ramp = np.linspace(0.2, 1.0, w)[None, :]         # light falls off 5 x from right to left
    lit = np.rint(255 * tex * ramp).astype(np.uint8)
    flat = np.rint(255 * tex * 0.6).astype(np.uint8)
    assert lit[:, 8:24].mean() / lit[:, -24:-8].mean() < 0.45    # the input is dark on the left
    out_lit = normalise_illumination(lit).astype(float)
    out_flat = normalise_illumination(flat).astype(float)
    inner = (slice(8, -8), slice(8, -8))
    left, right = out_lit[inner][:, :16].mean(), out_lit[inner][:, -16:].mean()
    assert abs(left - right) / right < 0.05                          # the gradient is gone
    assert np.corrcoef(out_lit[inner].ravel(), out_flat[inner].ravel())[0, 1] > 0.9   # the texture stays


def test_rescale_flat_and_dtype():
    out = rescale_u8(np.ones((2, 3, 4)) + np.array([0.0, 1e-12])[:, None, None])
    assert out.dtype == np.uint8 and (out == 128).all()


# ----------------------------------------------------------------- one preprocessing, every side

FAST = dict(model="preactresnet18", model_kwargs=tf.TINY_MODEL, batch_size=16, lr=3e-3, num_workers=0,
            eval_batch_size=128, train_on="faces", eval_on="faces", folds=4, val_subjects=1, epochs=1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tf.make_store(tmp_path_factory.mktemp("illum") / "faces.h5", n_subjects=8)


def _preps(cfg, store, tmp_path):
    """(training prep + one training face's batch, evaluation prep + the same face read as
    ``ferdata eval`` reads it) for ``cfg``."""
    from ferdata.train.augment import Augmenter
    from ferdata.train.data import build, eval_dataset, read_spec
    from ferdata.train.evaluate import _config
    from ferdata.train.models import model_inputs
    from ferdata.train.prep import BatchPrep

    inputs = model_inputs(cfg.model, **cfg.model_kwargs)
    data = build(cfg, tmp_path, inputs)
    cpu = torch.device("cpu")
    train_prep = BatchPrep(inputs, data.classes, cpu, data.spec, data.augment)     # as loop.setup builds it
    face = int(data.split.train.faces[0])
    train_batch = torch.utils.data.default_collate([data.train_dataset[0]])
    ck_cfg = _config({"config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str))})
    spec = read_spec(ck_cfg, inputs, None)                                          # as ferdata eval does
    eval_prep = BatchPrep(inputs, data.classes, cpu, spec, Augmenter(ck_cfg.augment, inputs.input_size))
    eval_batch = next(iter(torch.utils.data.DataLoader(eval_dataset("faces", store, spec, faces=[face]))))
    return train_prep, train_batch, eval_prep, eval_batch


def test_training_and_evaluation_prepare_a_face_identically(store, tmp_path):
    cfg = TrainConfig(faces=str(store), illumination="diffusion", **FAST).validate()
    train_prep, tb, eval_prep, eb = _preps(cfg, store, tmp_path / "d")
    assert train_prep.illumination == eval_prep.illumination == "diffusion"
    assert torch.equal(tb["image"], eb["image"])                                    # the same raw face
    x_train, x_eval = train_prep(tb, train=True)["image"], eval_prep(eb, train=False)["image"]
    assert torch.equal(x_train, x_eval)
    # and it is the module's function on the uint8 face, for each channel the model sees
    raw = tb["image"][0].numpy()                                                    # (C, H, W) uint8
    want = normalise_illumination(np.moveaxis(raw, 0, -1)).astype(np.float32) / 255.0 * 2 - 1
    torch.testing.assert_close(x_train[0], torch.from_numpy(np.moveaxis(want, -1, 0)), atol=1e-6, rtol=0)
    # without it the inputs differ
    plain = TrainConfig(faces=str(store), **FAST).validate()
    p_train, p_tb, _, _ = _preps(plain, store, tmp_path / "n")
    assert not torch.allclose(p_train(p_tb, train=True)["image"], x_train)


def test_eval_checkpoint_equals_fit_with_illumination(store, tmp_path):
    from ferdata.train import fit
    from ferdata.train.evaluate import evaluate_checkpoint

    cfg = TrainConfig(faces=str(store), illumination="diffusion", **FAST)
    res = fit(cfg, tmp_path / "run")
    conf = json.loads((tmp_path / "run" / "config.json").read_text())
    assert conf["illumination"] == "diffusion" and conf["resolved"]["read"]["illumination"] == "diffusion"
    ev = evaluate_checkpoint(tmp_path / "run" / "best.pt", store, tmp_path / "ev",
                             subjects=conf["split"]["test_subjects"])
    assert ev["eval"]["confusion_matrix"] == res["test"]["confusion_matrix"]
    assert ev["eval"]["accuracy"] == res["test"]["accuracy"]


def test_illumination_key_is_declared():
    meta = TrainConfig.declared("illumination")
    assert meta["group"] == "data" and meta["choices"] == ("none", "diffusion")
    assert TrainConfig().illumination == "none"
