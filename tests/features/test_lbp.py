"""LBP: bit-exact with scikit-image, the 3x3 operator, histograms, errors, the cached call
path (docs/lbp.md). Files and the CLI: test_lbp_files.py."""
import warnings
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from skimage.feature import local_binary_pattern

from ferdata.features import code_dtype, dataset_name, lbp, lbp_histogram, n_bins
from fixtures.lbp_reference import original_reference

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


@pytest.mark.parametrize("variant,P,R", [("circle", 8, 1), ("uniform", 8, 2), ("original", 8, 1)])
def test_out_may_be_the_image_itself(variant, P, R):
    # the kernels read image rows while they write code rows: an out that is the image
    # (or overlaps it) used to be overwritten under the kernel and gave wrong codes
    rng = np.random.default_rng(12)
    for shape in ((300, 300), (3, 90, 70)):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        ref = lbp(img.copy(), variant, P, R)
        for _ in range(2):  # the validating call, then the cached fast path
            a = img.copy()
            assert lbp(a, variant, P, R, out=a) is a
            np.testing.assert_array_equal(a, ref)
        big = np.zeros((2,) + shape, np.uint8)
        big[0] = img
        lbp(big[0], variant, P, R, out=big.reshape(-1)[3:3 + img.size].reshape(shape))
        np.testing.assert_array_equal(big.reshape(-1)[3:3 + img.size].reshape(shape), ref)


def test_out_on_the_fast_path_is_used_and_checked():
    img = rough_image(np.random.default_rng(5), (40, 50), np.uint8)
    ref = lbp(img, "circle")  # registers the fast path for this shape
    out = np.zeros_like(ref)
    assert lbp(img, "circle", out=out) is out
    np.testing.assert_array_equal(out, ref)
    with pytest.raises(ValueError, match="shape"):
        lbp(img, "circle", out=np.zeros((40, 51), np.uint8))
    with pytest.raises(ValueError, match="writeable"):
        ro = np.zeros_like(ref)
        ro.flags.writeable = False
        lbp(img, "circle", out=ro)


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
