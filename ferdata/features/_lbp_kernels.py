"""numba kernels behind :mod:`ferdata.features.lbp` (private: no validation here).

Every kernel works on a batch ``(N, H, W)`` (a single image is passed as ``img[None]``)
and runs ``prange`` over the ``N*H`` output rows. Arguments are trusted: the public
wrapper checks shapes, dtypes, ``P``, ``R`` and finiteness before calling.

Exactness (the compatibility contract with ``skimage.feature.local_binary_pattern``):
neighbour ``p`` sits at ``(r + rp[p], c + cp[p])``; its value is bilinear in float64
with the formula ``top = (1-dc)*tl + dc*tr``, ``bottom = (1-dc)*bl + dc*br``,
``t = (1-dr)*top + dr*bottom`` where ``dr = rr - floor(rr)`` and ``dc = cc - floor(cc)``
are computed from the *absolute* sample position (their last bits depend on the row or
column), pixels outside the image read 0, and bit ``p`` is ``t >= center``. No
``fastmath``: re-association or FMA contraction would change the last bit of ``t``.

Where an offset is an integer the formula degenerates exactly (``dc == 0`` gives
``top == tl`` for finite input), so those neighbours skip the interpolation; that is
an identity, not an approximation. The column weights ``1-dc`` and ``dc`` depend only
on ``(p, c)`` and are tabulated once per call; the row weight is a scalar per row.
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
def _pixel(img, n, H, W, r, c):
    if r < 0 or r >= H or c < 0 or c >= W:
        return 0.0
    return np.float64(img[n, r, c])


@njit(cache=True)
def _code_at(img, n, H, W, r, c, rp, cp):
    """The raw code of one pixel by the general formula (borders, tiny images)."""
    center = np.float64(img[n, r, c])
    code = np.int64(0)
    for p in range(rp.shape[0]):
        rr = r + rp[p]
        cc = c + cp[p]
        fr = np.floor(rr)
        fc = np.floor(cc)
        r0 = np.int64(fr)
        r1 = np.int64(np.ceil(rr))
        c0 = np.int64(fc)
        c1 = np.int64(np.ceil(cc))
        dr = rr - fr
        dc = cc - fc
        top = (1 - dc) * _pixel(img, n, H, W, r0, c0) + dc * _pixel(img, n, H, W, r0, c1)
        bottom = (1 - dc) * _pixel(img, n, H, W, r1, c0) + dc * _pixel(img, n, H, W, r1, c1)
        t = (1 - dr) * top + dr * bottom
        if t >= center:
            code |= np.int64(1) << p
    return code


@njit(cache=True, parallel=True)
def lbp_circle(img, out, rp, cp, variant):
    """Circular LBP of ``img (N,H,W)`` (uint8 or float64) into ``out (N,H,W)``.

    ``rp``/``cp`` are the rounded float64 offsets (P,). ``variant`` is one of
    CIRCLE, UNIFORM, ROR, NRI_UNIFORM.
    """
    N, H, W = img.shape
    P = rp.shape[0]
    # per-neighbour integer offsets and kinds, once per call
    fr = np.empty(P, np.int64)
    fc = np.empty(P, np.int64)
    kind = np.empty(P, np.int64)  # bit 0: fractional row offset, bit 1: fractional column offset
    r_lo, r_hi, c_lo, c_hi = 0, H, 0, W  # interior: every sample of every pixel inside
    for p in range(P):
        fr[p] = np.int64(np.floor(rp[p]))
        fc[p] = np.int64(np.floor(cp[p]))
        cr = np.int64(np.ceil(rp[p]))
        cc = np.int64(np.ceil(cp[p]))
        kind[p] = (1 if cr != fr[p] else 0) | (2 if cc != fc[p] else 0)
        r_lo = max(r_lo, -fr[p])
        c_lo = max(c_lo, -fc[p])
        r_hi = min(r_hi, H - cr)
        c_hi = min(c_hi, W - cc)
    # column weights (1-dc, dc) per (p, c), from the absolute column as skimage does
    wc0 = np.empty((P, W), np.float64)
    wc1 = np.empty((P, W), np.float64)
    for p in range(P):
        for c in range(W):
            x = c + cp[p]
            d = x - np.floor(x)
            wc0[p, c] = 1 - d
            wc1[p, c] = d
    for i in prange(N * H):
        n = i // H
        r = i - n * H
        if r < r_lo or r >= r_hi or c_lo >= c_hi:
            for c in range(W):
                out[n, r, c] = _map_code(_code_at(img, n, H, W, r, c, rp, cp), P, variant)
            continue
        for c in range(c_lo):
            out[n, r, c] = _map_code(_code_at(img, n, H, W, r, c, rp, cp), P, variant)
        for c in range(c_hi, W):
            out[n, r, c] = _map_code(_code_at(img, n, H, W, r, c, rp, cp), P, variant)
        m = c_hi - c_lo
        acc = np.zeros(m, np.int64)
        ctr = img[n, r, c_lo:c_hi]
        for p in range(P):
            rr = r + rp[p]
            f = np.floor(rr)
            dr = rr - f
            r0 = np.int64(f)
            bit = np.int64(1) << p
            a = img[n, r0, c_lo + fc[p]:c_hi + fc[p]]
            k = kind[p]
            if k == 0:
                for j in range(m):
                    if a[j] >= ctr[j]:
                        acc[j] |= bit
            elif k == 1:
                b = img[n, r0 + 1, c_lo + fc[p]:c_hi + fc[p]]
                for j in range(m):
                    t = (1 - dr) * np.float64(a[j]) + dr * np.float64(b[j])
                    if t >= ctr[j]:
                        acc[j] |= bit
            else:
                w0 = wc0[p, c_lo:c_hi]
                w1 = wc1[p, c_lo:c_hi]
                a1 = img[n, r0, c_lo + fc[p] + 1:c_hi + fc[p] + 1]
                if k == 2:
                    for j in range(m):
                        t = w0[j] * np.float64(a[j]) + w1[j] * np.float64(a1[j])
                        if t >= ctr[j]:
                            acc[j] |= bit
                else:
                    b = img[n, r0 + 1, c_lo + fc[p]:c_hi + fc[p]]
                    b1 = img[n, r0 + 1, c_lo + fc[p] + 1:c_hi + fc[p] + 1]
                    for j in range(m):
                        top = w0[j] * np.float64(a[j]) + w1[j] * np.float64(a1[j])
                        bottom = w0[j] * np.float64(b[j]) + w1[j] * np.float64(b1[j])
                        t = (1 - dr) * top + dr * bottom
                        if t >= ctr[j]:
                            acc[j] |= bit
        o = out[n, r, c_lo:c_hi]
        if variant == CIRCLE:
            for j in range(m):
                o[j] = acc[j]
        else:
            for j in range(m):
                o[j] = _map_code(acc[j], P, variant)


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
