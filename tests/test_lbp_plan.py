"""Which kernel a call runs (ferdata.features._lbp_plan; docs/lbp.md): one face crop
runs on the calling thread at P <= 8, and is split over the threads when it is more
work (P = 16), with the same codes either way."""
import numpy as np
from skimage.feature import local_binary_pattern

from ferdata.features import _lbp_kernels as k
from ferdata.features import _lbp_plan as pl
from ferdata.features import lbp


def test_one_crop_runs_serial_at_p8_and_parallel_at_p16():
    assert pl.kernel_args("circle", 8, 1.0, (1, 128, 128), 2)[0] is k.lbp_circle_serial
    assert pl.kernel_args("circle", 16, 2.0, (1, 128, 128), 2)[0] is k.lbp_circle
    assert pl.kernel_args("circle", 16, 2.0, (1, 128, 128), 1)[0] is k.lbp_circle_serial
    assert pl.kernel_args("circle", 16, 2.0, (1, 48, 48), 2)[0] is k.lbp_circle_serial


def test_split_crop_codes_equal_skimage():
    img = np.random.default_rng(3).integers(0, 256, (128, 128), dtype=np.uint8)
    img[:, :40] = 7  # a flat band: ties decided by float64 rounding
    for _ in range(2):  # second call: the registered fast path
        np.testing.assert_array_equal(lbp(img, "circle", 16, 2),
                                      local_binary_pattern(img, 16, 2).astype(np.uint16))
