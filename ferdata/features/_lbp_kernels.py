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


@njit(cache=True)
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


@njit(cache=True)
def _blend_pass(acc, ctr, a0, a1, a2, a3, z0, z1, z2, z3, d0, d1, d2, d3, b0, b1, b2, b3, first):
    """Set bits b0..b3 where ``t = (1-d)*a + d*z`` (skimage's last bilinear step) of the
    neighbour rows is >= the centre row ``ctr``; ``acc`` holds the codes so far."""
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
def _fused_pass(acc, ctr, a0, a1, a2, a3, t0, t1, t2, t3, z0, z1, z2, z3, d0, d1, d2, d3,
                b0, b1, b2, b3, b4, b5, b6, b7, first):
    """Bits b0..b3 where the integer-row neighbours a0..a3 are >= the centre, and
    :func:`_blend_pass` (t/z/d, bits b4..b7), in one
    loop: the centre and the codes are read and written once for 8 neighbours (P8R1:
    the whole code in one pass)."""
    e0 = 1 - d0
    e1 = 1 - d1
    e2 = 1 - d2
    e3 = 1 - d3
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
        if e0 * t0[c] + d0 * z0[c] >= v:
            code |= b4
        if e1 * t1[c] + d1 * z1[c] >= v:
            code |= b5
        if e2 * t2[c] + d2 * z2[c] >= v:
            code |= b6
        if e3 * t3[c] + d3 * z3[c] >= v:
            code |= b7
        acc[c] = code


@njit(cache=True)
def code_table(P, variant):
    """``variant`` code of every raw P-bit code (for a lookup in :func:`_store_row`)."""
    t = np.empty(np.int64(1) << P, np.int64)
    for x in range(t.shape[0]):
        t[x] = _map_code(np.int64(x), P, variant)
    return t


@njit(cache=True)
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
def _load_rows(img, n, xb, nin, m, gfc, W0, W1, B):
    """Image rows ``xb .. xb+nin-1`` of image ``n`` as float64 into ``B[0]`` (flat, ``m``
    zero columns each side; rows outside the image read 0) and, in ``B[1+g]``, the same
    rows interpolated horizontally at column offset ``gcp[g]``:
    ``(1-dc)*x[c+fc] + dc*x[c+fc+1]``, skimage's ``top``/``bottom``, which depend on
    the input row and the column only, so each is made once and shared by every output
    row and neighbour that uses it."""
    H, W = img.shape[1], img.shape[2]
    Wp = W + 2 * m
    X = B[0]
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
    for g in range(gfc.shape[0]):
        w0 = W0[g]
        w1 = W1[g]
        hs = B[1 + g]
        for i in range(nin):  # row by row: the weights depend on the column only
            lo = max(i * Wp, m)
            hi = min((i + 1) * Wp, tot - m)
            hr = hs[lo:hi]
            a = X[lo + gfc[g]:hi + gfc[g]]
            b = X[lo + gfc[g] + 1:hi + gfc[g] + 1]
            v0 = w0[lo - i * Wp:hi - i * Wp]
            v1 = w1[lo - i * Wp:hi - i * Wp]
            for j in range(hi - lo):
                hr[j] = v0[j] * a[j] + v1[j] * b[j]


@njit(cache=True)
def _row_run(ra, r_stop, rp, rfrac, order, dd):
    """End of the run of output rows from ``ra`` whose ``dr`` equals ``ra``'s for every
    neighbour (all but a few rows near powers of two); ``dd[q]``: ``dr`` of slot q."""
    NO = order.shape[0]
    for q in range(NO):
        p = order[q]
        dd[q] = 0.0
        if p >= 0 and rfrac[p]:
            rr = ra + rp[p]
            dd[q] = rr - np.floor(rr)  # dr, from the absolute row as skimage does
    rb = ra + 1
    while rb < r_stop:
        for q in range(NO):
            p = order[q]
            if p >= 0 and rfrac[p]:
                rr = rb + rp[p]
                if rr - np.floor(rr) != dd[q]:
                    return rb
        rb += 1
    return rb


@njit(cache=True)
def _code_run(B, acc, j0, nj, Wp, ndirect, sel, off, dd, bits):
    """Raw codes of the flat run ``j0 : j0+nj`` (rows of one ``dr``) into ``acc``.

    Slot q reads buffer ``B[sel[q]]`` at flat offset ``off[q]``. Passes of 8 slots (4
    integer-row neighbours and 4 interpolated ones) while both kinds are left, then
    passes of 4; an integer-row slot in a pass of 4 is the blend with dr = 0, which is
    exact: ``(1-0)*a + 0*a == a`` for finite a."""
    NO = sel.shape[0]
    ctr = B[0, j0:j0 + nj]
    qd = 0
    qb = ndirect
    while qd < ndirect or qb < NO:
        q = qb if qb < NO else qd
        w = Wp if qb < NO else 0  # the bottom row of the blend (none for dr = 0)
        o0, o1, o2, o3 = j0 + off[q], j0 + off[q + 1], j0 + off[q + 2], j0 + off[q + 3]
        s0, s1, s2, s3 = B[sel[q]], B[sel[q + 1]], B[sel[q + 2]], B[sel[q + 3]]
        t0, t1, t2, t3 = s0[o0:o0 + nj], s1[o1:o1 + nj], s2[o2:o2 + nj], s3[o3:o3 + nj]
        z0, z1 = s0[o0 + w:o0 + w + nj], s1[o1 + w:o1 + w + nj]
        z2, z3 = s2[o2 + w:o2 + w + nj], s3[o3 + w:o3 + w + nj]
        if qd < ndirect and qb < NO:
            p0, p1, p2, p3 = j0 + off[qd], j0 + off[qd + 1], j0 + off[qd + 2], j0 + off[qd + 3]
            _fused_pass(acc, ctr, B[sel[qd], p0:p0 + nj], B[sel[qd + 1], p1:p1 + nj],
                        B[sel[qd + 2], p2:p2 + nj], B[sel[qd + 3], p3:p3 + nj],
                        t0, t1, t2, t3, z0, z1, z2, z3, dd[q], dd[q + 1], dd[q + 2], dd[q + 3],
                        bits[qd], bits[qd + 1], bits[qd + 2], bits[qd + 3],
                        bits[q], bits[q + 1], bits[q + 2], bits[q + 3], qd == 0)
            qd += 4
            qb += 4
        else:
            _blend_pass(acc, ctr, t0, t1, t2, t3, z0, z1, z2, z3, dd[q], dd[q + 1], dd[q + 2],
                        dd[q + 3], bits[q], bits[q + 1], bits[q + 2], bits[q + 3],
                        qd == 0 and qb == ndirect)
            if qb < NO:
                qb += 4
            else:
                qd += 4


@njit(cache=True, nogil=True)
def lbp_circle_serial(img, out, counter, rp, fr, fc, rfrac, src, gfc, W0, W1, order, ndirect,
                      variant, table, block, workers):
    """:func:`lbp_circle` on the calling thread (small inputs: no thread hand-off), and
    the worker each thread of :func:`lbp_circle` runs: it takes tasks (``block`` output
    rows of one image) from ``counter`` until none is left, with buffers of its own.

    A task's buffers are flat over (input row, padded column): index ``i*Wp + m + c`` is
    column ``c`` of image row ``r_start + kmin + i`` (:func:`_load_rows`). A neighbour is
    ``(1-dr)*top + dr*bottom`` with ``dr`` from the absolute row; consecutive rows with
    the same ``dr`` for every neighbour are done as one flat run (:func:`_row_run`), so
    the inner loops are long and vectorise even on 48-pixel-wide images.
    """
    N, H, W = img.shape
    P = rp.shape[0]
    NO = order.shape[0]
    kmin = np.int64(0)  # not the literal 0: one type for the loop below
    kmax = np.int64(0)
    m = np.int64(1)
    for p in range(P):
        kmin = min(kmin, fr[p])
        kmax = max(kmax, fr[p] + rfrac[p])
        m = max(m, -fc[p], fc[p] + 1)
    L = kmax - kmin + 1  # input rows r+kmin .. r+kmax feed output row r
    Wp = W + 2 * m
    size = (block + L - 1) * Wp
    B = np.empty((gfc.shape[0] + 1, size), np.float64)
    for i in range(size // Wp):  # the padding columns of B[0] read 0; tasks fill the rest
        B[0, i * Wp:i * Wp + m] = 0.0
        B[0, i * Wp + m + W:(i + 1) * Wp] = 0.0
    acc = np.empty(size, np.int64)
    dd = np.empty(NO, np.float64)
    bits = np.zeros(NO, np.int64)  # padding slot: a no-op bit
    off = np.zeros(NO, np.int64)
    sel = np.zeros(NO, np.int64)
    for q in range(NO):
        p = order[q]
        if p >= 0:
            # neighbour row r0 = r + fr exactly: offsets are rounded to 5 decimals, so
            # r + rp never rounds across an integer
            off[q] = fr[p] * Wp + (fc[p] if src[p] < 0 else 0)
            bits[q] = np.int64(1) << p
            sel[q] = 0 if src[p] < 0 else 1 + src[p]
    nb = (H + block - 1) // block
    while True:
        task = fetch_add(counter, 0, 1)
        if task >= N * nb:
            break
        n = task // nb
        r_start = (task - n * nb) * block
        r_stop = min(H, r_start + block)
        xb = r_start + kmin
        _load_rows(img, n, xb, r_stop - r_start + L - 1, m, gfc, W0, W1, B)
        ra = r_start
        while ra < r_stop:
            rb = _row_run(ra, r_stop, rp, rfrac, order, dd)
            j0 = (ra - xb) * Wp + m
            nj = (rb - 1 - xb) * Wp + m + W - j0
            _code_run(B, acc[j0:j0 + nj], j0, nj, Wp, ndirect, sel, off, dd, bits)
            ra = rb
        for r in range(r_start, r_stop):
            j = (r - xb) * Wp + m
            _store_row(acc[j:j + W], out[n, r], P, variant, table)


@njit(cache=True, parallel=True)
def lbp_circle(img, out, counter, rp, fr, fc, rfrac, src, gfc, W0, W1, order, ndirect, variant,
               table, block, workers):
    """Circular LBP of ``img (N,H,W)`` (uint8 or float64) into ``out (N,H,W)``.

    Plan (from ``_lbp_plan._plan``), per neighbour p: ``rp`` rounded row offset,
    ``fr``/``fc`` floor of the row/column offsets, ``rfrac`` 1 if the row offset is
    fractional, ``src`` the index of its fractional column offset among the distinct
    ones (group ``g``, floor ``gfc[g]``) or -1 for an integer one. ``order`` lists the
    neighbours with integer row offsets first (``ndirect`` slots), then the others, each
    part padded to a multiple of 4 with -1. ``table``: :func:`code_table` of ``variant``
    for ``ror``/``nri_uniform`` with P <= 16, else empty. ``W0[g]``/``W1[g]``: the
    column weights ``1-dc``/``dc`` of group g per padded column
    (``_lbp_plan._layout``). ``counter``: a fresh ``np.zeros(1, np.int64)`` per call.
    The output rows are cut into tasks of ``block`` rows of one image; ``prange`` starts
    ``workers`` workers (:func:`lbp_circle_serial`, one per thread), each with its own
    buffers, and each takes the next task from the shared counter when it is done, so
    a thread whose core another process holds does fewer.
    """
    for _ in prange(workers):
        lbp_circle_serial(img, out, counter, rp, fr, fc, rfrac, src, gfc, W0, W1, order,
                          ndirect, variant, table, block, workers)


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
