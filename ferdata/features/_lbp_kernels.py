"""numba kernels behind :mod:`ferdata.features.lbp` (private: no validation here).

Every kernel works on a batch ``(N, H, W)`` (a single image is passed as ``img[None]``)
and runs ``prange`` over the output rows of all images (in blocks of consecutive rows
of one image, so each task can reuse the rows it has converted and interpolated).
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
    mask = (np.int64(1) << P) - 1
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
    rotl = ((code << 1) | (code >> (P - 1))) & mask
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


@njit(cache=True, parallel=True)
def lbp_circle(img, out, rp, fr, fc, rfrac, src, gcp, order, ndirect, variant, block):
    """Circular LBP of ``img (N,H,W)`` (uint8 or float64) into ``out (N,H,W)``.

    Plan (from ``lbp._plan``), per neighbour p: ``rp`` rounded row offset, ``fr``/``fc``
    floor of the row/column offsets, ``rfrac`` 1 if the row offset is fractional,
    ``src`` the index of its column-offset group in ``gcp`` (the distinct fractional
    column offsets) or -1 for an integer column offset. ``order`` lists the neighbours
    with integer row offsets first (``ndirect`` slots), then the others, each part
    padded to a multiple of 4 with -1 (a no-op slot). ``block`` output rows per task.

    Each task keeps a ring of the input rows it needs, converted to float64 and
    zero-padded by ``m`` columns (out-of-image samples read 0), plus, per column-offset
    group, the ring of horizontally interpolated rows ``(1-dc)*x[c+fc] + dc*x[c+fc+1]``
    (the ``top``/``bottom`` of skimage's formula: they depend on the input row and the
    column only, so each is computed once per input row and shared by every output row
    and every neighbour that uses it). A neighbour is then ``(1-dr)*top + dr*bottom``.
    """
    N, H, W = img.shape
    P = rp.shape[0]
    G = gcp.shape[0]
    kmin = 0
    kmax = 0
    m = 1
    for p in range(P):
        kmin = min(kmin, fr[p])
        kmax = max(kmax, fr[p] + rfrac[p])
        m = max(m, -fc[p], fc[p] + 1)
    L = kmax - kmin + 1  # input rows r+kmin .. r+kmax feed output row r
    Wp = W + 2 * m
    gfc = np.empty(G, np.int64)
    wc0 = np.empty((G, W), np.float64)
    wc1 = np.empty((G, W), np.float64)
    for g in range(G):
        gfc[g] = np.int64(np.floor(gcp[g]))
        for c in range(W):
            x = c + gcp[g]
            d = x - np.floor(x)  # from the absolute column: its last bits depend on c
            wc0[g, c] = 1 - d
            wc1[g, c] = d
    NO = order.shape[0]
    nb = (H + block - 1) // block
    for task in prange(N * nb):
        n = task // nb
        r_start = (task - n * nb) * block
        r_stop = min(H, r_start + block)
        # ring slots: input rows 0..L-1, then the interpolated rows of group g at L*(1+g)
        buf = np.zeros((L * (1 + G), Wp), np.float64)
        acc = np.empty(W, np.int64)
        ia = np.empty(NO, np.int64)
        ib = np.empty(NO, np.int64)
        off = np.empty(NO, np.int64)
        dd = np.empty(NO, np.float64)
        bits = np.empty(NO, np.int64)
        for r in range(r_start, r_stop):
            k_first = r + kmax if r > r_start else r + kmin
            for k in range(k_first, r + kmax + 1):
                s = (k - kmin) % L
                xr = buf[s]
                if k < 0 or k >= H:
                    xr[:] = 0.0
                else:
                    row = img[n, k]
                    xm = xr[m:m + W]
                    for c in range(W):
                        xm[c] = row[c]
                for g in range(G):
                    hr = buf[L * (1 + g) + s, m:m + W]
                    a = xr[m + gfc[g]:m + gfc[g] + W]
                    b = xr[m + gfc[g] + 1:m + gfc[g] + 1 + W]
                    w0 = wc0[g]
                    w1 = wc1[g]
                    for c in range(W):
                        hr[c] = w0[c] * a[c] + w1[c] * b[c]
            sc = (r - kmin) % L
            for q in range(NO):
                p = order[q]
                if p < 0:  # padding slot: compares the centre with itself into bit mask 0
                    ia[q] = sc
                    ib[q] = sc
                    off[q] = m
                    dd[q] = 0.0
                    bits[q] = 0
                    continue
                rr = r + rp[p]
                f = np.floor(rr)
                dd[q] = rr - f  # dr, from the absolute row as skimage does
                s0 = (np.int64(f) - kmin) % L
                s1 = (np.int64(f) + rfrac[p] - kmin) % L
                bits[q] = np.int64(1) << p
                if src[p] < 0:
                    ia[q] = s0
                    ib[q] = s1
                    off[q] = m + fc[p]
                else:
                    ia[q] = L * (1 + src[p]) + s0
                    ib[q] = L * (1 + src[p]) + s1
                    off[q] = m
            ctr = buf[sc, m:m + W]
            for q in range(0, ndirect, 4):
                _direct_pass(acc, ctr,
                             buf[ia[q], off[q]:off[q] + W], buf[ia[q + 1], off[q + 1]:off[q + 1] + W],
                             buf[ia[q + 2], off[q + 2]:off[q + 2] + W], buf[ia[q + 3], off[q + 3]:off[q + 3] + W],
                             bits[q], bits[q + 1], bits[q + 2], bits[q + 3], q == 0)
            for q in range(ndirect, NO, 4):
                _blend_pass(acc, ctr,
                            buf[ia[q], off[q]:off[q] + W], buf[ia[q + 1], off[q + 1]:off[q + 1] + W],
                            buf[ia[q + 2], off[q + 2]:off[q + 2] + W], buf[ia[q + 3], off[q + 3]:off[q + 3] + W],
                            buf[ib[q], off[q]:off[q] + W], buf[ib[q + 1], off[q + 1]:off[q + 1] + W],
                            buf[ib[q + 2], off[q + 2]:off[q + 2] + W], buf[ib[q + 3], off[q + 3]:off[q + 3] + W],
                            dd[q], dd[q + 1], dd[q + 2], dd[q + 3],
                            bits[q], bits[q + 1], bits[q + 2], bits[q + 3], q == 0)
            o = out[n, r]
            if variant == CIRCLE:
                for c in range(W):
                    o[c] = acc[c]
            elif variant == UNIFORM:
                for c in range(W):
                    x = acc[c]
                    u = _popcount(x ^ ((x >> 1) | ((x & 1) << (P - 1))))
                    o[c] = _popcount(x) if u <= 2 else P + 1
            else:
                for c in range(W):
                    o[c] = _map_code(acc[c], P, variant)


@njit(cache=True, inline="always")
def _orig_px(img, n, H, W, r, c):
    if r < 0 or r >= H or c < 0 or c >= W:
        return 0
    return img[n, r, c]


@njit(cache=True, parallel=True)
def lbp_original(img, out):
    """3x3 LBP (8 integer neighbours, ``>=`` centre, bit 0 east, counter-clockwise)."""
    N, H, W = img.shape
    for i in prange(N * H):
        n = i // H
        r = i - n * H
        if r == 0 or r == H - 1 or W < 3:
            cs = range(W)
        else:
            cs = range(0, W, max(W - 1, 1))  # the two border columns
        for c in cs:
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
            out[n, r, c] = code
        if r == 0 or r == H - 1 or W < 3:
            continue
        up = img[n, r - 1]
        mid = img[n, r]
        dn = img[n, r + 1]
        o = out[n, r]
        for c in range(1, W - 1):
            v = mid[c]
            o[c] = (np.uint8(mid[c + 1] >= v) | (np.uint8(up[c + 1] >= v) << 1)
                    | (np.uint8(up[c] >= v) << 2) | (np.uint8(up[c - 1] >= v) << 3)
                    | (np.uint8(mid[c - 1] >= v) << 4) | (np.uint8(dn[c - 1] >= v) << 5)
                    | (np.uint8(dn[c] >= v) << 6) | (np.uint8(dn[c + 1] >= v) << 7))


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
