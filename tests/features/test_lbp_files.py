"""LBP on files: face stores, shards (manifest kept true), image folders, the ``ferdata lbp``
command, the figure, the warmup (docs/lbp.md). The kernels' compatibility with
scikit-image is in test_lbp.py."""
import json

import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ferdata.features import add_lbp_to_h5, add_lbp_to_shards, lbp, lbp_image_folder
from ferdata.features.lbp_io import to_gray
from fixtures.lbp_reference import original_reference
# ---------------------------------------------------------------- files and CLI

def _faces_rgb(n=3, size=40):
    from skimage.data import astronaut

    face = cv2.resize(astronaut()[30:190, 160:320], (size, size), interpolation=cv2.INTER_AREA)
    return np.stack([np.roll(face, 3 * i, axis=1) for i in range(n)])


def make_face_store(path, n=3, size=40):
    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=_faces_rgb(n, size), chunks=(1, size, size, 3))
        f.attrs["size"] = size
    return path


def make_shard_folder(folder, encoding="raw", n_shards=2, n=3, size=32):
    from ferdata.shards.manifest import file_sha256, init_manifest, record_shard, shard_name
    from ferdata.shards.schema import encode_jpeg

    folder.mkdir(parents=True, exist_ok=True)
    init_manifest(folder, {"config_hash": "test"})
    for k in range(n_shards):
        imgs = _faces_rgb(n, size)
        name = shard_name(k)
        with h5py.File(folder / name, "w") as f:
            if encoding == "raw":
                f.create_dataset("image", data=imgs)
            else:
                blobs = [np.frombuffer(encode_jpeg(im), np.uint8) for im in imgs]
                f.create_dataset("image", data=np.concatenate(blobs))
                f.create_dataset("image_offsets", data=np.cumsum([0] + [len(b) for b in blobs]))
            f.attrs["encoding"] = encoding
            f.attrs["size"] = size
        record_shard(folder, name, {"n": n, "bytes": (folder / name).stat().st_size,
                                    "sha256": file_sha256(folder / name)})
    return folder


def test_to_gray_is_cv2_rgb2gray():
    rgb = _faces_rgb(2, 24)
    gray = to_gray(rgb)
    assert gray.shape == (2, 24, 24)
    np.testing.assert_array_equal(gray[1], cv2.cvtColor(rgb[1], cv2.COLOR_RGB2GRAY))


def test_add_lbp_to_face_store(tmp_path):
    path = make_face_store(tmp_path / "faces.h5")
    assert add_lbp_to_h5(path, "uniform", 8, 1) is True
    with h5py.File(path) as f:
        ds = f["lbp/uniform_P8_R1"]
        assert ds.shape == (3, 40, 40) and ds.dtype == np.uint8 and ds.chunks == (1, 40, 40)
        assert ds.attrs["variant"] == "uniform" and ds.attrs["P"] == 8
        np.testing.assert_array_equal(ds[:], lbp(to_gray(f["image"][:]), "uniform", 8, 1))
    mtime = path.stat().st_mtime_ns
    assert add_lbp_to_h5(path, "uniform", 8, 1) is False  # present: skipped, file untouched
    assert path.stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob("*.tmp-*"))


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_add_lbp_to_shards_updates_manifest(tmp_path, encoding):
    from ferdata.shards.manifest import file_sha256, load_manifest
    from ferdata.shards.reader import read_images

    folder = make_shard_folder(tmp_path / "shards", encoding)
    res = add_lbp_to_shards(folder, "circle", 16, 2)
    assert res == {"shard-000000.h5": True, "shard-000001.h5": True}
    m = load_manifest(folder)
    assert m["lbp"] == ["lbp/circle_P16_R2"]
    for name, e in m["shards"].items():
        assert e["sha256"] == file_sha256(folder / name) and e["bytes"] == (folder / name).stat().st_size
        with h5py.File(folder / name) as f:
            ds = f["lbp/circle_P16_R2"]
            assert ds.dtype == np.uint16 and ds.chunks is None
            np.testing.assert_array_equal(ds[:], lbp(to_gray(read_images(f, 0, 3)), "circle", 16, 2))
    assert add_lbp_to_shards(folder, "circle", 16, 2) == {"shard-000000.h5": False, "shard-000001.h5": False}


def test_add_lbp_to_shards_repairs_stale_manifest_entry(tmp_path, monkeypatch):
    """A crash between the rename and the manifest update is finished by the rerun."""
    import ferdata.features.lbp_shards as ls
    from ferdata.shards.inspect import verify
    from ferdata.shards.manifest import file_sha256, load_manifest

    folder = make_shard_folder(tmp_path / "shards", n_shards=1)
    real = ls.set_entry_state

    def crash_at_commit(*a, **k):
        if "sha256" in k:  # the commit after the rename
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(ls, "set_entry_state", crash_at_commit)
    with pytest.raises(KeyboardInterrupt):
        add_lbp_to_shards(folder, "uniform", 8, 1)
    monkeypatch.setattr(ls, "set_entry_state", real)
    assert "interrupted" in verify(folder)["problems"][0][1]
    assert add_lbp_to_shards(folder, "uniform", 8, 1) == {"shard-000000.h5": False}
    e = load_manifest(folder)["shards"]["shard-000000.h5"]
    assert e["sha256"] == file_sha256(folder / "shard-000000.h5") and "pending" not in e
    assert e["lbp"] == ["lbp/uniform_P8_R1"] and load_manifest(folder)["lbp"] == ["lbp/uniform_P8_R1"]


def test_add_lbp_to_shards_on_two_threads(tmp_path):
    folder = make_shard_folder(tmp_path / "shards", n_shards=2)
    assert set(add_lbp_to_shards(folder, "uniform", 8, 1, workers=2).values()) == {True}
    with h5py.File(folder / "shard-000001.h5") as f:
        np.testing.assert_array_equal(f["lbp/uniform_P8_R1"][:], lbp(to_gray(f["image"][:]), "uniform"))


def make_image_folder(root):
    faces = _faces_rgb(3, 30)
    (root / "sub").mkdir(parents=True)
    cv2.imwrite(str(root / "a.png"), cv2.cvtColor(faces[0], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "sub" / "b.jpg"), cv2.cvtColor(faces[1], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "sub" / "c.png"), cv2.cvtColor(faces[2], cv2.COLOR_RGB2GRAY))
    (root / "notes.txt").write_text("not an image")
    return root


def test_lbp_image_folder(tmp_path):
    src = make_image_folder(tmp_path / "photos")
    out = tmp_path / "codes"
    assert lbp_image_folder(src, out, "circle", 16, 2) == {"written": 3, "skipped": 0}
    got = cv2.imread(str(out / "sub" / "b.png"), cv2.IMREAD_UNCHANGED)
    assert got.dtype == np.uint16  # codes up to 65535
    gray = cv2.cvtColor(cv2.imread(str(src / "sub" / "b.jpg")), cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(got, lbp(gray, "circle", 16, 2))
    assert json.loads((out / "lbp.json").read_text())["P"] == 16
    assert lbp_image_folder(src, out, "circle", 16, 2) == {"written": 0, "skipped": 3}


def run_cli(*args):
    from ferdata.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_face_store(tmp_path):
    path = make_face_store(tmp_path / "faces.h5")
    r = run_cli("lbp", path, "--variant", "uniform", "--workers", "1")
    assert r.exit_code == 0, r.output
    assert "lbp/uniform_P8_R1 added" in r.output
    r = run_cli("lbp", path, "--variant", "uniform")
    assert r.exit_code == 0 and "already present" in r.output
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["lbp/uniform_P8_R1"][:], lbp(to_gray(f["image"][:]), "uniform"))


def test_cli_image_folder(tmp_path):
    src = make_image_folder(tmp_path / "photos")
    r = run_cli("lbp", src, "--variant", "original", "-o", tmp_path / "lbp")
    assert r.exit_code == 0, r.output
    got = cv2.imread(str(tmp_path / "lbp" / "a.png"), cv2.IMREAD_UNCHANGED)
    gray = cv2.cvtColor(cv2.imread(str(src / "a.png")), cv2.COLOR_BGR2GRAY)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, original_reference(gray))
    assert sorted(p.relative_to(tmp_path / "lbp").as_posix() for p in (tmp_path / "lbp").rglob("*.png")) == \
        ["a.png", "sub/b.png", "sub/c.png"]


def test_cli_shards(tmp_path):
    folder = make_shard_folder(tmp_path / "shards")
    r = run_cli("lbp", folder, "--variant", "circle", "-P", "8", "-R", "1", "--workers", "1")
    assert r.exit_code == 0, r.output
    assert "added to 2 shards" in r.output
    with h5py.File(folder / "shard-000000.h5") as f:
        assert f["lbp/circle_P8_R1"].shape == (3, 32, 32)


def test_cli_errors(tmp_path):
    src = make_image_folder(tmp_path / "photos")
    r = run_cli("lbp", src)  # an image folder needs -o
    assert r.exit_code == 2 and "--out" in r.output
    r = run_cli("lbp", src, "-P", "40", "-o", tmp_path / "x")
    assert r.exit_code == 2 and "P (number of neighbours)" in r.output
    r = run_cli("lbp", src, "--variant", "circle", "-P", "24", "-o", tmp_path / "x")
    assert r.exit_code == 1 and "cannot be stored as PNG" in r.output
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    r = run_cli("lbp", bad)
    assert r.exit_code == 1 and r.output.startswith("Error: ") and "bad.h5" in r.output


def test_lbp_figure(tmp_path):
    from ferdata.features import lbp_figure

    path = lbp_figure([_faces_rgb(1, 40)[0], np.zeros((30, 30), np.uint8)], tmp_path / "fig" / "v.png",
                      titles=["face", "flat"])
    img = cv2.imread(str(path))
    assert img is not None and img.shape[1] > img.shape[0] > 100


def test_docstring_examples():
    import doctest
    import sys

    import ferdata.features  # noqa: F401

    res = doctest.testmod(sys.modules["ferdata.features.lbp"])
    assert res.attempted >= 5 and res.failed == 0


def test_cli_warmup_compiles_every_signature(tmp_path):
    from ferdata.features import _lbp_kernels as k
    from ferdata.features import _lbp_original as o

    r = run_cli("lbp", "--warmup")
    assert r.exit_code == 0 and "LBP kernels ready" in r.output and "float64 -> uint32" in r.output
    want = {(i, c) for i in ("uint8", "float64") for c in ("uint8", "uint16", "uint32")}
    for kernel in (k.lbp_circle, k.lbp_circle_serial):  # parallel (batches) and one-thread
        assert want <= {(str(sig[0].dtype), str(sig[1].dtype)) for sig in kernel.overloads}
    for kernel in (o.lbp_original, o.lbp_original_serial):
        assert {str(sig[0].dtype) for sig in kernel.overloads} >= {"uint8", "float64"}
    assert {str(sig[0].dtype) for sig in k.cell_histograms.overloads} >= {"uint8", "uint16", "uint32"}
    r = run_cli("lbp", "--warmup", tmp_path)
    assert r.exit_code == 2 and "--warmup" in r.output
    r = run_cli("lbp")
    assert r.exit_code == 2 and "PATH" in r.output
