"""The batched torch renderer against the shard renderer (same params -> same sample)."""
import dataclasses

import cv2
import numpy as np
import pytest
import torch
from scipy import stats

from ferdata.config import RenderConfig
from ferdata.errors import FerdataError
from ferdata.render.params import N_UNIFORMS, P, PARAM_NAMES, params_from_uniforms, sample_params, sample_rng
from ferdata.torch import _render_ops as ops
from ferdata.torch.render import TorchRenderer, device_uniforms
from fixtures.torch_renders import _pair


def _compare(ctx, tr, idx):
    out = tr.render(idx)
    diffs, ious, lmd = [], [], []
    for j, g in enumerate(idx):
        ref = ctx.render_sample(int(g))
        a = out["image"][j].permute(1, 2, 0).numpy().astype(np.int16)
        diffs.append(np.abs(a - ref["image"].astype(np.int16)).mean())
        m1, m2 = out["mask"][j].numpy(), ref["mask"]
        ious.append((m1 & m2).sum() / max((m1 | m2).sum(), 1))
        lmd.append(np.nanmax(np.abs(out["landmarks"][j].numpy() - ref["landmarks"])))
        assert int(out["label"][j]) == ref["label"]
        assert int(out["background"][j]) == ref["background"]
        keep = np.arange(len(PARAM_NAMES)) != P["lum_w"]
        np.testing.assert_array_equal(out["params"][j].numpy()[keep], ref["params"][keep])
        assert abs(float(out["params"][j, P["lum_w"]]) - ref["params"][P["lum_w"]]) < 0.01
    return np.array(diffs), np.array(ious), np.array(lmd)


def test_matches_shard_renderer_on_256_samples(sample_dir, tmp_path):
    ctx, tr = _pair(sample_dir, tmp_path)
    idx = np.arange(256) * 3 + 1
    d, iou, lm = _compare(ctx, tr, idx)
    assert np.median(d) <= 2.0 and d.max() <= 4.0, (np.median(d), d.max())
    assert iou.min() >= 0.97
    assert lm.max() <= 0.05


@pytest.mark.parametrize("kw", [dict(gray=True), dict(blend="hard"), dict(luminance="reinhard"),
                                dict(luminance="none", perspective=0.05), dict(size=40),
                                dict(size=320)])   # 320: crops of the 300-px backgrounds are rescaled
def test_matches_other_configs(sample_dir, tmp_path, kw):
    ctx, tr = _pair(sample_dir, tmp_path, **kw)
    d, iou, lm = _compare(ctx, tr, np.arange(24) * 7)
    assert np.median(d) <= 2.0, np.median(d)
    assert iou.min() >= 0.97 and lm.max() <= 0.05


def test_deterministic_and_batch_independent(sample_dir, tmp_path):
    _, tr = _pair(sample_dir, tmp_path)
    idx = np.arange(40, 72)
    a, b = tr.render(idx), tr.render(idx)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["params"], b["params"])
    # a sample does not depend on its batch-mates or its position
    c = tr.render(idx[::-1].copy())
    assert torch.equal(a["image"], c["image"].flip(0))
    d = tr.render(idx[5:9])
    assert torch.equal(a["image"][5:9], d["image"])


def test_params_from_uniforms_equals_sample_params():
    cfg = RenderConfig(size=96, perspective=0.05, noise=0.1).resolved()
    for f, i in [(0, 0), (3, 17), (11, 9230)]:
        u = sample_rng(7, f, i).random(N_UNIFORMS)
        np.testing.assert_array_equal(params_from_uniforms(u[None], cfg)[0], sample_params(sample_rng(7, f, i), cfg))


def test_device_params_have_the_same_distributions():
    cfg = RenderConfig().resolved()
    n = 4000
    f, i = np.arange(n) % 5, np.arange(n) // 5
    u = device_uniforms(3, torch.from_numpy(f), torch.from_numpy(i)).numpy()
    assert u.min() >= 0 and u.max() < 1
    for k in range(N_UNIFORMS):   # every column uniform
        assert stats.kstest(u[:, k], "uniform").pvalue > 1e-3, k
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.1
    dev = params_from_uniforms(u, cfg)
    rep = np.stack([sample_params(sample_rng(3, a, b), cfg) for a, b in zip(f[:1500], i[:1500])])
    for name in ("scale", "angle", "tx", "brightness", "blur_sigma", "noise_sigma"):
        assert stats.ks_2samp(dev[:, P[name]], rep[:, P[name]]).pvalue > 1e-3, name
    # keyed by (seed, face, i): the same key gives the same draws, another seed other draws
    again = device_uniforms(3, torch.from_numpy(f[:10]), torch.from_numpy(i[:10])).numpy()
    np.testing.assert_array_equal(again, u[:10])
    assert not np.allclose(device_uniforms(4, torch.from_numpy(f[:10]), torch.from_numpy(i[:10])).numpy(), u[:10])


def test_blur_equals_opencv_per_sample(rng):
    """One depthwise blur for a batch with a different kernel per sample: each equals cv2.GaussianBlur."""
    img = rng.random((3, 2, 33, 40)).astype(np.float32) * 255
    sigmas = (0.7, 1.5, 3.0)
    kerns = [ops.gaussian_kernel(s) for s in sigmas]
    K = max(len(k) for k in kerns)
    bank = np.stack([np.pad(k, (K - len(k)) // 2) for k in kerns])
    for mode, border in (("reflect", cv2.BORDER_REFLECT), ("replicate", cv2.BORDER_REPLICATE)):
        got = ops.blur(torch.from_numpy(img), bank, mode).numpy()
        for j, sigma in enumerate(sigmas):
            ref = cv2.GaussianBlur(img[j].transpose(1, 2, 0), (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=border)
            np.testing.assert_allclose(got[j].transpose(1, 2, 0), ref, atol=2e-3)


def test_sampled_pixels_equal_grid_sample(rng):
    """The RGB sampled at chosen pixels equals the full grid_sample warp there, zero border included."""
    from ferdata.torch.render import geometry_matrices

    S, B = 24, 6
    faces = torch.from_numpy(rng.integers(0, 256, (3, 3, S, S), dtype=np.uint8))
    cfg = RenderConfig(size=S, perspective=0.1, scale_min=0.5, scale_max=1.6, translate=0.4).resolved()
    p = params_from_uniforms(rng.random((B, N_UNIFORMS)), cfg)
    grid = ops.source_grid(torch.from_numpy(geometry_matrices(p, S)), S)
    fidx = torch.from_numpy(rng.integers(0, 3, B))
    full = ops.warp(faces.index_select(0, fidx).to(torch.float32), grid)
    pick = torch.from_numpy(rng.random((B, S, S)) < 0.5)
    px = ops.mask_pixels(pick)
    padded = torch.nn.functional.pad(faces, (1, 2, 1, 2)).contiguous().view(-1)
    got = ops.sample_pixels(padded, fidx, grid, px)
    want = full.reshape(-1)[px.i3.reshape(-1)].view(3, -1)
    assert (full == 0).any() and (want == 0).any()          # some picked pixels fall outside the face
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=2e-3)


def test_erode_equals_opencv(rng):
    """The ellipse erosion as max-pools of rectangles: cv2.erode's result, its border included."""
    m = rng.random((2, 37, 41)) < 0.8
    m[:, 10:20, 5:30] = True
    for r in (1, 2, 3, 4, 6):
        got = ops.erode(torch.from_numpy(m), r).numpy()
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        for j in range(2):
            np.testing.assert_array_equal(got[j], cv2.erode(m[j].astype(np.uint8), k) > 0, err_msg=f"r={r}")


def test_gray_weights_equal_opencv(rng):
    img = rng.integers(0, 256, (2, 3, 17, 19), dtype=np.uint8)
    got = ops.rgb_to_gray_u8(torch.from_numpy(img)).numpy()[:, 0]
    for j in range(2):
        np.testing.assert_array_equal(got[j], cv2.cvtColor(img[j].transpose(1, 2, 0).copy(), cv2.COLOR_RGB2GRAY))


def test_clean_target_is_face_on_black(sample_dir, tmp_path):
    _, tr = _pair(sample_dir, tmp_path)
    out = tr.render(np.arange(8), clean=True)
    clean, mask = out["clean"].numpy(), out["mask"].numpy()
    for j in range(8):
        assert (clean[j][:, ~mask[j]] == 0).all()          # black off the face
        assert clean[j][:, mask[j]].mean() > 20             # the face is there


def test_unsupported_modes_are_errors(sample_dir, tmp_path):
    faces, bgs = str(sample_dir / "faces.h5"), str(sample_dir / "backgrounds")
    with pytest.raises(FerdataError, match="poisson"):
        TorchRenderer(faces, bgs, RenderConfig(size=64, blend="poisson"))
    with pytest.raises(FerdataError, match="params"):
        TorchRenderer(faces, bgs, RenderConfig(size=64), params="gpu")


# ---------------------------------------------------------------- live loader
def _live(sample_dir, **kw):
    from ferdata.torch.live import LiveRenderLoader

    tr = TorchRenderer(str(sample_dir / "faces.h5"), str(sample_dir / "backgrounds"),
                       RenderConfig(size=32, per_face=10_000), device="cpu")
    return LiveRenderLoader(tr, batch_size=8, epoch_size=48, seed=5, **kw)


def test_live_epochs_are_fresh_and_seeded(sample_dir):
    a, b = _live(sample_dir), _live(sample_dir)
    e0 = a.indices()
    a.set_epoch(1)
    e1 = a.indices()
    assert len(set(e0) & set(e1)) == 0                      # new renders every epoch
    assert np.bincount(e0 % 2).tolist() == [24, 24]         # every face, round-robin
    b.set_epoch(1)
    np.testing.assert_array_equal(b.indices(), e1)          # a function of (seed, epoch)
    batches = list(a)
    assert len(batches) == 6 and batches[0]["image"].shape == (8, 3, 32, 32)
    np.testing.assert_array_equal(np.concatenate([x["face_index"].numpy() for x in batches]), e1 % 2)


def test_live_ranks_are_disjoint(sample_dir):
    r0, r1 = _live(sample_dir, rank=0, world_size=2), _live(sample_dir, rank=1, world_size=2)
    i0, i1 = r0.indices(), r1.indices()
    assert len(i0) == len(i1) == 24 and not set(i0) & set(i1)
    assert set(i0) | set(i1) == set(_live(sample_dir).indices())


def test_live_resume_mid_epoch_is_exact(sample_dir):
    full = _live(sample_dir, clean=True)
    full.set_epoch(2)
    ref = [x["image"] for x in full]
    part = _live(sample_dir, clean=True)
    part.set_epoch(2)
    it = iter(part)
    got = [next(it)["image"], next(it)["image"]]
    state = part.state_dict()
    again = _live(sample_dir, clean=True)
    again.load_state_dict(state)
    got += [x["image"] for x in again]
    assert len(got) == len(ref) and all(torch.equal(a, b) for a, b in zip(got, ref))
    with pytest.raises(FerdataError, match="batch_size"):
        from ferdata.torch.live import LiveRenderLoader
        LiveRenderLoader(again.renderer, batch_size=4, epoch_size=48, seed=5).load_state_dict(state)


def test_one_rgba_warp_equals_two_warps(sample_dir):
    """compose warps face + mask in one 4-channel call: bit-identical to one warp per array."""
    from ferdata.render.compose import _warp, geometry_matrix, prepare_face
    from ferdata.faces.store import FaceStore

    with FaceStore(sample_dir / "faces.h5") as fs:
        pf = prepare_face(fs.images[0], fs.masks[0], fs.landmarks[0], 96)
    cfg = RenderConfig(size=96, perspective=0.05).resolved()
    for i in range(20):
        M = geometry_matrix(sample_params(sample_rng(0, 0, i), cfg), 96)
        both = _warp(pf.rgba, M, 96)
        np.testing.assert_array_equal(both[..., :3], _warp(pf.image, M, 96))
        np.testing.assert_array_equal(both[..., 3], _warp(pf.mask, M, 96))


# ---------------------------------------------------------------- render --device
def test_render_device_writes_the_same_schema(sample_dir, tmp_path):
    import h5py
    from click.testing import CliRunner

    from ferdata.cli import main
    from ferdata.render.run import render
    from ferdata.shards.inspect import summarize, verify
    from ferdata.torch import ShardDataset

    faces, bgs = sample_dir / "faces.h5", sample_dir / "backgrounds"
    cfg = RenderConfig(size=64, per_face=40, shard_size=32)
    render(faces, bgs, tmp_path / "cpu", cfg)
    res = CliRunner().invoke(main, ["render", str(faces), "--backgrounds", str(bgs), "-o", str(tmp_path / "t"),
                                    "--size", "64", "--per-face", "40", "--shard-size", "32", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert summarize(tmp_path / "t")["renderer"] == "torch:cpu"
    assert summarize(tmp_path / "cpu")["renderer"] == "cpu"
    v = verify(tmp_path / "t")
    assert v["problems"] == [] and v["ok"] == 3
    with h5py.File(tmp_path / "t" / "shard-000001.h5") as f, h5py.File(tmp_path / "cpu" / "shard-000001.h5") as g:
        assert f.attrs["renderer"] == "torch:cpu"
        assert set(f.keys()) == set(g.keys())
        for k in ("label", "face_index", "subject", "background", "bg_box"):
            np.testing.assert_array_equal(f[k][:], g[k][:])
    a, b = ShardDataset(tmp_path / "t"), ShardDataset(tmp_path / "cpu")
    d = [np.abs(a[i]["image"].numpy().astype(int) - b[i]["image"].numpy().astype(int)).mean() for i in range(80)]
    assert np.median(d) <= 2.0
    # a CPU folder is never continued by the torch renderer (renders differ by rounding)
    from ferdata.torch.render_shards import render_shards

    with pytest.raises(FerdataError, match="renderer"):
        render_shards(faces, bgs, tmp_path / "cpu", cfg, device="cpu")
    # the torch-free renderer is handed the torch context by its caller, never finds it itself
    with pytest.raises(FerdataError, match="device and context go together"):
        render(faces, bgs, tmp_path / "t", cfg, device="cpu")


# ---------------------------------------------------------------- train_on = live
def test_live_renders_only_the_given_faces(sample_dir):
    from ferdata.torch.live import LiveRenderLoader

    tr = TorchRenderer(str(sample_dir / "faces.h5"), str(sample_dir / "backgrounds"),
                       RenderConfig(size=32, per_face=10_000), device="cpu")
    ld = LiveRenderLoader(tr, batch_size=8, epoch_size=32, face_indices=[1])
    assert set((ld.indices() % 2).tolist()) == {1}
    assert {int(x) for b in ld for x in b["face_index"]} == {1}
    assert ld.labels.tolist() == [tr.labels[1]]
    with pytest.raises(FerdataError, match="face_indices"):
        LiveRenderLoader(tr, batch_size=8, face_indices=[5])


def test_train_on_live_learns_on_the_sample(tmp_path):
    import json

    from fixtures import train_fixtures as tf
    from ferdata.train.config import TrainConfig
    from ferdata.train import fit

    cfg = TrainConfig(train_on="live", eval_on="renders", protocol="holdout", epochs=3, batch_size=16, lr=2e-3,
                      num_workers=0, sample_per_face=32, sample_size=32, eval_batch_size=64, live_epoch_size=96,
                      model="preactresnet18", model_kwargs=tf.TINY_MODEL, seed=1)
    res = fit(cfg, tmp_path)
    recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and recs[-1]["train_loss"] < recs[0]["train_loss"]
    assert res["test"]["n"] > 0
    conf = json.loads((tmp_path / "config.json").read_text())
    assert conf["train_on"] == "live" and conf["resolved"]["data"]["train_n"] == 96


def test_train_on_live_keeps_held_out_subjects_out(tmp_path):
    """kfold + live: the renderer only ever draws faces of the training side."""
    from fixtures import train_fixtures as tf
    from ferdata.train.config import TrainConfig
    from ferdata.faces.store import FaceStore
    from ferdata.train import data as tdata
    from ferdata.train.models import model_inputs

    store = tf.make_store(tmp_path / "faces.h5", n_subjects=6)
    cfg = TrainConfig(train_on="live", faces=str(store), backgrounds=None, protocol="kfold", folds=3,
                      val_subjects=1, batch_size=8, live_epoch_size=64, num_workers=0, sample_size=32,
                      model="preactresnet18", model_kwargs=tf.TINY_MODEL)
    with pytest.raises(FerdataError, match="backgrounds"):
        tdata.build(cfg, tmp_path / "run", model_inputs(cfg.model, **cfg.model_kwargs))
    from ferdata.render.backgrounds import make_sample_backgrounds
    bg = make_sample_backgrounds(tmp_path / "bg")
    cfg = dataclasses.replace(cfg, backgrounds=str(bg))
    d = tdata.build(cfg, tmp_path / "run", model_inputs(cfg.model, **cfg.model_kwargs), device="cpu")
    with FaceStore(store) as fs:
        subjects = np.asarray(fs.subjects)
    held = set(d.split.val.subjects) | set(d.split.test.subjects)
    seen = {subjects[int(f)] for b in d.train_loader for f in b["face_index"]}
    assert seen and not seen & held


# ---------------------------------------------------------------- indices like a sequence's
def test_render_indices_are_checked_like_a_sequence(sample_dir):
    from ferdata.torch.live import LiveRenderLoader

    tr = TorchRenderer(str(sample_dir / "faces.h5"), str(sample_dir / "backgrounds"),
                       RenderConfig(size=32, per_face=10), device="cpu")
    n = len(tr)
    a, b = tr.render([n - 1]), tr.render([-1])
    assert torch.equal(a["image"], b["image"]) and int(a["face_index"][0]) == (n - 1) % tr.n_faces
    for bad, err, text in (([n], IndexError, f"sample index {n} out of range"),
                           ([2**63 - 1], IndexError, "out of range"), ([-n - 1], IndexError, "out of range"),
                           ([1.7], TypeError, "got 1.7"), (np.array([0.5]), TypeError, "got 0.5"),
                           ([True], TypeError, "got True"), ([], ValueError, "empty batch")):
        with pytest.raises(err, match=text):
            tr.render(bad)
    for bad, text in (([0.5], "got 0.5"), ([2], "face index 2 out of range"), ([], "empty batch")):
        with pytest.raises(FerdataError, match=text):
            LiveRenderLoader(tr, batch_size=4, epoch_size=8, face_indices=bad)
    with pytest.raises(FerdataError, match="fewer than one batch"):
        LiveRenderLoader(tr, batch_size=16, epoch_size=8)
    with pytest.raises(FerdataError, match="epoch_size must be >= 1"):
        LiveRenderLoader(tr, batch_size=4, epoch_size=0)
    assert len(LiveRenderLoader(tr, batch_size=16, epoch_size=8, drop_last=False)) == 1
