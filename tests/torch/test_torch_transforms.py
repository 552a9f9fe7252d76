"""Batch transforms of ferdata.torch.transforms (docs/torch.md), run on CPU here.
Fixtures: conftest.py."""

import numpy as np
import pytest
import torch

from ferdata.labels import MIRROR68
from ferdata.torch import ShardDataset
from ferdata.torch import transforms as T


# ---------------------------------------------------------------------------------------------
# GPU-side transforms (run on CPU here)
# ---------------------------------------------------------------------------------------------
def test_transforms_float_normalize_flip():
    x = torch.randint(0, 256, (4, 3, 8, 6), dtype=torch.uint8)
    f = T.to_float(x)
    assert f.dtype == torch.float32 and torch.allclose(f * 255, x.float())
    n = T.normalize(x, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.5])
    assert torch.allclose(n[:, 1], (f[:, 1] - 0.4) / 0.2)
    assert torch.equal(T.random_flip(x, p=1.0), x.flip(-1)) and torch.equal(T.random_flip(x, p=0.0), x)
    g = torch.Generator().manual_seed(0)
    out, mask = T.random_flip(x, p=0.5, generator=g, return_mask=True)
    assert all(torch.equal(out[i], x[i].flip(-1) if mask[i] else x[i]) for i in range(4))
    same = T.random_affine(x.float(), size=None)
    assert torch.allclose(same, x.float(), atol=1e-3)
    crop = T.random_affine(x, scale=(1.5, 2.0), translate=0.1, size=(4, 4), generator=g)
    assert crop.shape == (4, 3, 4, 4) and crop.dtype == torch.float32


def test_gpu_augment_keeps_fields_consistent(renders):
    ds = ShardDataset(renders.raw, fields=("image", "mask", "landmarks", "label"))
    batch = torch.utils.data.default_collate([ds[i] for i in range(6)])
    aug = T.GpuAugment(flip=1.0, mean=0.5, std=0.25)
    out = aug(batch)
    img = batch["image"]
    assert torch.allclose(out["image"], (img.flip(-1).float() / 255 - 0.5) / 0.25, atol=1e-5)
    assert torch.equal(out["mask"], (batch["mask"].flip(-1) > 0).float())
    lm = batch["landmarks"]
    mirrored = torch.stack((63 - lm[..., 0], lm[..., 1]), -1)[:, list(MIRROR68)]
    assert torch.allclose(out["landmarks"], mirrored, atol=1e-3)
    assert torch.equal(out["label"], batch["label"])
    aug.eval()
    plain = aug(batch)
    assert torch.allclose(plain["image"], (img.float() / 255 - 0.5) / 0.25)
    jitter = T.GpuAugment(flip=0.5, scale=(1.0, 1.3), translate=0.1, size=(32, 32))
    jit = jitter(batch, torch.Generator().manual_seed(1))
    assert jit["image"].shape == (6, 3, 32, 32) and jit["mask"].shape == (6, 1, 32, 32)
    assert jit["landmarks"].shape == (6, 68, 2)


def test_gpu_augment_moves_image_mask_and_landmarks_together():
    """A bright dot at landmark 30 (the nose tip: its own mirror) and a mask square around it
    stay together through random flips, scales and shifts: image, mask and landmark agree."""
    n, S = 16, 64
    rng = np.random.default_rng(0)
    img = torch.zeros(n, 3, S, S, dtype=torch.uint8)
    mask = torch.zeros(n, S, S, dtype=torch.uint8)
    lm = torch.zeros(n, 68, 2)
    for i in range(n):
        x, y = (int(v) for v in rng.integers(20, 44, 2))
        img[i, :, y - 1:y + 2, x - 1:x + 2] = 255
        mask[i, y - 4:y + 5, x - 4:x + 5] = 255
        lm[i, 30] = torch.tensor([x, y], dtype=torch.float32)
    batch = {"image": img, "mask": mask[:, None], "landmarks": lm, "label": torch.zeros(n, dtype=torch.long)}
    aug = T.GpuAugment(flip=0.5, scale=(0.8, 1.25), translate=0.1, size=(48, 48))
    out = aug(batch, torch.Generator().manual_seed(3))
    flat = out["image"][:, 0].reshape(n, -1)
    peak = flat.argmax(1)
    py, px = peak // 48, peak % 48
    d = torch.hypot(out["landmarks"][:, 30, 0] - px, out["landmarks"][:, 30, 1] - py)
    assert d.max() <= 1.5, d
    assert all(out["mask"][i, 0, py[i], px[i]] > 0.5 for i in range(n))      # the dot lies in the mask
    assert out["mask"].sum() > 0 and not torch.equal(out["image"], out["image"].flip(0))


def test_mirror_lbp_lut_matches_lbp_of_flipped_image(renders):
    from ferdata.features.lbp import lbp

    g = ShardDataset(renders.raw, fields=("image",), gray=True)[3]["image"][0].numpy()
    for variant, P, R in (("original", 8, 1), ("uniform", 8, 1), ("circle", 8, 2), ("ror", 8, 1)):
        codes = torch.from_numpy(lbp(g, variant, P, R).astype(np.int64))
        flipped = torch.from_numpy(lbp(np.ascontiguousarray(g[:, ::-1]), variant, P, R).astype(np.int64))
        remapped = T.mirror_lbp_lut(variant, P)[codes.flip(-1)]
        agree = (remapped == flipped).float().mean()
        assert agree == 1.0 if variant in ("original", "uniform") else agree > 0.99
    with pytest.raises(ValueError):
        T.mirror_lbp_lut("nri_uniform", 8)
