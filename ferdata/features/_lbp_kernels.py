"""numba kernels behind :mod:`ferdata.features.lbp` (private: no validation here).

Every kernel works on a batch ``(N, H, W)`` (a single image is passed as ``img[None]``),
cut into tasks of consecutive output rows of one image (so each task can reuse the rows
it has converted and interpolated); ``prange`` starts one worker per thread and the
workers take tasks from a shared atomic counter (:mod:`ferdata.features._atomic`).
Arguments are trusted: the public wrapper checks shapes, dtypes, ``P``, ``R`` and
finiteness, and computes the sampling plan once per (P, R).

Exactness (the compatibility contract with ``skimage.feature.local_binary_pattern``):
neighbour ``p`` sits at ``(r + rp[p], c + cp[p])``; its value is bilinear in float64
with the formula ``top = (1-dc)*tl + dc*tr``, ``bottom = (1-dc)*bl + dc*br``,
``t = (1-dr)*top + dr*bottom`` where ``dr = rr - floor(rr)`` and ``dc = cc - floor(cc)``
are computed from the *absolute* sample position (their last bits depend on the row or
column), pixels outside the image read 0, and bit ``p`` is ``t >= center``. No
``fastmath``: re-association or FMA contraction would change the last bit of ``t``.
Where an offset is an integer the formula degenerates exactly (``dc == 0`` gives
``top == tl`` for finite input), so those neighbours skip that step; that is an
identity, not an approximation.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from ._atomic import fetch_add

# variant codes shared with lbp.py
CIRCLE, UNIFORM, ROR, NRI_UNIFORM = 0, 1, 2, 3


@intrinsic
def _popcount(typingctx, x):
    """Number of set bits of an int64 (llvm.ctpop: one instruction with POPCNT)."""
    if not isinstance(x, types.Integer):
        return None
    sig = types.int64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@intrinsic
def _ctz(typingctx, x):
    """Number of trailing zero bits of a non-zero int64 (llvm.cttz)."""
    if not isinstance(x, types.Integer):
        return None
    sig = types.int64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], context.get_constant(types.boolean, True))

    return sig, codegen


@njit(cache=True, inline="always")
def _map_code(code, P, variant):
    """Map a raw P-bit code (int64) to the code of ``variant``."""
    if variant == CIRCLE:
        return code
    if variant == ROR:
        best = code
        x = code
        for _ in range(P - 1):
            x = (x >> 1) | ((x & 1) << (P - 1))
            if x < best:
                best = x
        return best
    # transitions between circular neighbours: bits of code XOR (code rotated by one)
    rot = (code >> 1) | ((code & 1) << (P - 1))
    u = _popcount(code ^ rot)
    ones = _popcount(code)
    if variant == UNIFORM:
        return ones if u <= 2 else P + 1
    # NRI_UNIFORM: 1 + (ones-1)*P + rotation index for uniform patterns
    if u > 2:
        return P * (P - 1) + 2
    if ones == 0:
        return 0
    if ones == P:
        return P * (P - 1) + 1
    rotl = ((code << 1) | (code >> (P - 1))) & ((np.int64(1) << P) - 1)
    start = _ctz(code & ~rotl)  # first bit of the run of ones (its predecessor is 0)
    return 1 + (ones - 1) * P + (P - start) % P


@njit(cache=True, inline="always")
def _direct_pass(acc, ctr, a0, a1, a2, a3, b0, b1, b2, b3, first):
    """Set bits b0..b3 where the neighbour rows a0..a3 are >= the centre row."""
    for c in range(ctr.shape[0]):
        v = ctr[c]
        code = np.int64(0) if first else acc[c]
        if a0[c] >= v:
            code |= b0
        if a1[c] >= v:
            code |= b1
        if a2[c] >= v:
            code |= b2
        if a3[c] >= v:
            code |= b3
        acc[c] = code


@njit(cache=True, inline="always")
def _blend_pass(acc, ctr, a0, a1, a2, a3, z0, z1, z2, z3, d0, d1, d2, d3, b0, b1, b2, b3, first):
    """Like _direct_pass for ``t = (1-d)*a + d*z`` (skimage's last bilinear step)."""
    e0 = 1 - d0
    e1 = 1 - d1
    e2 = 1 - d2
    e3 = 1 - d3
    for c in range(ctr.shape[0]):
        v = ctr[c]
        code = np.int64(0) if first else acc[c]
        if e0 * a0[c] + d0 * z0[c] >= v:
            code |= b0
        if e1 * a1[c] + d1 * z1[c] >= v:
            code |= b1
        if e2 * a2[c] + d2 * z2[c] >= v:
            code |= b2
        if e3 * a3[c] + d3 * z3[c] >= v:
            code |= b3
        acc[c] = code


@njit(cache=True)
def code_table(P, variant):
    """``variant`` code of every raw P-bit code (for a lookup in :func:`_store_row`)."""
    t = np.empty(np.int64(1) << P, np.int64)
    for x in range(t.shape[0]):
        t[x] = _map_code(np.int64(x), P, variant)
    return t


@njit(cache=True, inline="always")
def _store_row(acc, o, P, variant, table):
    """Map the raw codes of a row to ``variant`` (via ``table`` if not empty) and store."""
    if variant == CIRCLE:
        for c in range(acc.shape[0]):
            o[c] = acc[c]
    elif variant == UNIFORM:
        for c in range(acc.shape[0]):
            x = acc[c]
            u = _popcount(x ^ ((x >> 1) | ((x & 1) << (P - 1))))
            o[c] = _popcount(x) if u <= 2 else P + 1
    elif table.shape[0]:
        for c in range(acc.shape[0]):
            o[c] = table[acc[c]]
    else:
        for c in range(acc.shape[0]):
            o[c] = _map_code(acc[c], P, variant)


@njit(cache=True)
def _circle_task(img, n, r_start, r_stop, L, rp, fr, fc, rfrac, src, order, ndirect,
                 kmin, m, gfc, W0, W1, X, Hs, acc, dd, bits, off):
    """Raw codes of rows ``r_start:r_stop`` of image ``n`` into the flat ``acc``.

    The buffers are flat over (input row, padded column): index ``i*Wp + m + c`` is
    column ``c`` of image row ``r_start + kmin + i``. ``X`` holds those rows in
    float64 with ``m`` zero columns each side (samples outside the image read 0),
    ``Hs[g]`` the same rows interpolated horizontally at column offset ``gcp[g]``,
    ``(1-dc)*x[c+fc] + dc*x[c+fc+1]`` -- skimage's ``top``/``bottom``, which depend on
    the input row and the column only, so each is made once and shared by every
    output row and neighbour that uses it. A neighbour is ``(1-dr)*top + dr*bottom``
    with ``dr`` from the absolute row; consecutive rows with the same ``dr`` for every
    neighbour (all but a few rows near powers of two) are done as one flat run, so
    the inner loops are long and vectorise even on 48-pixel-wide images.
    """
    H, W = img.shape[1], img.shape[2]
    Wp = W + 2 * m
    G = gfc.shape[0]
    NO = order.shape[0]
    xb = r_start + kmin
    nin = r_stop - r_start + L - 1
    for i in range(nin):
        k = xb + i
        seg = X[i * Wp + m:i * Wp + m + W]
        if k < 0 or k >= H:
            seg[:] = 0.0
        else:
            row = img[n, k]
            for c in range(W):
                seg[c] = row[c]
    tot = nin * Wp
    for g in range(G):
        w0 = W0[g]
        w1 = W1[g]
        for i in range(nin):  # row by row: the weights depend on the column only
            lo = max(i * Wp, m)
            hi = min((i + 1) * Wp, tot - m)
            hr = Hs[g, lo:hi]
            a = X[lo + gfc[g]:hi + gfc[g]]
            b = X[lo + gfc[g] + 1:hi + gfc[g] + 1]
            v0 = w0[lo - i * Wp:hi - i * Wp]
            v1 = w1[lo - i * Wp:hi - i * Wp]
            for j in range(hi - lo):
                hr[j] = v0[j] * a[j] + v1[j] * b[j]
    for q in range(NO):
        p = order[q]
        # neighbour row r0 = r + fr exactly: offsets are rounded to 5 decimals, so
        # r + rp never rounds across an integer
        off[q] = 0 if p < 0 else fr[p] * Wp + (fc[p] if src[p] < 0 else 0)
        bits[q] = 0 if p < 0 else np.int64(1) << p  # padding slot: a no-op bit
    ra = r_start
    while ra < r_stop:
        for q in range(NO):
            p = order[q]
            dd[q] = 0.0
            if p >= 0 and rfrac[p]:
                rr = ra + rp[p]
                dd[q] = rr - np.floor(rr)  # dr, from the absolute row as skimage does
        rb = ra + 1
        same = True
        while rb < r_stop and same:
            for q in range(NO):
                p = order[q]
                if p >= 0 and rfrac[p]:
                    rr = rb + rp[p]
                    if rr - np.floor(rr) != dd[q]:
                        same = False
            if same:
                rb += 1
        j0 = (ra - xb) * Wp + m
        j1 = (rb - 1 - xb) * Wp + m + W
        ctr = X[j0:j1]
        ac = acc[j0:j1]
        nj = j1 - j0
        for q in range(0, NO, 4):
            s0 = X if order[q] < 0 or src[order[q]] < 0 else Hs[src[order[q]]]
            s1 = X if order[q + 1] < 0 or src[order[q + 1]] < 0 else Hs[src[order[q + 1]]]
            s2 = X if order[q + 2] < 0 or src[order[q + 2]] < 0 else Hs[src[order[q + 2]]]
            s3 = X if order[q + 3] < 0 or src[order[q + 3]] < 0 else Hs[src[order[q + 3]]]
            o0, o1, o2, o3 = j0 + off[q], j0 + off[q + 1], j0 + off[q + 2], j0 + off[q + 3]
            if q < ndirect:
                _direct_pass(ac, ctr, s0[o0:o0 + nj], s1[o1:o1 + nj], s2[o2:o2 + nj], s3[o3:o3 + nj],
                             bits[q], bits[q + 1], bits[q + 2], bits[q + 3], q == 0)
            else:
                _blend_pass(ac, ctr, s0[o0:o0 + nj], s1[o1:o1 + nj], s2[o2:o2 + nj], s3[o3:o3 + nj],
                            s0[o0 + Wp:o0 + Wp + nj], s1[o1 + Wp:o1 + Wp + nj],
                            s2[o2 + Wp:o2 + Wp + nj], s3[o3 + Wp:o3 + Wp + nj],
                            dd[q], dd[q + 1], dd[q + 2], dd[q + 3],
                            bits[q], bits[q + 1], bits[q + 2], bits[q + 3], q == 0)
        ra = rb


@njit(cache=True, parallel=True)
def lbp_circle(img, out, rp, fr, fc, rfrac, src, gfc, W0, W1, order, ndirect, variant, table,
               block, workers):
    """Circular LBP of ``img (N,H,W)`` (uint8 or float64) into ``out (N,H,W)``.

    Plan (from ``lbp._plan``), per neighbour p: ``rp`` rounded row offset, ``fr``/``fc``
    floor of the row/column offsets, ``rfrac`` 1 if the row offset is fractional,
    ``src`` the index of its fractional column offset among the distinct ones (group
    ``g``, floor ``gfc[g]``) or -1 for an integer one. ``order`` lists the neighbours
    with integer row offsets first (``ndirect`` slots), then the others, each part
    padded to a multiple of 4 with -1. ``table``: :func:`code_table` of ``variant``
    for ``ror``/``nri_uniform`` with P <= 16, else empty. ``W0[g]``/``W1[g]``: the
    column weights ``1-dc``/``dc`` of group g per padded column
    (``_lbp_plan._layout``). The output rows are cut into tasks of ``block`` rows of one
    image; ``prange`` starts ``workers`` workers (one per thread), each with its own
    buffers, and each takes the next task from a shared counter when it is done (see
    :func:`_circle_worker`), so a thread whose core another process holds does fewer.
    """
    counter = np.zeros(1, np.int64)
    for _ in prange(workers):
        _circle_worker(img, out, counter, rp, fr, fc, rfrac, src, gfc, W0, W1, order, ndirect,
                       variant, table, block)


@njit(cache=True)
def lbp_circle_serial(img, out, rp, fr, fc, rfrac, src, gfc, W0, W1, order, ndirect, variant,
                      table, block, workers):
    """:func:`lbp_circle` on the calling thread only (small inputs: no thread hand-off)."""
    _circle_worker(img, out, np.zeros(1, np.int64), rp, fr, fc, rfrac, src, gfc, W0, W1, order,
                   ndirect, variant, table, block)


@njit(cache=True)
def _circle_worker(img, out, counter, rp, fr, fc, rfrac, src, gfc, W0, W1, order, ndirect,
                   variant, table, block):
    """Take tasks (``block`` rows of one image) from ``counter`` until none is left, with
    buffers of its own."""
    N, H, W = img.shape
    P = rp.shape[0]
    G = gfc.shape[0]
    kmin = 0
    kmax = 0
    m = 1
    for p in range(P):
        kmin = min(kmin, fr[p])
        kmax = max(kmax, fr[p] + rfrac[p])
        m = max(m, -fc[p], fc[p] + 1)
    L = kmax - kmin + 1  # input rows r+kmin .. r+kmax feed output row r
    Wp = W + 2 * m
    size = (block + L - 1) * Wp
    NO = order.shape[0]
    nb = (H + block - 1) // block
    ntask = N * nb
    X = np.empty(size, np.float64)
    for i in range(size // Wp):  # the padding columns read 0; the task fills the rest
        X[i * Wp:i * Wp + m] = 0.0
        X[i * Wp + m + W:(i + 1) * Wp] = 0.0
    Hs = np.empty((G, size), np.float64)
    acc = np.empty(size, np.int64)
    dd = np.empty(NO, np.float64)
    bits = np.empty(NO, np.int64)
    off = np.empty(NO, np.int64)
    while True:
        task = fetch_add(counter, 0, 1)
        if task >= ntask:
            break
        n = task // nb
        r_start = (task - n * nb) * block
        r_stop = min(H, r_start + block)
        _circle_task(img, n, r_start, r_stop, L, rp, fr, fc, rfrac, src, order, ndirect,
                     kmin, m, gfc, W0, W1, X, Hs, acc, dd, bits, off)
        for r in range(r_start, r_stop):
            j = (r - r_start - kmin) * Wp + m
            _store_row(acc[j:j + W], out[n, r], P, variant, table)


@njit(cache=True, parallel=True)
def cell_histograms(codes, gy, gx, nbins, hist):
    """Count codes per grid cell: ``codes (N,H,W)`` -> ``hist (N,gy,gx,nbins)`` float32.

    Cell (i, j) covers rows ``i*H//gy : (i+1)*H//gy`` and the same for columns.
    Returns the number of codes ``>= nbins`` (0 when every code fits).
    """
    N, H, W = codes.shape
    bad = np.zeros(N * gy, np.int64)
    for k in prange(N * gy):
        n = k // gy
        i = k - n * gy
        for r in range(i * H // gy, (i + 1) * H // gy):
            for j in range(gx):
                h = hist[n, i, j]
                for c in range(j * W // gx, (j + 1) * W // gx):
                    v = np.int64(codes[n, r, c])
                    if v < nbins:
                        h[v] += 1
                    else:
                        bad[k] += 1
    return bad.sum()
