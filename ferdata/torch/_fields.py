"""Field names, decoding and per-sample conversion for the torch datasets (numpy + cv2).

A :class:`Pipeline` turns what a source read (stored values) into the arrays the
datasets return, batch-first: images ``(n,h,w,C)`` uint8 (made NCHW views later),
masks / LBP codes ``(n,h,w)``, labels int64 and so on.
"""
from __future__ import annotations

import itertools
import os
import re
import sys

import cv2
import numpy as np

from ..errors import FerdataError
from ..labels import CLASSES
from ..parallel import thread_pool
from ..shards.schema import unpack_masks

#: fields of a shard (besides ``lbp/<name>`` and ``lbp:<spec>``)
SHARD_FIELDS = ("image", "label", "landmarks", "mask", "subject", "params", "face_index", "background",
                "bg_box", "index")
#: fields of a face store (besides ``lbp/<name>`` and ``lbp:<spec>``)
FACESTORE_FIELDS = ("image", "label", "landmarks", "mask", "subject", "index", "votes")

_LBP_SPEC = re.compile(r"^(original|circle|uniform|ror|nri_uniform)(?:_P(\d+)_R(\d+(?:\.\d+)?))?$")
_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)
try:  # libjpeg-turbo through simplejpeg: ~25% faster than cv2.imdecode at 128 px (benchmarks/loader.py)
    import simplejpeg as _sj
except ImportError:  # pragma: no cover - optional fast path
    _sj = None
_REDUCED = {1: (cv2.IMREAD_COLOR, cv2.IMREAD_GRAYSCALE),
            2: (cv2.IMREAD_REDUCED_COLOR_2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
            4: (cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
            8: (cv2.IMREAD_REDUCED_COLOR_8, cv2.IMREAD_REDUCED_GRAYSCALE_8)}


def parse_lbp_spec(spec: str):
    """``'circle_P8_R1'`` -> ``('circle', 8, 1.0)``; ``'uniform'`` -> P=8, R=1; ``'original'``."""
    m = _LBP_SPEC.match(spec)
    if not m:
        raise FerdataError(f"field 'lbp:{spec}': expected lbp:<variant>[_P<P>_R<R>] with variant one of "
                           "original, circle, uniform, ror, nri_uniform (e.g. 'lbp:circle_P8_R1')")
    variant, P, R = m.group(1), m.group(2), m.group(3)
    return variant, int(P) if P else 8, float(R) if R else 1.0


_OMP_INHERITED = False  # set in a forked child whose parent had started numba's OpenMP pool


def _after_fork_in_child():
    global _OMP_INHERITED
    numba = sys.modules.get("numba")
    if numba is None:
        return
    try:
        from numba.np.ufunc import parallel
        _OMP_INHERITED = bool(parallel._is_initialized) and numba.threading_layer() == "omp"
    except Exception:  # pragma: no cover - numba internals moved
        _OMP_INHERITED = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

_FORK_MSG = ("on-the-fly LBP ('lbp:...') in a forked DataLoader worker: the parent process had already run "
             "numba's OpenMP thread pool, and GNU OpenMP aborts a forked child that uses it. Use "
             "DataLoader(..., multiprocessing_context='spawn') (or 'forkserver'), or set "
             "NUMBA_THREADING_LAYER=workqueue (or tbb) before anything runs LBP, or store the codes in the "
             "shards with `ferdata lbp` and read them as 'lbp/<name>'.")


def lbp_function():
    """``ferdata.features.lbp.lbp`` (imported lazily: numba compiles on first use)."""
    try:
        from ..features.lbp import lbp
    except Exception as exc:  # ImportError, or a half-installed features package
        raise FerdataError(f"on-the-fly LBP fields ('lbp:...') need ferdata.features.lbp, which failed "
                           f"to import: {exc}") from exc
    return lbp


def normalize_resize(resize):
    """None | int | (h, w) -> None or (h, w) ints."""
    if resize is None:
        return None
    if isinstance(resize, (int, np.integer)) and not isinstance(resize, bool):
        resize = (int(resize), int(resize))
    try:
        h, w = (int(v) for v in resize)
    except (TypeError, ValueError):
        raise FerdataError(f"resize must be an int or (height, width); got {resize!r}") from None
    if h < 1 or w < 1:
        raise FerdataError(f"resize must be positive; got {resize!r}")
    return h, w


def label_lut(label_map, classes) -> np.ndarray | None:
    """None (canonical indices) or a lookup table canonical index -> returned label."""
    if label_map in (None, "canonical"):
        return None
    if label_map == "present":
        names = list(classes)
    elif isinstance(label_map, dict):
        lut = np.full(len(CLASSES), -1, np.int64)
        for name, i in label_map.items():
            if name not in CLASSES:
                raise FerdataError(f"label_map: {name!r} is not a class name ({', '.join(CLASSES)})")
            lut[CLASSES.index(name)] = int(i)
        return lut
    else:
        raise FerdataError(f"label_map must be 'canonical', 'present' or a dict name -> index; got {label_map!r}")
    lut = np.full(len(CLASSES), -1, np.int64)
    for i, name in enumerate(names):
        lut[CLASSES.index(name)] = i
    return lut


class DecodeError(FerdataError):
    """An image that could not be decoded; ``item`` is its position in the batch."""

    item = None


def run_chunks(decode, raw, out, threads: int, min_chunk: int = 16, grab: int = 4) -> None:
    """``decode(raw[i], out[i])`` for every i, on ``threads`` threads (this one included).

    The threads take ``grab`` items at a time from a shared counter, so a thread slowed
    by other work on the machine does not hold the batch up. A failure raises
    :class:`DecodeError` with ``item`` = the first failing position (every item before
    it was decoded: items are taken in order and a thread stops at its first failure).
    """
    n = len(raw)
    if threads <= 1 or n < 2 * min_chunk:
        _decode_range(decode, raw, out, 0, n)
        return
    counter = itertools.count()
    errors = []

    def work():
        while not errors:
            lo = next(counter) * grab  # atomic under the GIL
            if lo >= n:
                return
            try:
                _decode_range(decode, raw, out, lo, min(lo + grab, n))
            except DecodeError as exc:
                errors.append(exc)
    helpers = [thread_pool(threads - 1, "decode").submit(work) for _ in range(min(threads, n // min_chunk) - 1)]
    try:
        work()
    finally:
        errors.extend(e for e in (f.exception() for f in helpers) if e is not None)
    if errors:
        raise min(errors, key=lambda e: n if getattr(e, "item", None) is None else e.item)


def _decode_range(decode, raw, out, lo: int, hi: int) -> None:
    for i in range(lo, hi):
        try:
            decode(raw[i], out[i])
        except DecodeError as exc:
            exc.item = i
            raise


class Pipeline:
    """Decoding and conversion options of one dataset (picklable, no open files)."""

    def __init__(self, fields, source, resize=None, gray: bool = False, label_map="canonical",
                 reduced_decode: bool = True, decode_threads=None):
        if isinstance(fields, str):
            fields = (fields,)
        fields = tuple(fields)
        if not fields:
            raise FerdataError("fields must name at least one field")
        if len(set(fields)) != len(fields):
            raise FerdataError(f"fields has duplicates: {fields}")
        known = SHARD_FIELDS if source.kind == "shards" else FACESTORE_FIELDS
        self.fields = fields
        self.lbp_fly = {}
        stored = []
        for name in fields:
            if name.startswith("lbp:"):
                self.lbp_fly[name] = parse_lbp_spec(name[4:])
                stored.append("image")
            elif name.startswith("lbp/"):
                stored.append(name)
            elif name in known:
                stored.append(name)
            else:
                raise FerdataError(f"unknown field {name!r}: expected one of {', '.join(known)}, "
                                   "'lbp/<dataset>' (stored) or 'lbp:<variant>_P<P>_R<R>' (computed)")
        self.stored = tuple(dict.fromkeys(stored))
        on_disk = [n for n in self.stored if n not in ("index",) and not (source.kind == "facestore"
                                                                           and n in ("label", "subject"))]
        source.check_fields(on_disk, 0 if source.kind == "shards" else None)
        if self.lbp_fly:
            self._lbp = None
            lbp_function()  # fail early, in the main process, if it cannot be imported
        self.size = source.size
        self.channels = source.channels
        self.encoding = source.encoding
        self.resize = normalize_resize(resize)
        self.gray = bool(gray)
        self.lut = label_lut(label_map, source.classes)
        self.reduced_decode = reduced_decode
        if decode_threads is not None and (isinstance(decode_threads, bool) or int(decode_threads) < 1):
            raise FerdataError(f"decode_threads must be >= 1 or None (automatic), got {decode_threads!r}")
        self.decode_threads = decode_threads
        self.out_hw = self.resize or (self.size, self.size)
        self.out_c = 1 if (self.gray or self.channels == 1) else 3

    # -- images ------------------------------------------------------------------------
    def _resize(self, img, interp=None):
        h, w = self.out_hw
        if img.shape[0] == h and img.shape[1] == w:
            return img
        if interp is None:
            interp = cv2.INTER_AREA if (h <= img.shape[0] and w <= img.shape[1]) else cv2.INTER_LINEAR
        return cv2.resize(img, (w, h), interpolation=interp)

    def _reduce_factor(self) -> int:
        if self.resize is None or not self.reduced_decode:
            return 1
        h, w = self.resize
        for f in (8, 4, 2):
            if self.size % f == 0 and self.size // f >= max(h, w):
                return f
        return 1

    def images(self, raw) -> np.ndarray:
        """Decode / convert / resize stored images -> (n,h,w,C) uint8."""
        h, w = self.out_hw
        C = self.out_c
        gray = C == 1
        if self.encoding == "jpeg":
            out = np.empty((len(raw), h, w, C), np.uint8)
            decode = self._jpeg_decoder(gray)
            run_chunks(decode, raw, out, self.threads())
            return out
        arr = raw
        n = arr.shape[0]
        if (not gray or arr.shape[-1] == 1) and self.resize is None:
            return arr
        out = np.empty((n, h, w, C), np.uint8)
        for i in range(n):
            img = arr[i]
            if gray and img.shape[-1] == 3:
                img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
            elif img.shape[-1] == 1:
                img = img[..., 0]
            img = self._resize(img)
            out[i] = img if img.ndim == 3 else img[..., None]
        return out

    def threads(self) -> int:
        """Decode threads: ``decode_threads``, or (None) every core in the main process and
        one thread inside a DataLoader worker (the workers already use the cores)."""
        if self.decode_threads is not None:
            return max(1, int(self.decode_threads))
        if "torch.utils.data" in sys.modules:
            import torch.utils.data as tud

            if tud.get_worker_info() is not None:
                return 1
        return min(8, os.cpu_count() or 1)

    def _jpeg_decoder(self, gray: bool):
        """A function decoding ``raw[i]`` into ``out[i]`` (thread-safe: the GIL is released)."""
        f = self._reduce_factor()
        color_flag, gray_flag = _REDUCED[f]
        if gray:
            flag, cvt = gray_flag, None
        elif _RGB is not None:
            flag, cvt = (color_flag & ~cv2.IMREAD_COLOR) | _RGB, None
        else:  # pragma: no cover - OpenCV < 4.10
            flag, cvt = color_flag, cv2.COLOR_BGR2RGB
        if _sj is not None and f == 1:
            cs = "GRAY" if gray else "RGB"

            def decode(buf, dst):
                try:
                    if self.resize is None:
                        _sj.decode_jpeg(buf, colorspace=cs, buffer=dst)
                        return
                    img = self._resize(_sj.decode_jpeg(buf, colorspace=cs))
                except ValueError as exc:
                    raise DecodeError(f"corrupt JPEG ({exc})") from exc
                dst[:] = img if img.ndim == 3 else img[..., None]
            return decode

        def decode_cv(buf, dst):
            img = cv2.imdecode(buf, flag)
            if img is None:
                raise DecodeError("corrupt JPEG (OpenCV could not decode it)")
            if cvt is not None:
                img = cv2.cvtColor(img, cvt)
            img = self._resize(img)
            dst[:] = img if img.ndim == 3 else img[..., None]
        return decode_cv

    def _planes(self, arr: np.ndarray) -> np.ndarray:
        """(n,H,W) integer maps resized with nearest neighbour (masks, stored LBP codes)."""
        if self.resize is None or arr.shape[1:3] == self.out_hw:
            return arr
        h, w = self.out_hw
        out = np.empty((arr.shape[0], h, w), arr.dtype)
        for i in range(arr.shape[0]):
            out[i] = cv2.resize(arr[i], (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
        return out

    # -- everything ----------------------------------------------------------------------
    def process(self, raw: dict) -> dict:
        """Stored values (request order) -> output numpy arrays, batch first."""
        out = {}
        img = None
        if "image" in raw:
            img = self.images(raw["image"])
        for name in self.fields:
            if name == "image":
                out[name] = img
            elif name.startswith("lbp:"):
                out[name] = self._lbp_codes(img, *self.lbp_fly[name])
            elif name.startswith("lbp/"):
                v = raw[name]
                out[name] = self._planes(v if v.dtype.itemsize == 1 or v.dtype == np.int32 else v.astype(np.int32))
            elif name == "mask":
                v = raw[name]
                if v.ndim == 2:  # packed (shards)
                    v = unpack_masks(v, self.size)
                out[name] = self._planes(v)
            elif name == "label":
                v = raw[name].astype(np.int64)
                out[name] = v if self.lut is None else self.lut[v]
            elif name == "landmarks":
                v = raw[name].astype(np.float32)
                if self.resize is not None:
                    h, w = self.out_hw
                    s = np.array([w / self.size, h / self.size], np.float32)
                    v = (v + 0.5) * s - 0.5  # pixel centres at integers, as cv2.resize
                out[name] = v
            elif name in ("params", "votes"):
                out[name] = raw[name].astype(np.float32, copy=False)
            else:
                out[name] = raw[name].astype(np.int64)
        return out

    def _lbp_codes(self, img, variant, P, R):
        if _OMP_INHERITED:
            raise FerdataError(_FORK_MSG)
        if self._lbp is None:
            self._lbp = lbp_function()
        g = img[..., 0] if img.shape[-1] == 1 else np.stack([cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in img])
        codes = self._lbp(np.ascontiguousarray(g), variant=variant, P=P, R=R)
        return codes if codes.dtype == np.uint8 else codes.astype(np.int32)

    def __getstate__(self):
        d = self.__dict__.copy()
        if "_lbp" in d:
            d["_lbp"] = None
        return d
