"""Reading shards: images (raw or JPEG) and the other fields."""
from __future__ import annotations

import numpy as np

from ..errors import ShardError
from .schema import decode_jpeg

_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"


def shard_encoding(h5) -> str:
    enc = h5.attrs.get("encoding", "raw")
    return enc.decode() if isinstance(enc, bytes) else str(enc)


def _decode(h5, j: int, buf: np.ndarray, channels: int) -> np.ndarray:
    """Decode sample ``j``'s JPEG strictly: a truncated or garbled one is a ShardError."""
    raw = buf.tobytes()
    img = None
    if raw[:2] == _SOI and raw[-2:] == _EOI:
        try:
            img = decode_jpeg(buf, channels)
        except Exception:  # cv2 raises on what imdecode returned as None
            img = None
    if img is None:
        raise ShardError(f"{h5.filename}: sample {j}: corrupt JPEG ({len(raw)} bytes; not a complete JPEG image)")
    size = h5.attrs.get("size")
    if size is not None and img.shape[:2] != (int(size), int(size)):
        raise ShardError(f"{h5.filename}: sample {j}: JPEG is {img.shape[1]}x{img.shape[0]}, "
                         f"the shard says {int(size)} px")
    return img


def read_images(h5, start: int, stop: int) -> np.ndarray:
    """Images ``start:stop`` of an open shard (or face store) as (n,H,W,C) uint8.

    A JPEG that does not decode to a complete image raises
    :class:`~ferdata.errors.ShardError` naming the file and the sample index.
    """
    enc = shard_encoding(h5)
    if enc == "raw":
        return h5["image"][start:stop]
    if enc != "jpeg":
        raise ShardError(f"{h5.filename}: unknown image encoding {enc!r}")
    offsets = h5["image_offsets"][start:stop + 1]
    blob = h5["image"][offsets[0]:offsets[-1]]
    channels = int(h5.attrs.get("channels", 3))
    base = offsets[0]
    out = [_decode(h5, start + i, blob[a - base:b - base], channels)
           for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:]))]
    if not out:
        size = int(h5.attrs["size"])
        return np.zeros((0, size, size, channels), np.uint8)
    return np.stack(out)
