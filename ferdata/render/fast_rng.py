"""NumPy's per-sample generator, vectorised over many samples (docs/rendering.md).

Every render sample draws its parameters from its own generator,
``np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(face, i)))``
(:func:`ferdata.render.params.sample_rng`). Building one ``Generator`` per sample costs
~45 µs, which capped the torch renderer's replayed parameters at ~22k samples/s. This
module computes the same doubles for a whole batch with array arithmetic: NumPy's
``SeedSequence`` entropy mixing (32-bit hash words), its ``generate_state`` and
``PCG64`` (128-bit LCG, XSL-RR output) with the 128-bit products split into 32-bit
limbs, and ``Generator.random``'s ``(next64 >> 11) * 2**-53``. Bit-identical to NumPy
(tested against it on random keys); only keys whose entropy words number at most
:data:`POOL` + the two spawn words are supported, i.e. ``0 <= seed < 2**128`` and
``0 <= face, i < 2**32``.
"""
from __future__ import annotations

import numpy as np

POOL = 4  # SeedSequence's default pool size (32-bit words)
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_M32 = np.uint64(0xFFFFFFFF)
_MULT_HI, _MULT_LO = np.uint64(0x2360ED051FC65DA4), np.uint64(0x4385DF649FCCF645)


def _hashmix(value, hash_const):
    """SeedSequence's hashmix on 32-bit words held in uint64 arrays; returns (value, const)."""
    value = (value ^ hash_const) & _M32
    hash_const = (hash_const * np.uint64(_MULT_A)) & _M32
    value = (value * hash_const) & _M32
    return value ^ (value >> np.uint64(16)), hash_const


def _mix(x, y):
    r = (np.uint64(_MIX_L) * x - np.uint64(_MIX_R) * y) & _M32
    return r ^ (r >> np.uint64(16))


def _seed_words(seed: int) -> list:
    """The 32-bit words of the run entropy ``seed`` (little-endian, at least one)."""
    if not 0 <= seed < 2 ** (32 * POOL):
        raise ValueError(f"seed must be in [0, 2**{32 * POOL}) for the vectorised generator; got {seed}")
    words = []
    while True:
        words.append(seed & 0xFFFFFFFF)
        seed >>= 32
        if not seed:
            return words


def _pool(seed: int, face, sample):
    """The 4-word entropy pool of ``SeedSequence(seed, spawn_key=(face, sample))`` per row."""
    n = face.shape[0]
    run = _seed_words(seed)
    run += [0] * (POOL - len(run))  # padded to the pool size when there is a spawn key
    entropy = [np.full(n, w, np.uint64) for w in run] + [face, sample]
    h = np.full(n, _INIT_A, np.uint64)
    mixer = []
    for k in range(POOL):
        v, h = _hashmix(entropy[k], h)
        mixer.append(v)
    for s in range(POOL):
        for d in range(POOL):
            if s != d:
                v, h = _hashmix(mixer[s], h)
                mixer[d] = _mix(mixer[d], v)
    for e in entropy[POOL:]:
        for d in range(POOL):
            v, h = _hashmix(e, h)
            mixer[d] = _mix(mixer[d], v)
    return mixer


def _generate_state(pool):
    """``generate_state(4, np.uint64)``: 8 hashed 32-bit words cycled from the pool."""
    h = np.uint64(_INIT_B)
    words = []
    for k in range(8):
        v = pool[k % POOL] ^ h
        h = (h * np.uint64(_MULT_B)) & _M32
        v = (v * h) & _M32
        words.append(v ^ (v >> np.uint64(16)))
    return [words[2 * k] | (words[2 * k + 1] << np.uint64(32)) for k in range(4)]


def _mul64(a, b):
    """Full 128-bit product of uint64 arrays: (hi, lo)."""
    a0, a1 = a & _M32, a >> np.uint64(32)
    b0, b1 = b & _M32, b >> np.uint64(32)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> np.uint64(32)) + (p01 & _M32) + (p10 & _M32)
    lo = (p00 & _M32) | (mid << np.uint64(32))
    hi = p11 + (p01 >> np.uint64(32)) + (p10 >> np.uint64(32)) + (mid >> np.uint64(32))
    return hi, lo


def _add128(ah, al, bh, bl):
    lo = al + bl
    return ah + bh + (lo < al).astype(np.uint64), lo


def _step(sh, sl, ih, il):
    """state = state * MULT + inc (mod 2**128)."""
    hi, lo = _mul64(sl, _MULT_LO)
    hi = hi + sl * _MULT_HI + sh * _MULT_LO
    return _add128(hi, lo, ih, il)


def supported(seed, faces, samples) -> bool:
    """Whether :func:`uniforms` covers these keys (else draw them one generator each)."""
    faces, samples = np.asarray(faces), np.asarray(samples)
    return (isinstance(seed, (int, np.integer)) and 0 <= int(seed) < 2 ** (32 * POOL)
            and faces.dtype.kind in "iu" and samples.dtype.kind in "iu" and faces.size > 0
            and min(int(faces.min()), int(samples.min())) >= 0
            and max(int(faces.max()), int(samples.max())) < 2 ** 32)


def uniforms(seed: int, faces, samples, n: int) -> np.ndarray:
    """(len(faces), n) float64: row j is
    ``default_rng(SeedSequence(seed, spawn_key=(faces[j], samples[j]))).random(n)``."""
    faces = np.asarray(faces, np.int64).ravel()
    samples = np.asarray(samples, np.int64).ravel()
    for name, a in (("face", faces), ("sample", samples)):
        if a.size and (a.min() < 0 or a.max() >= 2 ** 32):
            raise ValueError(f"{name} indices must be in [0, 2**32) for the vectorised generator")
    s0, s1, s2, s3 = _generate_state(_pool(int(seed), faces.astype(np.uint64), samples.astype(np.uint64)))
    one = np.uint64(1)
    with np.errstate(over="ignore"):
        ih, il = (s2 << one) | (s3 >> np.uint64(63)), (s3 << one) | one  # inc = initseq << 1 | 1
        sh, sl = _step(np.zeros_like(ih), np.zeros_like(il), ih, il)
        sh, sl = _add128(sh, sl, s0, s1)
        sh, sl = _step(sh, sl, ih, il)
        out = np.empty((faces.size, n), np.float64)
        for k in range(n):
            sh, sl = _step(sh, sl, ih, il)
            rot = sh >> np.uint64(58)  # XSL-RR: rotate (hi ^ lo) right by the top 6 bits
            x = sh ^ sl
            x = (x >> rot) | (x << ((np.uint64(64) - rot) & np.uint64(63)))
            out[:, k] = (x >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return out
