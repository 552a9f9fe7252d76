"""Reading shards: images (raw or JPEG) and the other fields."""
from __future__ import annotations

import numpy as np

from .schema import decode_jpeg


def shard_encoding(h5) -> str:
    enc = h5.attrs.get("encoding", "raw")
    return enc.decode() if isinstance(enc, bytes) else str(enc)


def read_images(h5, start: int, stop: int) -> np.ndarray:
    """Images ``start:stop`` of an open shard (or face store) as (n,H,W,C) uint8."""
    enc = shard_encoding(h5)
    if enc == "raw":
        return h5["image"][start:stop]
    if enc != "jpeg":
        raise ValueError(f"{h5.filename}: unknown image encoding {enc!r}")
    offsets = h5["image_offsets"][start:stop + 1]
    blob = h5["image"][offsets[0]:offsets[-1]]
    channels = int(h5.attrs.get("channels", 3))
    base = offsets[0]
    out = [decode_jpeg(blob[a - base:b - base], channels) for a, b in zip(offsets[:-1], offsets[1:])]
    if not out:
        size = int(h5.attrs["size"])
        return np.zeros((0, size, size, channels), np.uint8)
    return np.stack(out)
