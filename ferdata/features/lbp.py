"""Local binary patterns (LBP): codes and spatial-histogram features.

The variants are those of seed 001 (original, circle and uniform LBP as the second
input stream of the attention CNN) plus ``ror`` and ``nri_uniform``; ``circle``,
``uniform``, ``ror`` and ``nri_uniform`` are bit-exact with
``skimage.feature.local_binary_pattern`` (methods ``'default'``, ``'uniform'``,
``'ror'``, ``'nri_uniform'``) and run 30-115x faster (1-2 threads) (numba kernels
in :mod:`ferdata.features._lbp_kernels`). See ``docs/lbp.md``.
"""
from __future__ import annotations

import functools
import math
import numbers

import numpy as np

from . import _lbp_kernels as _k
from . import _lbp_plan as _pl

VARIANTS = ("original", "circle", "uniform", "ror", "nri_uniform")
MAX_P = 32
_U8 = np.dtype(np.uint8)


def _check_variant(variant):
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")


def _check_P(P, variant):
    if isinstance(P, bool) or not isinstance(P, numbers.Integral) or not 1 <= P <= MAX_P:
        raise ValueError(f"P (number of neighbours) must be an integer in 1..{MAX_P}; got {P!r}")
    if variant == "original" and P != 8:
        raise ValueError(f"P must be 8 for variant='original' (the 3x3 operator); got {P!r}")
    return int(P)


def _check_R(R, variant):
    if (isinstance(R, bool) or not isinstance(R, numbers.Real) or not math.isfinite(R)
            or not R > 0):
        raise ValueError(f"R (radius in pixels) must be a finite number > 0; got {R!r}")
    if variant == "original" and R != 1:
        raise ValueError(f"R must be 1 for variant='original' (the 3x3 operator); got {R!r}")
    return float(R)


def n_bins(variant: str = "circle", P: int = 8) -> int:
    """Number of distinct LBP codes of ``variant`` with ``P`` neighbours.

    ``circle`` and ``ror``: ``2**P`` (``ror`` uses only the codes that are minimal
    over rotations, e.g. 36 of 256 for P=8, but keeps their values as bin indices);
    ``uniform`` (riu2): ``P + 2``; ``nri_uniform``: ``P*(P-1) + 3``; ``original``: 256.
    Codes are ``0 .. n_bins - 1``.
    """
    _check_variant(variant)
    P = _check_P(P, variant)
    return {"original": 256, "circle": 2 ** P, "ror": 2 ** P, "uniform": P + 2,
            "nri_uniform": P * (P - 1) + 3}[variant]


def code_dtype(variant: str = "circle", P: int = 8) -> np.dtype:
    """The smallest unsigned dtype holding every code: uint8, uint16 or uint32."""
    top = n_bins(variant, P) - 1
    for dt in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise AssertionError  # pragma: no cover  (P <= 32)


def dataset_name(variant: str = "circle", P: int = 8, R: float = 1.0) -> str:
    """HDF5 dataset name of a variant: ``lbp/circle_P8_R1``, ``lbp/uniform_P16_R2.5``, ``lbp/original``."""
    _check_variant(variant)
    P = _check_P(P, variant)
    R = _check_R(R, variant)
    if variant == "original":
        return "lbp/original"
    return f"lbp/{variant}_P{P}_R{np.format_float_positional(R, trim='-')}"


@functools.lru_cache(maxsize=256, typed=True)
def _settings_cached(variant, P, R):
    _check_variant(variant)
    P = _check_P(P, variant)
    R = _check_R(R, variant)
    return P, R, code_dtype(variant, P), n_bins(variant, P) - 1


def _settings(variant, P, R):
    """Validated ``(P, R, code dtype, largest code)``, cached for repeated calls."""
    try:
        return _settings_cached(variant, P, R)
    except TypeError:  # unhashable argument: validate uncached (raises ValueError)
        _check_variant(variant)
        _check_P(P, variant)
        _check_R(R, variant)
        raise


def _as_image(image):
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be 2-D (H, W) or a 3-D batch (N, H, W); got shape {image.shape}")
    if image.dtype.kind not in "biuf":
        raise ValueError(f"image must have a boolean, integer or floating dtype; got {image.dtype}")
    if image.dtype != np.uint8:
        image = np.ascontiguousarray(image, dtype=np.float64)  # as skimage does
        if not math.isfinite(float(np.add.reduce(image, axis=None))) and not np.isfinite(image).all():
            raise ValueError("image contains NaN or infinite values")
    else:
        image = np.ascontiguousarray(image)
    return image


def _check_out(out, shape, dtype, top):
    if not isinstance(out, np.ndarray):
        raise ValueError(f"out must be a numpy array; got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out must have the shape of image {shape}; got {out.shape}")
    if out.dtype.kind not in "iu" or np.iinfo(out.dtype).max < top:
        raise ValueError(f"out must have an integer dtype holding codes up to {top} "
                         f"(e.g. {dtype}); got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError("out must be writeable")


def lbp(image, variant: str = "circle", P: int = 8, R: float = 1.0, out=None) -> np.ndarray:
    """Local binary pattern codes of a gray image or a batch of gray images.

    Each pixel gets a P-bit code: bit ``p`` is set when neighbour ``p`` is ``>=`` the
    centre pixel. Neighbour ``p`` of ``(r, c)`` sits at ``(r + rp, c + cp)`` with
    ``rp = round(-R*sin(2*pi*p/P), 5)`` and ``cp = round(R*cos(2*pi*p/P), 5)``: bit 0
    is east, then counter-clockwise as displayed (bit ``P/4`` is north). Samples
    between pixels are bilinear in float64; samples outside the image read 0.

    Parameters
    ----------
    image : (H, W) or (N, H, W) array_like
        Gray image(s), any boolean, integer or floating dtype. uint8 is read
        directly; every other dtype is converted to float64 first (as scikit-image
        does), so integers beyond 2**53 lose precision. NaN and inf are refused.
    variant : {'circle', 'uniform', 'ror', 'nri_uniform', 'original'}
        ``'circle'``: the P-bit code of the circular operator (skimage ``'default'``).
        ``'uniform'``: rotation-invariant uniform riu2 (skimage ``'uniform'``): the
        number of set bits if the circular pattern has at most 2 transitions, else
        ``P + 1``. ``'ror'``: the smallest code over the P circular bit rotations
        (skimage ``'ror'``). ``'nri_uniform'``: uniform patterns keep their rotation,
        ``P*(P-1) + 3`` codes (skimage ``'nri_uniform'``). ``'original'``: the 3x3
        operator of seed 001 eqs. (1)-(2): the 8 integer neighbours, no interpolation,
        same bit order (east = bit 0, north-east = bit 1, north = bit 2, ..., south-east
        = bit 7), ``>=`` the centre, outside pixels read 0; needs ``P=8, R=1``. It
        differs from ``'circle'`` with P=8, R=1, whose diagonal neighbours are
        interpolated at distance 1.
    P : int, default 8
        Number of neighbours, 1..32.
    R : float, default 1.0
        Radius in pixels, > 0.
    out : ndarray, optional
        Array of the shape of ``image`` and an integer dtype that holds every code
        (see :func:`code_dtype`); the codes are written into it and it is returned.

    Returns
    -------
    codes : ndarray, shape of ``image``
        uint8 when every code fits (``uniform`` always, ``circle``/``ror`` for P <= 8,
        ``nri_uniform`` for P <= 16, ``original``), else uint16 (P <= 16) or uint32.

    Raises
    ------
    ValueError
        If ``image`` is not 2-D or 3-D, has a non-numeric dtype or holds NaN/inf;
        if ``P`` is not in 1..32, ``R`` is not > 0, ``variant`` is unknown, or
        ``out`` does not fit.

    Notes
    -----
    ``circle``, ``uniform``, ``ror`` and ``nri_uniform`` equal
    ``skimage.feature.local_binary_pattern(image, P, R, method)`` bit for bit for uint8
    and float input (tested for P in {4, 8, 16, 24}, R in {1, 1.5, 2, 3}). At P=32
    scikit-image overflows a signed 32-bit int: its ``'default'``/``'ror'`` codes are
    ours viewed as int32. The kernels are numba, parallel over output rows (set
    the thread count with ``numba.set_num_threads``); inputs under 4096 pixels run on
    the calling thread, a face crop is split into one chunk of rows per thread. ``out``
    may overlap ``image`` (it is then filled through a temporary). The first call in a fresh environment compiles them (seconds
    to minutes, cached on disk afterwards): run :func:`warmup` (``ferdata lbp
    --warmup``) once after installing. Repeated calls on uint8 images of one shape
    reuse the validated plan and call the compiled kernel directly.

    References
    ----------
    .. [1] T. Ojala, M. Pietikainen and T. Maenpaa, "Multiresolution gray-scale and
       rotation invariant texture classification with local binary patterns",
       IEEE TPAMI 24(7), 971-987, 2002.
    .. [2] Seed 001 (docs/lbp.md, "References"): LBP + attention CNN for
       facial expression recognition; original, circle and uniform LBP (its eqs.
       1-4) as a second input stream; circle LBP worked best on FER2013.

    Examples
    --------
    >>> import numpy as np
    >>> from ferdata.features import lbp
    >>> img = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90]], np.uint8)
    >>> lbp(img, "original")[1, 1]  # east, south-west, south, south-east >= 50
    np.uint8(225)
    >>> lbp(img, "uniform", P=8, R=1).dtype
    dtype('uint8')
    >>> lbp(np.zeros((4, 32, 32), np.uint8), "circle", P=16, R=2).shape
    (4, 32, 32)
    """
    if type(image) is np.ndarray and image.dtype is _U8 and image.flags.c_contiguous:
        # fast path: arguments already validated for this shape, kernel entry point known
        key = (variant, P, type(P), R, type(R), image.shape, _pl.num_threads())
        run = _pl.find_run(key)
        if run is not None:
            res = run(image, out)
            if res is not None:
                return res
    return _lbp(image, variant, P, R, out)


def _lbp(image, variant, P, R, out):
    """:func:`lbp` with full validation; registers the fast path of plain uint8 calls."""
    key_args = (variant, P, type(P), R, type(R))
    P, R, dt, top = _settings(variant, P, R)
    img = _as_image(image)
    fast = img is image and img.dtype is _U8 and img.size > 0
    if out is None:
        out = np.empty(img.shape, dt)
    else:
        _check_out(out, img.shape, dt, top)
    img3 = img if img.ndim == 3 else img[None]
    if img3.size == 0:
        return out
    # any other ``out`` (a strided view, a wider dtype, the image itself) is filled by a copy
    direct = _pl.writes_directly(out, img, dt)
    res = out if direct else np.empty(img.shape, dt)
    res3 = res if res.ndim == 3 else res[None]
    threads = _pl.num_threads()
    kernel, extra = _pl.kernel_args(variant, P, R, img3.shape, threads)
    args = (_pl.read_only(img3), res3, np.zeros(1, np.int64)) + extra
    kernel = _pl.parallel_if_compiled(kernel, args)
    kernel(*args)
    if fast:
        _pl.register_run(key_args + (img.shape, threads), kernel, args, img.shape, dt)
    if not direct:
        out[...] = res
    return out


def needs_compile(variant: str = "circle", P: int = 8, R: float = 1.0, dtype=np.uint8,
                  shape=(128, 128), threads=None) -> bool:
    """Whether the first :func:`lbp` call with these settings on images of ``dtype`` and
    ``shape`` ((H, W) or (N, H, W)) compiles numba kernels (seconds) rather than running
    compiled code or loading it from numba's on-disk cache (well under a second), so a
    caller can say "compiling LBP kernels" first. ``threads``: the numba thread count
    of the call (default: the current one). Checks only the kernel that call runs;
    ``lbp_histogram`` is not included.

    >>> needs_compile("uniform", 8, 1, "uint8", (1000, 48, 48)) in (True, False)
    True
    """
    P, R, dt, _ = _settings(variant, P, R)
    shape = tuple(int(x) for x in shape)
    if len(shape) not in (2, 3) or 0 in shape:
        raise ValueError(f"shape must be (H, W) or (N, H, W) with no 0; got {shape}")
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise ValueError(f"dtype must be boolean, integer or floating; got {dtype}")
    shape3 = shape if len(shape) == 3 else (1,) + shape
    img = np.empty((1, 1, 1), np.uint8 if dtype == _U8 else np.float64)
    kernel, extra = _pl.kernel_args(variant, P, R, shape3, threads or _pl.num_threads())
    args = (_pl.read_only(img), np.empty((1, 1, 1), dt), np.zeros(1, np.int64)) + extra
    return not _pl.is_compiled(kernel, args)


def warmup(report=None) -> float:
    """Compile every kernel signature :func:`lbp` and :func:`lbp_histogram` use, or load
    it from numba's on-disk cache, so that no later call pays the compile time.

    That is :func:`lbp` on uint8 and float64 images into uint8, uint16 and uint32 codes,
    ``original``, the ``ror``/``nri_uniform`` tables and the histograms of uint8, uint16
    and uint32 codes (the other variants and every P and R share these). Compiled
    code is cached on disk (``__pycache__`` of the package or ``NUMBA_CACHE_DIR``), so
    run it once after installing: ``ferdata lbp --warmup``. ``report(what, seconds)``
    is called after each step. Returns the total seconds.
    """
    import time

    t0 = time.perf_counter()
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)  # runs on one thread
    big = np.zeros((1, 8, _pl.SERIAL_PX // 8), np.uint8)  # runs in parallel
    steps = [(f"lbp {v} P={P} {src.dtype} -> {code_dtype(v, P)}{' (parallel)' * (src.ndim == 3)}",
              lambda s=src, v=v, P=P: lbp(s, v, P, 1))
             for src in (img, img.astype(np.float64), big, big.astype(np.float64))
             for v, P in (("circle", 8), ("circle", 16), ("circle", 24), ("original", 8))]
    steps.append(("ror/nri_uniform code tables", lambda: lbp(img, "ror", 8, 1)))
    steps += [(f"lbp_histogram {np.dtype(dt)} codes",
               lambda dt=dt: lbp_histogram(np.zeros((8, 8), dt), 8, "uniform", (2, 2)))
              for dt in (np.uint8, np.uint16, np.uint32)]
    for what, step in steps:
        t = time.perf_counter()
        step()
        if report is not None:
            report(what, time.perf_counter() - t)
    return time.perf_counter() - t0


def lbp_histogram(codes, P: int = 8, variant: str = "circle", grid=(7, 7),
                  normalize: bool = True) -> np.ndarray:
    """Spatial LBP histograms: the classic LBP face descriptor (Ahonen et al.).

    The image is cut into ``grid = (gy, gx)`` cells; cell ``(i, j)`` covers rows
    ``i*H//gy : (i+1)*H//gy`` and columns ``j*W//gx : (j+1)*W//gx`` (sizes differ by
    at most one pixel). Each cell gets a histogram of its codes with
    :func:`n_bins` bins, and the histograms are concatenated in cell order (row of
    cells, column of cells, bin).

    Parameters
    ----------
    codes : (H, W) or (N, H, W) integer array
        Output of :func:`lbp` with the same ``variant`` and ``P``.
    P : int, default 8
        Number of neighbours the codes were made with.
    variant : str, default 'circle'
        Variant the codes were made with (sets the number of bins). ``circle`` and
        ``ror`` have ``2**P`` bins and are limited to P <= 16.
    grid : (int, int), default (7, 7)
        Cells per column and per row; at most (H, W).
    normalize : bool, default True
        Divide each cell's histogram by its pixel count (each cell sums to 1), so
        cells of different sizes weigh the same. Otherwise raw counts.

    Returns
    -------
    features : (gy*gx*n_bins,) or (N, gy*gx*n_bins) float32

    Raises
    ------
    ValueError
        If ``codes`` is not a 2-D/3-D integer array or holds a code ``>= n_bins``;
        if ``grid`` is not two positive ints no larger than the image; for a bad
        ``P`` or ``variant``.

    References
    ----------
    .. [1] T. Ahonen, A. Hadid and M. Pietikainen, "Face description with local binary
       patterns: application to face recognition", IEEE TPAMI 28(12), 2006.
    .. [2] T. Ojala, M. Pietikainen and T. Maenpaa, IEEE TPAMI 24(7), 2002.

    Examples
    --------
    >>> import numpy as np
    >>> from ferdata.features import lbp, lbp_histogram
    >>> gray = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
    >>> feat = lbp_histogram(lbp(gray, "uniform"), P=8, variant="uniform", grid=(7, 7))
    >>> feat.shape, feat.dtype
    ((490,), dtype('float32'))
    >>> round(float(feat[:10].sum()), 5)  # each cell sums to 1
    1.0
    """
    _check_variant(variant)
    P = _check_P(P, variant)
    nb = n_bins(variant, P)
    if variant in ("circle", "ror") and P > 16:
        raise ValueError(f"P must be <= 16 for a histogram of variant={variant!r} (2**P bins); "
                         f"got {P}; use variant='uniform' or 'nri_uniform'")
    codes = np.asarray(codes)
    if codes.ndim not in (2, 3) or codes.dtype.kind not in "iu":
        raise ValueError(f"codes must be a 2-D (H, W) or 3-D (N, H, W) integer array; "
                         f"got shape {codes.shape} dtype {codes.dtype}")
    H, W = codes.shape[-2:]
    if (not isinstance(grid, (tuple, list)) or len(grid) != 2
            or not all(isinstance(g, numbers.Integral) and not isinstance(g, bool) for g in grid)
            or not (1 <= grid[0] <= H and 1 <= grid[1] <= W)):
        raise ValueError(f"grid must be two ints (rows, cols) of cells in 1..{(H, W)}; got {grid!r}")
    gy, gx = int(grid[0]), int(grid[1])
    c3 = codes if codes.ndim == 3 else codes[None]
    bad_msg = (f"codes must be in 0..{nb - 1} (the bins of variant={variant!r} with P={P}): "
               "were they made with these settings?")
    if codes.dtype not in (np.uint8, np.uint16, np.uint32):
        if c3.size and (c3.min() < 0 or c3.max() >= nb):
            raise ValueError(bad_msg)
        c3 = c3.astype(np.uint32)
    hist = np.zeros((c3.shape[0], gy, gx, nb), np.float32)
    if _k.cell_histograms(np.ascontiguousarray(c3), gy, gx, nb, hist):
        raise ValueError(bad_msg)
    if normalize:
        rows = np.diff((np.arange(gy + 1) * H) // gy)
        cols = np.diff((np.arange(gx + 1) * W) // gx)
        hist /= (rows[:, None] * cols[None, :]).astype(np.float32)[None, :, :, None]
    hist = hist.reshape(c3.shape[0], -1)
    return hist if codes.ndim == 3 else hist[0]
