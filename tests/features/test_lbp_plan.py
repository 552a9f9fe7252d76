"""Which kernel a call runs and how it is cut (ferdata.features._lbp_plan; docs/lbp.md):
a tiny image runs on the calling thread, a face crop in 2 tasks per thread, a batch in
cache-sized tasks; workers take the tasks from a shared atomic counter, so each task
runs exactly once whichever thread takes it; the codes are the same either way."""
import numba
import numpy as np
from numba import njit, prange
from skimage.feature import local_binary_pattern

from ferdata.features import _lbp_kernels as k
from ferdata.features import _lbp_original as o
from ferdata.features import _lbp_plan as pl
from ferdata.features import lbp
from ferdata.features._atomic import fetch_add


def test_tiny_image_serial_crop_two_tasks_per_thread_batch_cache_sized():
    assert pl.kernel_args("circle", 8, 1.0, (1, 32, 32), 2)[0] is k.lbp_circle_serial
    assert pl.kernel_args("circle", 16, 2.0, (1, 128, 128), 1)[0] is k.lbp_circle_serial
    for P, R in ((8, 1.0), (16, 2.0)):
        kernel, extra = pl.kernel_args("circle", P, R, (1, 128, 128), 2)
        assert kernel is k.lbp_circle and extra[-2:] == (32, 2)  # block rows, workers
    kernel, extra = pl.kernel_args("circle", 8, 1.0, (1000, 128, 128), 2)
    # a batch: the one-thread kernel on 2 Python threads (no parfor compile)
    assert isinstance(kernel, pl.Threaded) and kernel.kernel is k.lbp_circle_serial
    assert kernel.threads == 2 and extra[-1] == 2 and 8 <= extra[-2] < 128
    kernel, extra = pl.kernel_args("original", 8, 1.0, (1000, 128, 128), 2)
    assert isinstance(kernel, pl.Threaded) and kernel.kernel is o.lbp_original_serial


def test_threaded_batch_codes_equal_one_thread_and_skimage():
    imgs = np.random.default_rng(4).integers(0, 3, (80, 96, 80), dtype=np.uint8) * 70
    kernel, extra = pl.kernel_args("circle", 8, 1.0, imgs.shape, 2)
    assert isinstance(kernel, pl.Threaded)
    out = np.zeros(imgs.shape, np.uint8)
    kernel(pl.read_only(imgs), out, np.zeros(1, np.int64), *extra)
    ref = np.stack([local_binary_pattern(im, 8, 1) for im in imgs]).astype(np.uint8)
    np.testing.assert_array_equal(out, ref)
    orig = np.zeros(imgs.shape, np.uint8)
    kernel, extra = pl.kernel_args("original", 8, 1.0, imgs.shape, 2)
    kernel(pl.read_only(imgs), orig, np.zeros(1, np.int64), *extra)
    np.testing.assert_array_equal(orig & 0b01010101, ref & 0b01010101)


@njit(parallel=True)
def _claim_all(n, hits, workers):
    counter = np.zeros(1, np.int64)
    for _ in prange(workers):
        while True:
            i = fetch_add(counter, 0, 1)
            if i >= n:
                break
            hits[i] += 1


def test_shared_counter_hands_out_every_task_once():
    hits = np.zeros(200_000, np.int64)
    _claim_all(hits.size, hits, max(2, numba.get_num_threads()))
    assert hits.min() == 1 and hits.max() == 1


def test_split_crop_codes_equal_skimage():
    img = np.random.default_rng(3).integers(0, 256, (128, 128), dtype=np.uint8)
    img[:, :40] = 7  # a flat band: ties decided by float64 rounding
    for _ in range(2):  # second call: the registered fast path
        np.testing.assert_array_equal(lbp(img, "circle", 16, 2),
                                      local_binary_pattern(img, 16, 2).astype(np.uint16))


def test_batch_runs_numba_workers_once_they_are_compiled(monkeypatch):
    """A batch runs on Python threads until the parallel kernel is compiled (or cached on
    disk), then on numba's workers; the codes are the same either way."""
    imgs = np.random.default_rng(5).integers(0, 256, (300, 128, 128), dtype=np.uint8)
    for variant, twin in (("circle", k.lbp_circle), ("original", o.lbp_original)):
        kernel, extra = pl.kernel_args(variant, 8, 1.0, imgs.shape, 2)
        assert isinstance(kernel, pl.Threaded)
        outs = [np.zeros(imgs.shape, np.uint8) for _ in range(2)]
        args = [(pl.read_only(imgs), out, np.zeros(1, np.int64)) + extra for out in outs]
        monkeypatch.setattr(pl, "is_compiled", lambda kernel, args: False)
        assert pl.parallel_if_compiled(kernel, args[0]) is kernel
        kernel(*args[0])
        monkeypatch.undo()
        twin(*args[1])  # compiles (or loads) the parallel kernel for these types
        assert pl.parallel_if_compiled(kernel, args[1]) is twin
        np.testing.assert_array_equal(outs[0], outs[1])
    assert pl.parallel_if_compiled(k.lbp_circle_serial, args[0]) is k.lbp_circle_serial
