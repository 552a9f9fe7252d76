"""What the first LBP call compiles (issue 23.2; docs/lbp.md "First call"): a batch needs
only the one-thread kernel (run on Python threads, no parfor), and
``ferdata.features.lbp.needs_compile`` tells beforehand whether a call will compile or
find its kernel compiled (in this process or in numba's on-disk cache)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ferdata.features import lbp
from ferdata.features.lbp import needs_compile

CHILD = """
import json, sys
import numpy as np
from numba.core import event
compiled = []
class Count(event.Listener):
    def on_start(self, e): pass
    def on_end(self, e): compiled.append(e.data["dispatcher"].py_func.__name__)
event.register("numba:compile", Count())
from ferdata.features.lbp import lbp, needs_compile
batch = np.random.default_rng(0).integers(0, 256, (300, 128, 128), dtype=np.uint8)
res = {"before": needs_compile("uniform", 8, 1, np.uint8, batch.shape, threads=2)}
codes = lbp(batch, "uniform", 8, 1)
res["after"] = needs_compile("uniform", 8, 1, np.uint8, batch.shape, threads=2)
res["float64"] = needs_compile("uniform", 8, 1, np.float64, batch.shape, threads=2)
res["compiled"] = compiled
res["codes"] = codes[:2].tolist()
print(json.dumps(res))
"""


def _child(cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), NUMBA_NUM_THREADS="2")
    r = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_batch_first_call_compiles_the_one_thread_kernel_only_and_needs_compile_sees_the_cache(tmp_path):
    from skimage.feature import local_binary_pattern

    fresh = _child(tmp_path)
    assert fresh["before"] is True and fresh["after"] is False and fresh["float64"] is True
    assert "lbp_circle_serial" in fresh["compiled"] and "lbp_circle" not in fresh["compiled"]
    batch = np.random.default_rng(0).integers(0, 256, (2, 128, 128), dtype=np.uint8)
    ref = np.stack([local_binary_pattern(im, 8, 1, "uniform") for im in batch]).astype(np.uint8)
    np.testing.assert_array_equal(np.array(fresh["codes"], np.uint8), ref)
    again = _child(tmp_path)  # a new process: the kernel is in numba's on-disk cache
    assert again["before"] is False and "lbp_circle_serial" not in again["compiled"]


def test_needs_compile_after_a_call_in_this_process():
    img = np.zeros((40, 40), np.uint8)
    lbp(img, "ror", 8, 1)
    assert needs_compile("ror", 8, 1, np.uint8, img.shape, threads=1) is False
    assert needs_compile("ror", 8, 1, "uint8", (3, 40, 40), threads=1) is False  # same kernel


@pytest.mark.parametrize("bad", [dict(variant="square"), dict(P=0), dict(R=-1), dict(shape=(0, 5)),
                                 dict(shape=(5,)), dict(dtype="U3")])
def test_needs_compile_refuses_bad_settings(bad):
    kw = dict(variant="circle", P=8, R=1, dtype=np.uint8, shape=(8, 8)) | bad
    with pytest.raises(ValueError):
        needs_compile(**kw)
