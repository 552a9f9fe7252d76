"""Renderer: determinism, resume, correctness of each step, bad input."""
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ferdata.cli import main
from ferdata.config import RenderConfig
from ferdata.errors import FerdataError, ShardError
from ferdata.render.compose import compose, geometry_matrix
from ferdata.render.params import P, PARAM_NAMES, identity_photometric, sample_params, sample_rng
from ferdata.render.run import RenderJob, get_context, render
from ferdata.shards.inspect import verify
from ferdata.shards.manifest import load_manifest
from ferdata.shards.reader import read_images
from ferdata.shards.schema import unpack_masks
from fixtures.shard_hashes import dataset_hashes

SMALL = dict(per_face=24, shard_size=16, size=64)


def manifest_hashes(folder):
    return {k: v["sha256"] for k, v in load_manifest(folder)["shards"].items()}


def test_params_are_a_pure_function_of_seed_face_index():
    cfg = RenderConfig().resolved()
    a = sample_params(sample_rng(7, 3, 11), cfg)
    b = sample_params(sample_rng(7, 3, 11), cfg)
    c = sample_params(sample_rng(7, 3, 12), cfg)
    d = sample_params(sample_rng(8, 3, 11), cfg)
    assert a.dtype == np.float32 and a.shape == (len(PARAM_NAMES),)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    many = np.stack([sample_params(sample_rng(0, 0, i), cfg) for i in range(2000)])
    assert 0.8 <= many[:, P["scale"]].min() and many[:, P["scale"]].max() <= 1.2
    assert np.abs(many[:, P["angle"]]).max() <= 30 and np.abs(many[:, P["angle"]]).max() > 25
    assert 0.4 < many[:, P["flip"]].mean() < 0.6
    assert 0.4 < (many[:, P["blur_sigma"]] > 0).mean() < 0.6


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_workers_and_sharding_do_not_change_samples(sample_dir, tmp_path, encoding):
    faces, bg = sample_dir / "faces.h5", sample_dir / "backgrounds"
    cfg = RenderConfig(**SMALL, encoding=encoding)
    r1 = render(faces, bg, tmp_path / "w1", cfg, workers=1)
    r2 = render(faces, bg, tmp_path / "w2", cfg, workers=2)
    assert r1["shards_made"] == r2["shards_made"] == 3
    assert manifest_hashes(tmp_path / "w1") == manifest_hashes(tmp_path / "w2")
    assert dataset_hashes(tmp_path / "w1") == dataset_hashes(tmp_path / "w2")
    # a different shard size gives the same samples in the same global order
    r3 = render(faces, bg, tmp_path / "s7", RenderConfig(**{**SMALL, "shard_size": 7}, encoding=encoding))
    assert r3["num_shards"] == 7

    def all_images(folder):
        imgs = []
        for name in sorted(load_manifest(folder)["shards"]):
            with h5py.File(folder / name, "r") as f:
                imgs.append(read_images(f, 0, f["label"].shape[0]))
        return np.concatenate(imgs)
    np.testing.assert_array_equal(all_images(tmp_path / "w1"), all_images(tmp_path / "s7"))
    assert verify(tmp_path / "w1")["problems"] == []


@pytest.mark.slow
def test_kill9_then_resume_is_identical(sample_dir, tmp_path):
    faces, bg = sample_dir / "faces.h5", sample_dir / "backgrounds"
    args = ["render", str(faces), "--backgrounds", str(bg), "--per-face", "400", "--shard-size", "16",
            "--size", "64"]
    total = 50
    full = tmp_path / "full"
    assert CliRunner().invoke(main, args + ["-o", str(full)]).exit_code == 0
    part = tmp_path / "part"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "ferdata.cli"] + args + ["-o", str(part)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        m = part / "manifest.json"
        if m.exists():
            try:
                if len(json.loads(m.read_text())["shards"]) >= 3:
                    break
            except ValueError:
                pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    listed = len(load_manifest(part)["shards"])
    assert 3 <= listed < total, f"the run was not interrupted mid-way ({listed} shards listed)"
    r = CliRunner().invoke(main, args + ["-o", str(part)])
    assert r.exit_code == 0, r.output
    assert f"{total - listed} shard(s) made, {listed} already complete" in r.output
    assert manifest_hashes(part) == manifest_hashes(full)
    assert dataset_hashes(part) == dataset_hashes(full)
    assert not list(part.glob("*.tmp-*"))


def test_different_config_into_same_folder_is_refused(sample_dir, tmp_path):
    faces, bg = sample_dir / "faces.h5", sample_dir / "backgrounds"
    render(faces, bg, tmp_path, RenderConfig(**SMALL))
    with pytest.raises(ShardError, match="different configuration"):
        render(faces, bg, tmp_path, RenderConfig(**{**SMALL, "seed": 1}))
    again = render(faces, bg, tmp_path, RenderConfig(**SMALL))
    assert again["shards_made"] == 0 and again["shards_skipped"] == 3


def test_shard_range_for_array_jobs(sample_dir, tmp_path):
    faces, bg = sample_dir / "faces.h5", sample_dir / "backgrounds"
    render(faces, bg, tmp_path / "a", RenderConfig(**SMALL), shards="0:2")
    assert sorted(load_manifest(tmp_path / "a")["shards"]) == ["shard-000000.h5", "shard-000001.h5"]
    render(faces, bg, tmp_path / "a", RenderConfig(**SMALL), shards="2:")
    render(faces, bg, tmp_path / "b", RenderConfig(**SMALL))
    assert manifest_hashes(tmp_path / "a") == manifest_hashes(tmp_path / "b")


@pytest.fixture(scope="module")
def ctx(sample_dir, tmp_path_factory):
    cfg = RenderConfig(size=128, per_face=50, luminance="none").resolved()
    out = tmp_path_factory.mktemp("ctx")
    job = RenderJob(str(sample_dir / "faces.h5"), str(sample_dir / "backgrounds"), str(out), cfg)
    return get_context(job)


def _raw(ctx, g, cfg):
    """Sample g rendered with photometric augmentation off, plus its inputs."""
    f, i = g % ctx.n_faces, g // ctx.n_faces
    p = identity_photometric(sample_params(sample_rng(cfg.seed, f, i), cfg))
    from ferdata.render.params import background_index
    bg_id = int(ctx.bg.ids[background_index(p, len(ctx.bg))])
    out = compose(ctx.prepared(f), ctx.bg.load(bg_id), p, cfg, photometric_on=False)
    return out, ctx.prepared(f), ctx.bg.load(bg_id), p


def test_composite_is_face_inside_and_background_outside(ctx):
    cfg = ctx.job.cfg
    from ferdata.render.compose import _warp, background_crop
    for g in range(12):
        out, pf, bgimg, p = _raw(ctx, g, cfg)
        M = geometry_matrix(p, cfg.size)
        face = _warp(pf.image, M, cfg.size)
        bg, _ = background_crop(bgimg, p, cfg.size)
        hard = out["mask"].astype(np.uint8)
        e = int(np.ceil(p[P["erode"]] + p[P["feather"]])) + 1
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * e + 1, 2 * e + 1))
        inner = cv2.erode(hard, k) > 0
        outer = cv2.dilate(hard, np.ones((3, 3), np.uint8)) == 0
        assert inner.sum() > 100 and outer.sum() > 100
        img = out["image"].astype(int)
        assert np.abs(img[inner] - face[inner].astype(int)).max() <= 1
        np.testing.assert_array_equal(img[outer], bg[outer].astype(int))


def test_alpha_edge_is_soft(ctx):
    cfg = ctx.job.cfg
    from ferdata.faces.masks import soft_alpha
    out, _, _, p = _raw(ctx, 3, cfg)
    hard = out["mask"]
    a = soft_alpha(hard, p[P["erode"]], p[P["feather"]])
    contour = (cv2.dilate(hard.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & ~(
        cv2.erode(hard.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0) & hard
    a8 = np.round(a[contour] * 255)
    assert ((a8 > 0) & (a8 < 255)).mean() > 0.5  # strictly between 0 and 255 along the hull



def test_hard_blend_is_face_inside_the_mask_and_background_outside(ctx):
    """blend="hard": every pixel is the warped face (inside the mask) or the background crop."""
    from ferdata.render.compose import _warp, background_crop
    hard_cfg = RenderConfig(size=128, per_face=50, luminance="none", blend="hard").resolved()
    for g in (3, 4, 7):
        _, pf, bgimg, p = _raw(ctx, g, ctx.job.cfg)
        o = compose(pf, bgimg, p.copy(), hard_cfg, photometric_on=False)
        face = _warp(pf.image, geometry_matrix(p, hard_cfg.size), hard_cfg.size)
        bg, _ = background_crop(bgimg, p, hard_cfg.size)
        inside = o["mask"]
        assert 100 < inside.sum() < inside.size - 100
        np.testing.assert_array_equal(o["image"][inside], face[inside])
        np.testing.assert_array_equal(o["image"][~inside], bg[~inside])


def test_landmarks_follow_the_face(ctx):
    cfg = ctx.job.cfg
    from ferdata.render.compose import transform_landmarks
    from ferdata.labels import MIRROR68
    seen_flip = False
    for g in range(20):
        out, pf, _, p = _raw(ctx, g, cfg)
        lm = out["landmarks"]
        np.testing.assert_allclose(lm, transform_landmarks(pf.landmarks, p, cfg.size), atol=1e-4)
        # a dot drawn at the source landmark lands on the projected one
        for j in (30, 36, 45):
            src = np.zeros((cfg.size, cfg.size), np.float32)
            cv2.circle(src, tuple(int(v) for v in np.round(pf.landmarks[j] * 16)), 32, 1.0, -1, shift=4)
            from ferdata.render.compose import _warp
            w = _warp(src, geometry_matrix(p, cfg.size), cfg.size)
            ys, xs = np.nonzero(w > 0.01)
            if len(xs) == 0:
                continue
            c = np.array([np.average(xs, weights=w[ys, xs]), np.average(ys, weights=w[ys, xs])])
            jj = MIRROR68.index(j) if p[P["flip"]] > 0.5 else j
            assert np.hypot(*(c - lm[jj])) < 0.75
        if p[P["flip"]] > 0.5:
            seen_flip = True
            # after a flip, the image's left eye (36-41) is still left of the right eye
            assert lm[36:42, 0].mean() < lm[42:48, 0].mean()
    assert seen_flip


def test_luminance_ratio_moves_face_toward_background(ctx):
    from ferdata.render.compose import _warp, background_crop, match_luminance
    cfg = ctx.job.cfg
    moved = 0
    for g in range(30):
        _, pf, bgimg, p = _raw(ctx, g, cfg)
        M = geometry_matrix(p, cfg.size)
        face = _warp(pf.image, M, cfg.size)
        hard = _warp(pf.mask, M, cfg.size) > 127
        bg, _ = background_crop(bgimg, p, cfg.size)
        L = lambda im: cv2.cvtColor(im.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[..., 0][hard].mean()  # noqa
        lf, lb = L(face), L(bg)
        new, w = match_luminance(face, bg, hard, "ratio", 0.5, 1.5)
        ln = L(np.clip(new, 0, 255))
        assert w == pytest.approx(np.clip(lb / lf, 0.5, 1.5), rel=1e-3)
        assert abs(ln - lb) <= abs(lf - lb) + 1e-3
        moved += abs(ln - lb) < abs(lf - lb) - 1
        r, _ = match_luminance(face, bg, hard, "reinhard", 0.5, 1.5)
        assert abs(L(np.clip(r, 0, 255)) - lb) <= abs(lf - lb) + 1.0
    assert moved > 10


def test_stored_sample_matches_replay(sample_dir, tmp_path):
    cfg = RenderConfig(**SMALL, encoding="raw")
    render(sample_dir / "faces.h5", sample_dir / "backgrounds", tmp_path, cfg)
    job = RenderJob(str((sample_dir / "faces.h5").resolve()), str((sample_dir / "backgrounds").resolve()),
                    str(tmp_path.resolve()), cfg.resolved())
    c = get_context(job)
    with h5py.File(tmp_path / "shard-000001.h5", "r") as f:
        j = 5
        g = int(f.attrs["first_sample"]) + j
        s = c.render_sample(g)
        np.testing.assert_array_equal(f["image"][j], s["image"])
        np.testing.assert_array_equal(unpack_masks(f["mask"][j:j + 1], 64)[0] > 0, s["mask"])
        np.testing.assert_array_equal(f["params"][j], s["params"])
        assert f["label"][j] == s["label"] and f["face_index"][j] == g % 2
        np.testing.assert_allclose(f["landmarks"][j].astype(np.float32), s["landmarks"], atol=0.05)
        assert json.loads(f.attrs["param_names"]) == list(PARAM_NAMES)


# ---- bad input ---------------------------------------------------------------

def _coco(tmp_path, sample_dir):
    import shutil
    root = tmp_path / "coco"
    shutil.copytree(sample_dir / "backgrounds", root)
    return root


def test_bad_coco_inputs(sample_dir, tmp_path):
    faces = sample_dir / "faces.h5"
    root = _coco(tmp_path, sample_dir)
    ann = root / "annotations" / "instances_sample.json"
    coco = json.loads(ann.read_text())
    # annotation pointing at a missing image
    (root / "sample" / coco["images"][0]["file_name"]).unlink()
    with pytest.raises(FerdataError, match="does not exist"):
        render(faces, root, tmp_path / "o1", RenderConfig(**SMALL))
    # corrupt json
    ann.write_text("{not json")
    with pytest.raises(FerdataError, match="instances_sample.json"):
        render(faces, root, tmp_path / "o2", RenderConfig(**SMALL))
    # missing json
    ann.unlink()
    with pytest.raises(FerdataError):
        render(faces, root, tmp_path / "o3", RenderConfig(**SMALL))
    # zero backgrounds after filtering
    with pytest.raises(FerdataError, match="no background"):
        render(faces, sample_dir / "backgrounds", tmp_path / "o4",
               RenderConfig(**SMALL, include_categories=("person",)))
    # the default filter drops the image with a person
    from ferdata.render.backgrounds import BackgroundSource
    bs = BackgroundSource.from_coco(sample_dir / "backgrounds")
    assert len(bs) == 14
    with pytest.raises(FerdataError, match="unknown category"):
        BackgroundSource.from_coco(sample_dir / "backgrounds", include_categories=("unicorn",))


def test_unwritable_output(sample_dir, tmp_path):
    """An output folder that cannot be made (its parent is a regular file: fails as root too)."""
    parent = tmp_path / "not-a-folder"
    parent.write_text("x")
    with pytest.raises(FerdataError, match="not-a-folder/x: output folder is not writable"):
        render(sample_dir / "faces.h5", sample_dir / "backgrounds", parent / "x", RenderConfig(**SMALL))
    r = CliRunner().invoke(main, ["render", str(sample_dir / "faces.h5"), "--backgrounds",
                                  str(sample_dir / "backgrounds"), "-o", str(parent / "x")])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and "not writable" in r.output
    assert parent.read_text() == "x"


def test_output_path_is_a_file(sample_dir, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(FerdataError, match="not writable"):
        render(sample_dir / "faces.h5", sample_dir / "backgrounds", f, RenderConfig(**SMALL))


def test_disk_full_mid_shard_leaves_no_partial_shard(sample_dir, tmp_path, monkeypatch):
    import errno
    import ferdata.shards.writer as w
    calls = {"n": 0}
    real = w.ShardBuffer.add

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 16 + 9:  # in the middle of the second shard
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *a, **k)
    monkeypatch.setattr(w.ShardBuffer, "add", flaky)
    r = CliRunner().invoke(main, ["render", str(sample_dir / "faces.h5"), "--backgrounds",
                                  str(sample_dir / "backgrounds"), "--per-face", "24", "--shard-size", "16",
                                  "--size", "64", "-o", str(tmp_path)])
    assert r.exit_code == 1 and "No space left on device" in r.output and "Traceback" not in r.output
    assert list(load_manifest(tmp_path)["shards"]) == ["shard-000000.h5"]
    assert not list(tmp_path.glob("*.tmp-*"))
    assert verify(tmp_path, partial=True)["problems"] == []        # what was made is intact
    assert verify(tmp_path)["missing"] == ["shard-000001.h5", "shard-000002.h5"]  # the render is unfinished
    # and h5py failing inside the file write: tmp removed too
    monkeypatch.setattr(w.ShardBuffer, "add", real)

    def boom(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(w.np, "cumsum", boom)
    with pytest.raises(OSError):
        render(sample_dir / "faces.h5", sample_dir / "backgrounds", tmp_path / "j",
               RenderConfig(**SMALL, encoding="jpeg"))
    assert not list((tmp_path / "j").glob("*.tmp-*"))
    assert load_manifest(tmp_path / "j")["shards"] == {}


def test_verify_detects_corruption(sample_dir, tmp_path):
    render(sample_dir / "faces.h5", sample_dir / "backgrounds", tmp_path, RenderConfig(**SMALL))
    p = tmp_path / "shard-000001.h5"
    b = bytearray(p.read_bytes())
    b[-100] ^= 0xFF
    p.write_bytes(bytes(b))
    res = verify(tmp_path)
    assert res["ok"] == 2 and res["problems"][0][0] == "shard-000001.h5"
    r = CliRunner().invoke(main, ["verify", str(tmp_path)])
    assert r.exit_code == 1 and "sha256" in r.output


def test_cli_render_inspect_show(sample_dir, tmp_path):
    out = tmp_path / "o"
    r = CliRunner().invoke(main, ["render", str(sample_dir / "faces.h5"), "--backgrounds",
                                  str(sample_dir / "backgrounds"), "--per-face", "10", "-o", str(out),
                                  "--set", "perspective=0.05", "--blend", "poisson"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "render_config.json").read_text())["perspective"] == 0.05
    r = CliRunner().invoke(main, ["inspect", str(out)])
    assert r.exit_code == 0 and "bytes_per_sample" in r.output
    r = CliRunner().invoke(main, ["show", str(out), "--n", "16", "-o", str(tmp_path / "s.png")])
    assert r.exit_code == 0 and (tmp_path / "s.png").stat().st_size > 1000
    r = CliRunner().invoke(main, ["render", str(sample_dir / "faces.h5"), "--backgrounds",
                                  str(sample_dir / "backgrounds"), "-o", str(out), "--set", "nope=1"])
    assert r.exit_code != 0 and "nope" in r.output


def test_dask_executor_gives_the_same_shards(sample_dir, tmp_path):
    pytest.importorskip("distributed")
    faces, bg = sample_dir / "faces.h5", sample_dir / "backgrounds"
    cfg = RenderConfig(**SMALL)
    render(faces, bg, tmp_path / "local", cfg, workers=1)
    r = render(faces, bg, tmp_path / "dask", cfg, workers=2, executor="dask")
    assert r["shards_made"] == 3
    assert manifest_hashes(tmp_path / "dask") == manifest_hashes(tmp_path / "local")
