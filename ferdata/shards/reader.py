"""Reading shards: images (raw or JPEG) and the other fields."""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import ShardError

_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"


def shard_encoding(h5) -> str:
    enc = h5.attrs.get("encoding", "raw")
    return enc.decode() if isinstance(enc, bytes) else str(enc)


def _decode_into(dst: np.ndarray, filename, j: int, buf: np.ndarray, channels: int, size, gray: bool) -> None:
    """Decode sample ``j``'s JPEG strictly into ``dst`` (RGB (H,W,3), gray (H,W,1), or with
    ``gray`` the (H,W) luma of the RGB image: ``COLOR_RGB2GRAY`` of it, bit for bit);
    a truncated or garbled one is a ShardError."""
    raw = buf.tobytes()
    img = None
    if raw[:2] == _SOI and raw[-2:] == _EOI:
        try:
            img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR)
        except Exception:  # cv2 raises on what imdecode returned as None
            img = None
    if img is None:
        raise ShardError(f"{filename}: sample {j}: corrupt JPEG ({len(raw)} bytes; not a complete JPEG image)")
    if size is not None and img.shape[:2] != (size, size):
        raise ShardError(f"{filename}: sample {j}: JPEG is {img.shape[1]}x{img.shape[0]}, the shard says {size} px")
    if img.shape[:2] != dst.shape[:2]:
        raise ShardError(f"{filename}: sample {j}: JPEG is {img.shape[1]}x{img.shape[0]}, "
                         f"the block's first image is {dst.shape[1]}x{dst.shape[0]}")
    if channels == 1:
        dst.reshape(img.shape)[...] = img
    else:   # BGR -> gray equals RGB -> gray of the same pixels (same weights per channel)
        cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if gray else cv2.COLOR_BGR2RGB, dst=dst)


_DECODE_TASK = 64   # samples per thread task


def read_images(h5, start: int, stop: int, *, gray: bool = False, pool=None) -> np.ndarray:
    """Images ``start:stop`` of an open shard (or face store) as (n,H,W,C) uint8.

    ``gray``: (n,H,W) uint8, ``cv2.COLOR_RGB2GRAY`` of the RGB images (a 1-channel
    store as it is) — without making the RGB block first. ``pool``: a thread pool
    (``concurrent.futures``) the JPEGs are decoded on (OpenCV releases the GIL).
    A JPEG that does not decode to a complete image raises
    :class:`~ferdata.errors.ShardError` naming the file and the sample index.
    """
    enc = shard_encoding(h5)
    channels = int(h5.attrs.get("channels", 3))
    if enc == "raw":
        imgs = h5["image"][start:stop]
        return _raw_gray(imgs) if gray else imgs
    if enc != "jpeg":
        raise ShardError(f"{h5.filename}: unknown image encoding {enc!r}")
    offsets = h5["image_offsets"][start:stop + 1]
    n = max(0, len(offsets) - 1)
    size = h5.attrs.get("size")
    size = None if size is None else int(size)
    if n == 0:
        side = size or 0
        return np.zeros((0, side, side) if gray else (0, side, side, channels), np.uint8)
    blob = h5["image"][offsets[0]:offsets[-1]]
    rel = offsets - offsets[0]
    if size is None:   # a store without the attribute: the first image gives the shape
        first = cv2.imdecode(blob[rel[0]:rel[1]], cv2.IMREAD_UNCHANGED)
        side = first.shape[:2] if first is not None else (0, 0)
    else:
        side = (size, size)
    out = np.empty((n, *side) if gray else (n, *side, channels), np.uint8)
    fname = h5.filename

    def run(a: int) -> None:
        for i in range(a, min(n, a + _DECODE_TASK)):
            _decode_into(out[i], fname, start + i, blob[rel[i]:rel[i + 1]], channels, size, gray)

    tasks = range(0, n, _DECODE_TASK)
    if pool is None or n <= _DECODE_TASK:
        for a in tasks:
            run(a)
    else:
        list(pool.map(run, tasks))
    return out


def _raw_gray(imgs: np.ndarray) -> np.ndarray:
    n, H, W, C = imgs.shape
    if C == 1:
        return imgs[..., 0]
    if n == 0:
        return np.zeros((0, H, W), np.uint8)
    code = {3: cv2.COLOR_RGB2GRAY, 4: cv2.COLOR_RGBA2GRAY}[C]
    return cv2.cvtColor(np.ascontiguousarray(imgs).reshape(n * H, W, C), code).reshape(n, H, W)
