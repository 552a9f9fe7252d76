"""LBP: bit-exact with scikit-image, the 3x3 operator, histograms, errors, files, CLI."""
import json
import warnings
from pathlib import Path

import cv2
import h5py
import matplotlib
import numpy as np
import pytest
from click.testing import CliRunner
from skimage.feature import local_binary_pattern

from ferdata.features import (add_lbp_to_h5, add_lbp_to_shards, code_dtype, dataset_name, lbp,
                              lbp_histogram, lbp_image_folder, n_bins)
from ferdata.features.lbp_io import to_gray

SKIMAGE_METHOD = {"circle": "default", "uniform": "uniform", "ror": "ror", "nri_uniform": "nri_uniform"}


def skimage_lbp(img, P, R, variant):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its float-input warning
        return local_binary_pattern(img, P, R, SKIMAGE_METHOD[variant])


def assert_same_as_skimage(img, variant, P, R):
    ours = lbp(img, variant, P, R)
    ref = skimage_lbp(img, P, R, variant)
    assert ours.dtype == code_dtype(variant, P)
    np.testing.assert_array_equal(ours.astype(np.float64), ref)


def rough_image(rng, shape, dtype):
    """Random image with many ties (repeated levels), the hard case for '>='."""
    levels = rng.integers(0, 5, shape) * 60
    if dtype == np.uint8:
        return levels.astype(np.uint8)
    return levels / 255.0 + rng.random(shape) * (rng.random(shape) < 0.5)


def original_reference(img):
    """The 3x3 definition in plain NumPy: bit k for neighbour k >= centre, outside reads 0."""
    H, W = img.shape
    pad = np.zeros((H + 2, W + 2), np.float64)
    pad[1:-1, 1:-1] = img
    center = pad[1:-1, 1:-1]
    # bit 0 east, then counter-clockwise: NE, N, NW, W, SW, S, SE  (dr, dc)
    offsets = [(0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1)]
    code = np.zeros((H, W), np.int64)
    for bit, (dr, dc) in enumerate(offsets):
        nb = pad[1 + dr:1 + dr + H, 1 + dc:1 + dc + W]
        code |= (nb >= center).astype(np.int64) << bit
    return code


@pytest.fixture(scope="module")
def faces_gray():
    """Two real public-domain faces, gray: astronaut (uint8 + float) and Grace Hopper."""
    from skimage.color import rgb2gray
    from skimage.data import astronaut

    astro = astronaut()[30:190, 160:320]  # the face, 160x160
    hopper_path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    hopper = cv2.imread(str(hopper_path), cv2.IMREAD_GRAYSCALE)[60:260, 150:350]
    return {
        "astronaut_u8": cv2.cvtColor(astro, cv2.COLOR_RGB2GRAY),
        "astronaut_f64": rgb2gray(astro),
        "hopper_u8": hopper,
        "hopper_f64": hopper / 255.0,
    }


# ---------------------------------------------------------------- skimage compatibility

@pytest.mark.parametrize("R", [1, 1.5, 2, 3])
@pytest.mark.parametrize("P", [4, 8, 16, 24])
@pytest.mark.parametrize("variant", ["circle", "uniform", "ror", "nri_uniform"])
def test_matches_skimage_random(variant, P, R):
    rng = np.random.default_rng(P * 100 + int(R * 10))
    for dtype in (np.uint8, np.float64):
        assert_same_as_skimage(rough_image(rng, (23, 31), dtype), variant, P, R)


@pytest.mark.parametrize("P,R", [(4, 1), (8, 1), (8, 1.5), (16, 2), (24, 3)])
@pytest.mark.parametrize("variant", ["circle", "uniform", "ror", "nri_uniform"])
def test_matches_skimage_real_faces(faces_gray, variant, P, R):
    for img in faces_gray.values():
        assert_same_as_skimage(img, variant, P, R)


@pytest.mark.parametrize("shape", [(1, 1), (1, 17), (17, 1), (2, 3), (3, 2), (5, 4)])
@pytest.mark.parametrize("variant", ["circle", "uniform", "ror", "nri_uniform"])
def test_matches_skimage_tiny_images(variant, shape):
    rng = np.random.default_rng(7)
    for P, R in [(4, 1), (8, 1), (8, 2.5), (16, 2)]:
        for dtype in (np.uint8, np.float64):
            assert_same_as_skimage(rough_image(rng, shape, dtype), variant, P, R)


def test_matches_skimage_any_P_and_R():
    rng = np.random.default_rng(11)
    img = rough_image(rng, (19, 21), np.uint8)
    for P in (1, 2, 3, 5, 7, 12, 31):
        for R in (0.5, 1.25, 2.7, 12.0):
            for variant in ("circle", "uniform", "ror", "nri_uniform"):
                assert_same_as_skimage(img, variant, P, R)


def test_P32_is_skimage_without_its_int32_overflow():
    img = rough_image(np.random.default_rng(3), (15, 16), np.uint8)
    ours = lbp(img, "circle", 32, 2)
    assert ours.dtype == np.uint32
    ref = skimage_lbp(img, 32, 2, "circle")
    np.testing.assert_array_equal(ours.view(np.int32), ref.astype(np.int32))
    assert_same_as_skimage(img, "uniform", 32, 2)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32, bool])
def test_other_dtypes_convert_like_skimage(dtype):
    rng = np.random.default_rng(5)
    img = (rng.integers(0, 2, (20, 22)) if dtype is bool else rng.integers(0, 4000, (20, 22))).astype(dtype)
    assert_same_as_skimage(img, "circle", 8, 1.5)
    assert_same_as_skimage(img, "uniform", 16, 2)


def test_uniform_and_nri_codes_on_known_patterns():
    # a bright centre: all neighbours smaller -> code 0; a dark centre -> all ones
    img = np.full((5, 5), 100, np.uint8)
    img[2, 2] = 200
    assert lbp(img, "circle")[2, 2] == 0
    img[2, 2] = 0
    assert lbp(img, "circle")[2, 2] == 255
    assert lbp(img, "uniform")[2, 2] == 8  # all ones: uniform, 8 set bits
    assert lbp(img, "nri_uniform")[2, 2] == 8 * 7 + 1
    assert lbp(img, "ror")[2, 2] == 255


# ---------------------------------------------------------------- original (3x3)

@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2), (3, 3), (37, 41)])
def test_original_matches_numpy_reference(shape):
    rng = np.random.default_rng(2)
    for img in (rough_image(rng, shape, np.uint8), rough_image(rng, shape, np.float64)):
        codes = lbp(img, "original")
        assert codes.dtype == np.uint8
        np.testing.assert_array_equal(codes, original_reference(img))


def test_original_on_a_face_differs_from_circle_only_on_diagonals(faces_gray):
    img = faces_gray["astronaut_u8"]
    orig = lbp(img, "original")
    np.testing.assert_array_equal(orig, original_reference(img))
    circ = lbp(img, "circle", 8, 1)
    axis_bits = 0b01010101  # E, N, W, S are integer offsets in both
    np.testing.assert_array_equal(orig & axis_bits, circ & axis_bits)
    assert (orig != circ).mean() > 0.05


def test_original_bit_order_documented_example():
    img = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90]], np.uint8)
    assert lbp(img, "original")[1, 1] == 1 + 32 + 64 + 128  # E, SW, S, SE


# ---------------------------------------------------------------- batch, out=, threads

@pytest.mark.parametrize("variant,P,R", [("circle", 8, 1), ("uniform", 16, 2), ("original", 8, 1)])
def test_batch_equals_per_image(variant, P, R):
    rng = np.random.default_rng(9)
    batch = rough_image(rng, (5, 18, 21), np.uint8)
    codes = lbp(batch, variant, P, R)
    assert codes.shape == batch.shape
    for i in range(len(batch)):
        np.testing.assert_array_equal(codes[i], lbp(batch[i], variant, P, R))


def test_out_is_written_in_place():
    rng = np.random.default_rng(4)
    batch = rough_image(rng, (3, 16, 20), np.uint8)
    out = np.zeros(batch.shape, np.uint8)
    assert lbp(batch, "uniform", out=out) is out
    np.testing.assert_array_equal(out, lbp(batch, "uniform"))
    big = np.zeros((3, 16, 20), np.int32)  # any integer dtype that holds the codes
    lbp(batch, "circle", 16, 2, out=big)
    np.testing.assert_array_equal(big, lbp(batch, "circle", 16, 2))
    view = np.zeros((2, 3, 16, 20), np.uint8)[1]  # a view of a bigger buffer
    lbp(batch[0], "circle", out=view[0])
    np.testing.assert_array_equal(view[0], lbp(batch[0], "circle"))


def test_result_independent_of_thread_count():
    import numba

    img = rough_image(np.random.default_rng(8), (3, 130, 97), np.uint8)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = lbp(img, "circle", 16, 2)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = lbp(img, "circle", 16, 2)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, many)  # 1 thread vs all (batch: parallel kernel)
    np.testing.assert_array_equal(many[1], lbp(img[1], "circle", 16, 2))  # one image: serial kernel


def test_code_dtypes_and_bins():
    assert code_dtype("circle", 8) == np.uint8 and code_dtype("circle", 9) == np.uint16
    assert code_dtype("circle", 17) == np.uint32 and code_dtype("uniform", 32) == np.uint8
    assert code_dtype("nri_uniform", 16) == np.uint8 and code_dtype("nri_uniform", 17) == np.uint16
    assert [n_bins(v, 8) for v in ("circle", "uniform", "nri_uniform", "ror", "original")] == \
        [256, 10, 59, 256, 256]
    assert dataset_name("circle", 8, 1) == "lbp/circle_P8_R1"
    assert dataset_name("uniform", 16, 1.5) == "lbp/uniform_P16_R1.5"
    assert dataset_name("original") == "lbp/original"


# ---------------------------------------------------------------- validation errors

def test_error_image_ndim():
    with pytest.raises(ValueError, match="image"):
        lbp(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="image"):
        lbp(np.zeros(7, np.uint8))


def test_error_image_dtype():
    with pytest.raises(ValueError, match="image"):
        lbp(np.zeros((4, 4), np.complex64))


def test_error_image_nan():
    img = np.zeros((6, 6))
    img[2, 3] = np.nan
    with pytest.raises(ValueError, match="image contains NaN"):
        lbp(img)


def test_error_image_inf():
    img = np.zeros((6, 6), np.float32)
    img[0, 0] = np.inf
    with pytest.raises(ValueError, match="image contains NaN or infinite"):
        lbp(img)


@pytest.mark.parametrize("P", [0, -1, 33, 8.0, True])
def test_error_P(P):
    with pytest.raises(ValueError, match=r"^P "):
        lbp(np.zeros((4, 4), np.uint8), "circle", P=P)


@pytest.mark.parametrize("R", [0, -1.0, float("nan"), float("inf"), "1"])
def test_error_R(R):
    with pytest.raises(ValueError, match=r"^R "):
        lbp(np.zeros((4, 4), np.uint8), "circle", R=R)


def test_error_variant():
    with pytest.raises(ValueError, match="variant"):
        lbp(np.zeros((4, 4), np.uint8), "riu2")


def test_error_original_needs_P8_R1():
    with pytest.raises(ValueError, match=r"^P must be 8"):
        lbp(np.zeros((4, 4), np.uint8), "original", P=16)
    with pytest.raises(ValueError, match=r"^R must be 1"):
        lbp(np.zeros((4, 4), np.uint8), "original", R=2)


def test_error_out():
    img = np.zeros((4, 5), np.uint8)
    with pytest.raises(ValueError, match="out must have the shape"):
        lbp(img, out=np.zeros((5, 4), np.uint8))
    with pytest.raises(ValueError, match="out must have an integer dtype"):
        lbp(img, "circle", 16, 2, out=np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="out must have an integer dtype"):
        lbp(img, out=np.zeros((4, 5), np.float32))
    ro = np.zeros((4, 5), np.uint8)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        lbp(img, out=ro)


# ---------------------------------------------------------------- histograms

def histogram_reference(codes, nb, gy, gx):
    H, W = codes.shape
    feats = []
    for i in range(gy):
        for j in range(gx):
            cell = codes[i * H // gy:(i + 1) * H // gy, j * W // gx:(j + 1) * W // gx]
            feats.append(np.bincount(cell.ravel(), minlength=nb) / cell.size)
    return np.concatenate(feats)


@pytest.mark.parametrize("variant,P", [("circle", 8), ("uniform", 8), ("nri_uniform", 8),
                                       ("ror", 8), ("original", 8), ("uniform", 24)])
def test_histogram_matches_reference(faces_gray, variant, P):
    img = faces_gray["hopper_u8"][:101, :87]  # sizes not divisible by the grid
    codes = lbp(img, variant, P, 1 if variant == "original" else 2 if P > 8 else 1)
    feat = lbp_histogram(codes, P, variant, grid=(7, 7))
    nb = n_bins(variant, P)
    assert feat.shape == (49 * nb,) and feat.dtype == np.float32
    np.testing.assert_allclose(feat, histogram_reference(codes, nb, 7, 7), rtol=1e-6)
    np.testing.assert_allclose(feat.reshape(49, nb).sum(1), 1, rtol=1e-5)


def test_histogram_batch_and_counts():
    rng = np.random.default_rng(1)
    codes = lbp(rough_image(rng, (4, 30, 36), np.uint8), "uniform")
    feats = lbp_histogram(codes, 8, "uniform", grid=(3, 4), normalize=False)
    assert feats.shape == (4, 3 * 4 * 10)
    assert feats.sum(1).tolist() == [30 * 36] * 4
    for i in range(4):
        np.testing.assert_array_equal(feats[i], lbp_histogram(codes[i], 8, "uniform", (3, 4), False))
    # int64 codes (e.g. from skimage) work too
    sk = skimage_lbp(rough_image(rng, (30, 36), np.uint8), 8, 1, "uniform").astype(np.int64)
    assert lbp_histogram(sk, 8, "uniform", (2, 2)).shape == (40,)


def test_histogram_errors():
    codes = lbp(np.zeros((20, 20), np.uint8), "circle")
    with pytest.raises(ValueError, match="codes must be in"):
        lbp_histogram(codes, 8, "uniform")  # circle codes up to 255 > 9
    with pytest.raises(ValueError, match="codes must be in"):
        lbp_histogram(np.full((20, 20), -1, np.int64), 8, "circle")
    with pytest.raises(ValueError, match="grid"):
        lbp_histogram(codes, 8, "circle", grid=(21, 2))
    with pytest.raises(ValueError, match="grid"):
        lbp_histogram(codes, 8, "circle", grid=(0, 2))
    with pytest.raises(ValueError, match="codes must be a 2-D"):
        lbp_histogram(codes.astype(np.float32), 8, "circle")
    with pytest.raises(ValueError, match="P must be <= 16"):
        lbp_histogram(codes, 24, "circle")
    with pytest.raises(ValueError, match="variant"):
        lbp_histogram(codes, 8, "bogus")


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


def test_add_lbp_to_shards_in_worker_processes(tmp_path):
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


# ---------------------------------------------------------------- cached call path

def test_repeated_calls_validate_and_match_skimage():
    """The second call of a shape takes the cached path: same codes, same refusals."""
    rng = np.random.default_rng(12)
    img = rough_image(rng, (33, 29), np.uint8)
    for _ in range(3):  # first call validates and caches, later calls reuse the plan
        np.testing.assert_array_equal(lbp(img, "uniform", 16, 2), skimage_lbp(img, 16, 2, "uniform"))
    assert lbp(img, "circle", np.int64(8), np.float32(1)).tolist() == lbp(img, "circle", 8, 1.0).tolist()
    for P in (8.0, True):  # equal to a cached key (8 == 8.0, True == 1) but still refused
        with pytest.raises(ValueError, match="P"):
            lbp(img, "circle", P, 1)
    ro = img.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(lbp(ro, "circle", 8, 1), lbp(img, "circle", 8, 1))
    np.testing.assert_array_equal(lbp(img[:, ::2], "circle"), skimage_lbp(img[:, ::2], 8, 1, "circle"))
    a, b = lbp(img, "circle"), lbp(img, "circle")
    assert a is not b and np.shares_memory(a, img) is False


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
