"""numba kernels of the 3x3 ``original`` LBP (private: no validation here; see
:mod:`ferdata.features._lbp_kernels` for the circular ones)."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._atomic import fetch_add


@njit(cache=True)
def _orig_px(img, n, H, W, r, c):
    if r < 0 or r >= H or c < 0 or c >= W:
        return 0
    return img[n, r, c]


@njit(cache=True)
def _orig_code_at(img, n, H, W, r, c):
    """The 3x3 code of one pixel with bounds checks (outside reads 0)."""
    v = img[n, r, c]
    code = 0
    if _orig_px(img, n, H, W, r, c + 1) >= v:
        code |= 1
    if _orig_px(img, n, H, W, r - 1, c + 1) >= v:
        code |= 2
    if _orig_px(img, n, H, W, r - 1, c) >= v:
        code |= 4
    if _orig_px(img, n, H, W, r - 1, c - 1) >= v:
        code |= 8
    if _orig_px(img, n, H, W, r, c - 1) >= v:
        code |= 16
    if _orig_px(img, n, H, W, r + 1, c - 1) >= v:
        code |= 32
    if _orig_px(img, n, H, W, r + 1, c) >= v:
        code |= 64
    if _orig_px(img, n, H, W, r + 1, c + 1) >= v:
        code |= 128
    return code


@njit(cache=True, parallel=True)
def lbp_original(img, out, counter, block, workers):
    """3x3 LBP of ``img (N,H,W)`` into C-contiguous uint8 ``out``.

    Bit k is set when neighbour k >= the centre: k = 0 east, 1 north-east, 2 north,
    3 north-west, 4 west, 5 south-west, 6 south, 7 south-east; outside pixels read 0.
    Tasks of ``block`` rows; each does its interior rows as one flat run over the
    image (the neighbours are fixed flat offsets), then redoes the border pixels,
    which the flat run got wrong, with bounds checks. ``workers`` workers
    (:func:`lbp_original_serial`, one per thread) take the tasks from the shared
    ``counter`` (a fresh ``np.zeros(1, np.int64)`` per call), as in ``lbp_circle``.
    """
    for _ in prange(workers):
        lbp_original_serial(img, out, counter, block, workers)


@njit(cache=True, nogil=True)
def lbp_original_serial(img, out, counter, block, workers):
    """:func:`lbp_original` on the calling thread (small inputs), and the worker of each
    of its threads: takes tasks from ``counter`` until none is left."""
    N, H = img.shape[0], img.shape[1]
    nb = (H + block - 1) // block
    while True:
        task = fetch_add(counter, 0, 1)
        if task >= N * nb:
            break
        _original_task(img, out, task, nb, block)


@njit(cache=True)
def _original_task(img, out, task, nb, block):
    """Rows ``r_start:r_stop`` of one image: a flat run, then the border pixels."""
    N, H, W = img.shape
    n = task // nb
    r_start = (task - n * nb) * block
    r_stop = min(H, r_start + block)
    a = max(r_start, 1)
    b = min(r_stop, H - 1)
    if W >= 3 and a < b:
        f = img[n].reshape(H * W)
        j0 = a * W + 1
        j1 = (b - 1) * W + W - 1
        nj = j1 - j0
        o = out[n].reshape(H * W)[j0:j1]
        ctr = f[j0:j1]
        e = f[j0 + 1:j0 + 1 + nj]
        ne = f[j0 - W + 1:j0 - W + 1 + nj]
        no = f[j0 - W:j0 - W + nj]
        nw = f[j0 - W - 1:j0 - W - 1 + nj]
        w = f[j0 - 1:j0 - 1 + nj]
        sw = f[j0 + W - 1:j0 + W - 1 + nj]
        so = f[j0 + W:j0 + W + nj]
        se = f[j0 + W + 1:j0 + W + 1 + nj]
        for j in range(nj):
            v = ctr[j]
            o[j] = (np.uint8(e[j] >= v) | (np.uint8(ne[j] >= v) << 1)
                    | (np.uint8(no[j] >= v) << 2) | (np.uint8(nw[j] >= v) << 3)
                    | (np.uint8(w[j] >= v) << 4) | (np.uint8(sw[j] >= v) << 5)
                    | (np.uint8(so[j] >= v) << 6) | (np.uint8(se[j] >= v) << 7))
    for r in range(r_start, r_stop):
        if r == 0 or r == H - 1 or W < 3:
            for c in range(W):
                out[n, r, c] = _orig_code_at(img, n, H, W, r, c)
        else:
            out[n, r, 0] = _orig_code_at(img, n, H, W, r, 0)
            out[n, r, W - 1] = _orig_code_at(img, n, H, W, r, W - 1)
