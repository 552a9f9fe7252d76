"""Which kernel a call runs and how it is cut (ferdata.features._lbp_plan; docs/lbp.md):
a tiny image runs on the calling thread, one face crop is cut into one chunk per thread
(no dynamic hand-out, no chunk-size switch), a batch into many chunks handed out
dynamically; the codes are the same either way."""
import numba
import numpy as np
import pytest
from skimage.feature import local_binary_pattern

from ferdata.features import _lbp_kernels as k
from ferdata.features import _lbp_plan as pl
from ferdata.features import lbp


def test_tiny_image_serial_crop_one_chunk_per_thread_batch_many():
    assert pl.kernel_args("circle", 8, 1.0, (1, 32, 32), 2)[0] is k.lbp_circle_serial
    assert pl.kernel_args("circle", 16, 2.0, (1, 128, 128), 1)[0] is k.lbp_circle_serial
    for P, R in ((8, 1.0), (16, 2.0)):
        kernel, extra = pl.kernel_args("circle", P, R, (1, 128, 128), 2)
        assert kernel is k.lbp_circle and extra[-2:] == (64, 2)  # block rows, chunks
    kernel, extra = pl.kernel_args("circle", 8, 1.0, (1000, 128, 128), 2)
    assert kernel is k.lbp_circle and extra[-1] == 16 and extra[-2] < 128


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
def test_chunk_size_switched_only_when_chunks_outnumber_threads():
    def fn(*args):
        return None

    before = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        for shape, switched in (((1, 128, 128), False), ((1000, 128, 128), True)):
            kernel, extra = pl.kernel_args("circle", 8, 1.0, shape, 2)
            assert (pl.dynamic(kernel, fn, (None, None) + extra) is not fn) is switched
    finally:
        numba.set_num_threads(before)


def test_split_crop_codes_equal_skimage():
    img = np.random.default_rng(3).integers(0, 256, (128, 128), dtype=np.uint8)
    img[:, :40] = 7  # a flat band: ties decided by float64 rounding
    for _ in range(2):  # second call: the registered fast path
        np.testing.assert_array_equal(lbp(img, "circle", 16, 2),
                                      local_binary_pattern(img, 16, 2).astype(np.uint16))
