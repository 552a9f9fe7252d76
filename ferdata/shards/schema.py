"""Shard schema (version 1): names, dtypes and the image encodings.

See docs/shards.md for the full description. A shard holds a contiguous range of
the global sample index of one render.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..config import default_encoding  # noqa: F401  (the schema's rule, declared with RenderConfig)

SCHEMA_VERSION = 1
ENCODINGS = ("raw", "jpeg")
JPEG_QUALITY = 95

# dataset name -> (dtype, shape suffix description) for docs and verification
FIELDS = {
    "image": "raw: (n,H,W,C) uint8 | jpeg: flat uint8 blob + image_offsets (n+1,) int64",
    "mask": "(n, ceil(H*W/8)) uint8, np.packbits of the warped hard mask (row-major)",
    "label": "(n,) uint8 canonical class index",
    "landmarks": "(n,68,2) float16 (x, y) in output pixels",
    "face_index": "(n,) int32 index into the face store",
    "subject": "(n,) int32 index into attr 'subjects'",
    "params": "(n,k) float32, column names in attr 'param_names'",
    "background": "(n,) int64 background image id (COCO image id)",
    "bg_box": "(n,4) int32 x, y, w, h of the crop in the background image",
}


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """RGB (H,W,3) or gray (H,W) uint8 -> JPEG bytes (cv2, 4:2:0 as libjpeg default)."""
    if image.ndim == 3 and image.shape[2] == 3:
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    else:
        bgr = image if image.ndim == 2 else image[..., 0]
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(buf, channels: int = 3) -> np.ndarray:
    """JPEG bytes -> RGB (H,W,3) or gray (H,W,1) uint8."""
    arr = np.frombuffer(buf, np.uint8)
    if channels == 1:
        img = cv2.imdecode(arr, cv2.IMREAD_GRAYSCALE)
        return img[..., None]
    img = cv2.imdecode(arr, cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """(n,H,W) bool/uint8 -> (n, ceil(H*W/8)) uint8."""
    n = masks.shape[0]
    return np.packbits(masks.reshape(n, -1) > 0, axis=1)


def unpack_masks(packed: np.ndarray, size) -> np.ndarray:
    """(n, ceil(H*W/8)) uint8 -> (n,H,W) uint8 in {0, 255}."""
    h, w = (size, size) if np.isscalar(size) else size
    n = packed.shape[0]
    bits = np.unpackbits(packed, axis=1, count=h * w)
    return (bits.reshape(n, h, w) * np.uint8(255))
