"""Exact-output speed-ups: the same bytes (render) and the same numbers (training) as the plain path."""
import contextlib

import cv2
import numpy as np
import pytest

from ferdata.config import RenderConfig
from ferdata.render import run as render_run
from ferdata.render.bg_lightness import LightnessCache
from ferdata.render.compose import compose, lab_lightness, prepare_face
from ferdata.render.params import sample_params, sample_rng
from fixtures.shard_hashes import dataset_hashes  # one definition of "same shard bytes"


def _lab_L_as_before(rgb):
    """The background's L as the renderer computed it per crop before the cache (full Lab, channel 0)."""
    return cv2.cvtColor(rgb.astype(np.float32) * (1 / 255.0), cv2.COLOR_RGB2Lab)[..., 0]


def test_lightness_plane_sliced_is_bit_identical_to_the_crop_converted_alone():
    rng = np.random.default_rng(5)
    for t in range(40):
        h, w = rng.integers(70, 400, 2)
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if t % 2:
            img = cv2.GaussianBlur(img, (7, 7), 3)
        plane = lab_lightness(img)
        for _ in range(10):
            y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
            y1, x1 = rng.integers(y0 + 1, min(h, y0 + 130) + 1), rng.integers(x0 + 1, min(w, x0 + 130) + 1)
            ref = _lab_L_as_before(img[y0:y1, x0:x1])
            assert np.array_equal(plane[y0:y1, x0:x1].view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("luminance", ["ratio", "reinhard"])
def test_compose_with_the_lightness_plane_gives_the_same_sample(sample_dir, luminance):
    from ferdata.faces.store import FaceStore

    with FaceStore(sample_dir / "faces.h5") as fs:
        face = prepare_face(fs.images[0], fs.masks[0], fs.landmarks[0], 64)
    cfg = RenderConfig(size=64, luminance=luminance).resolved()
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.integers(0, 256, (150, 210, 3), dtype=np.uint8), (9, 9), 4)
    small = np.ascontiguousarray(big[:50, :40])  # every crop rescaled: the plane must not be used
    for bg in (big, small):
        plane = lab_lightness(bg)
        for i in range(30):
            p = sample_params(sample_rng(3, 0, i), cfg)
            a = compose(face, bg, p.copy(), cfg)
            b = compose(face, bg, p.copy(), cfg, bg_lightness=plane)
            for k in ("image", "mask", "landmarks", "params"):
                assert np.array_equal(a[k], b[k]), (k, i)


class _Counting(LightnessCache):
    served = 0

    def get(self, bg_id, image, size):
        plane = super().get(bg_id, image, size)
        type(self).served += plane is not None
        return plane


class _Never(LightnessCache):
    def get(self, bg_id, image, size):
        return None


@pytest.mark.parametrize("luminance", ["ratio", "reinhard"])
def test_render_shards_are_byte_identical_with_and_without_the_lightness_cache(sample_dir, tmp_path, monkeypatch,
                                                                               luminance):
    faces, bg = sample_dir / "faces.h5", sample_dir / "backgrounds"
    cfg = RenderConfig(per_face=24, shard_size=16, size=64, luminance=luminance)
    monkeypatch.setattr(render_run, "_CONTEXTS", {})
    monkeypatch.setattr(render_run, "LightnessCache", _Never)
    render_run.render(faces, bg, tmp_path / "plain", cfg)
    monkeypatch.setattr(render_run, "_CONTEXTS", {})
    monkeypatch.setattr(render_run, "LightnessCache", lambda: _Counting(buy_after=0.0))
    _Counting.served = 0
    render_run.render(faces, bg, tmp_path / "cached", cfg)
    assert _Counting.served == 48  # every sample used a cached plane
    assert dataset_hashes(tmp_path / "plain") == dataset_hashes(tmp_path / "cached")


def test_lightness_cache_buys_a_plane_after_an_image_worth_of_crops_and_stays_bounded():
    img = np.zeros((128, 256, 3), np.uint8)
    c = LightnessCache()
    got = [c.get(7, img, 64) is not None for _ in range(9)]
    assert got == [False] * 7 + [True, True]  # 8 crops of 64² = the image's 128×256 pixels
    assert c.get(8, np.zeros((40, 300, 3), np.uint8), 64) is None  # crops rescaled: never bought
    small = LightnessCache(max_bytes=128 * 256 * 4, buy_after=0)
    for k in range(3):
        assert small.get(k, img, 64) is not None
    assert len(small) == 1


# ---------------------------------------------------------------------------------------
# training: the model inputs' memory format, torch threads
# ---------------------------------------------------------------------------------------
def _batch_mode_batches(n, size=32, batch=4, seed=0):
    """uint8 batches as the batch-mode shard loader yields them (images: channels_last views)."""
    from ferdata.torch.datasets import _to_tensors

    rng = np.random.default_rng(seed)
    return [_to_tensors({"image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
                         "label": rng.integers(0, 2, batch).astype(np.uint8)}, channels_last=True)
            for _ in range(n)]


def _prep(channels_last=False):
    import torch

    from ferdata.train.augment import Augmenter
    from ferdata.train.models import model_inputs
    from ferdata.train.prep import BatchPrep

    inp = model_inputs("preactresnet18")
    return BatchPrep(inp, ["neutral", "happiness"], torch.device("cpu"), {"resize": [32, 32]},
                     Augmenter("none", inp.input_size), channels_last)


def test_batch_prep_hands_the_model_contiguous_nchw_unless_channels_last_is_asked():
    import torch

    b = _batch_mode_batches(1)[0]
    assert b["image"].is_contiguous(memory_format=torch.channels_last)   # what the loader gives
    x = _prep()(b, train=True)["image"]
    assert x.is_contiguous() and x.shape == (4, 3, 32, 32)
    y = _prep(channels_last=True)(b, train=True)["image"]
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    ref = (b["image"].float() / 255.0 - 0.5) / 0.5
    assert torch.equal(x, ref) and torch.equal(y, ref)                   # the same numbers


def test_training_on_the_contiguous_input_gives_the_losses_of_the_channels_last_view():
    import torch

    from ferdata.train.engine import train_epoch
    from ferdata.train.losses import FERAttLoss
    from ferdata.train.models import create_model

    batches = _batch_mode_batches(3)

    def losses(to_channels_last):
        torch.manual_seed(0)
        m = create_model("preactresnet18", num_classes=2, width=8)
        opt = torch.optim.SGD(m.parameters(), lr=0.05)
        prep = _prep()
        seen = []

        def prep_as(batch, train=False):
            x = prep(batch, train)
            if to_channels_last:  # what the model got before the memory-format choice
                x["image"] = x["image"].contiguous(memory_format=torch.channels_last)
            seen.append(x["image"].is_contiguous())
            return x
        recs = [train_epoch(m, [b], prep_as, FERAttLoss(), opt, None, contextlib.nullcontext, 0)["train_loss"]
                for b in batches]
        return recs, seen

    new, seen_new = losses(False)
    old, seen_old = losses(True)
    assert all(seen_new) and not any(seen_old)
    np.testing.assert_allclose(new, old, rtol=1e-5)


def test_input_memory_format_is_channels_last_only_when_asked_and_useful():
    import torch

    from ferdata.train.runtime import input_memory_format

    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    cpu = torch.device("cpu")
    assert input_memory_format(conv, cpu, False) == torch.contiguous_format
    assert input_memory_format(conv, cpu, True) == torch.channels_last
    assert input_memory_format(mlp, cpu, True) == torch.contiguous_format


def test_torch_threads_leave_the_dataloader_workers_their_cores(monkeypatch):
    import torch

    from ferdata.train.runtime import torch_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpu = torch.device("cpu")
    assert torch_threads(2, cpu, cores=2) == 1
    assert torch_threads(0, cpu, cores=2) == 2
    assert torch_threads(3, cpu, cores=8) == 5
    assert torch_threads(4, cpu, cores=2) == 1
    assert torch_threads(2, torch.device("cuda"), cores=2) is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert torch_threads(2, cpu, cores=2) is None                      # the user's explicit choice wins
