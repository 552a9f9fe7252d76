"""The augmentation presets against their papers: ``seed001`` is Keras' ImageDataGenerator with
seed 001 §3.4's numbers in Keras' units; ``seed002`` cuts seed 002 §4.2's patches."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from ferdata.train.augment import PRESETS, Augmenter, keras_params, keras_theta, load_size

N = 20000


@pytest.fixture(scope="module")
def draws():
    return keras_params(N, PRESETS["seed001"], torch.Generator().manual_seed(0))


def _fills(x, lo, hi, tol):
    """x lies in [lo, hi] and reaches both ends (to ``tol``)."""
    return float(x.min()) >= lo and float(x.max()) <= hi and x.min() < lo + tol and x.max() > hi - tol


def test_seed001_arguments_are_the_papers_numbers_in_keras_units():
    # seed 001 §3.4: "rotation range is 0-20° ... shifting ranges of width and height ... 0-15%.
    # Both the shear range and the zoom range are 0-0.15" -> ImageDataGenerator(...) arguments
    s = PRESETS["seed001"]
    assert s["rotation_range"] == 20.0 and s["width_shift_range"] == s["height_shift_range"] == 0.15
    assert s["shear_range"] == 0.15 and s["zoom_range"] == (0.85, 1.15) and s["horizontal_flip"] == 0.5


def test_seed001_draws_span_the_keras_ranges(draws):
    assert _fills(draws["theta"], -20.0, 20.0, 0.1)                    # degrees
    assert _fills(draws["tx"], -0.15, 0.15, 1e-3) and _fills(draws["ty"], -0.15, 0.15, 1e-3)  # fractions
    assert _fills(draws["shear"], -0.15, 0.15, 1e-3)                   # degrees (Keras >= 2.1.3)
    assert _fills(draws["zx"], 0.85, 1.15, 1e-3) and _fills(draws["zy"], 0.85, 1.15, 1e-3)
    # zoom per axis: zx and zy drawn separately (Keras: np.random.uniform(lo, hi, 2))
    assert (draws["zx"] != draws["zy"]).all()
    assert abs(np.corrcoef(draws["zx"].numpy(), draws["zy"].numpy())[0, 1]) < 0.03
    assert abs(float(draws["flip"].float().mean()) - 0.5) < 0.02
    for k in ("theta", "tx", "ty", "shear", "zx"):                      # uniform: mean of the range, sd r/sqrt(3)
        x = draws[k].numpy()
        lo, hi = (0.85, 1.15) if k == "zx" else (-abs(x).max(), abs(x).max())
        assert abs(x.mean() - (lo + hi) / 2) < 0.02 * (hi - lo)
        assert abs(x.std() - (hi - lo) / np.sqrt(12)) < 0.02 * (hi - lo)


def test_seed001_shear_is_degrees_not_radians():
    # shear alone, at the range's end: +0.15 deg moves a 256-px image's corner by < 0.5 px
    # (0.15 rad, old Keras, would move it by about 19 px)
    p = {"theta": torch.zeros(1, dtype=torch.float64), "tx": torch.zeros(1, dtype=torch.float64),
         "ty": torch.zeros(1, dtype=torch.float64), "shear": torch.full((1,), 0.15, dtype=torch.float64),
         "zx": torch.ones(1, dtype=torch.float64), "zy": torch.ones(1, dtype=torch.float64),
         "flip": torch.zeros(1, dtype=torch.bool)}
    th = keras_theta(p, 256, 256)[0].double()
    corner = th[:, :2] @ torch.tensor([1.0, 1.0], dtype=torch.float64) + th[:, 2]
    shift_px = (corner - 1.0).abs().max() * 128
    assert 0.1 < shift_px < 0.5
    assert shift_px == pytest.approx(128 * np.sin(np.deg2rad(0.15)), rel=1e-3)


def _keras_reference(img, p, i):
    """Keras' apply_affine_transform (scipy.ndimage, order 1, fill_mode nearest) about the exact
    centre, then the horizontal flip — written from Keras' formulas."""
    h, w = img.shape
    th, s = np.deg2rad(float(p["theta"][i])), np.deg2rad(float(p["shear"][i]))
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    m = rot @ np.array([[1, -np.sin(s)], [0, np.cos(s)]]) @ np.diag([float(p["zx"][i]), float(p["zy"][i])])
    t = rot @ np.array([float(p["tx"][i]) * h, float(p["ty"][i]) * w])
    c = np.array([(h - 1) / 2, (w - 1) / 2])
    out = ndimage.affine_transform(img, m, offset=c - m @ c + t, order=1, mode="nearest")
    return out[:, ::-1] if bool(p["flip"][i]) else out


def test_seed001_warp_is_keras_pixel_for_pixel():
    h, w, n = 40, 56, 6
    img = ndimage.gaussian_filter(np.random.default_rng(0).random((h, w)), 2)
    aug = Augmenter("seed001", (h, w), seed=5)
    aug.set_epoch(2)
    x = torch.tensor(img, dtype=torch.float32)[None, None].repeat(n, 1, 1, 1)
    out = aug({"image": x}, train=True)["image"][:, 0].numpy()
    aug.set_epoch(2)                                                       # the same draws again
    p = keras_params(n, PRESETS["seed001"], aug.g)
    for i in range(n):
        np.testing.assert_allclose(out[i], _keras_reference(img, p, i), atol=1e-5)


def test_seed001_a_wide_keras_draw_matches_too():
    # larger ranges (shear 10 deg) than the paper's, so that every factor of the matrix shows
    spec = {**PRESETS["seed001"], "shear_range": 10.0, "zoom_range": (0.6, 1.4)}
    h, w = 33, 48
    img = ndimage.gaussian_filter(np.random.default_rng(1).random((h, w)), 1.5)
    p = keras_params(5, spec, torch.Generator().manual_seed(1))
    x = torch.tensor(img, dtype=torch.float32)[None, None].repeat(5, 1, 1, 1)
    grid = F.affine_grid(keras_theta(p, h, w), [5, 1, h, w], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0].numpy()
    for i in range(5):
        np.testing.assert_allclose(out[i], _keras_reference(img, p, i), atol=1e-5)


def test_seed002_patches_are_the_papers_sizes():
    # seed 002 §4.2: "random 112 × 144 / 272 × 272 patches ... from the 125 × 160 / 284 × 284 images"
    assert load_size("seed002", (144, 112)) == (160, 125)
    assert load_size("seed002", (272, 272)) == (284, 284)
    aug = Augmenter("seed002", (272, 272), seed=0)
    x = torch.rand(2, 1, 284, 284)
    assert aug({"image": x.clone()}, train=True)["image"].shape == (2, 1, 272, 272)
    assert torch.equal(aug({"image": x.clone()}, train=False)["image"], x[:, :, 6:278, 6:278])
