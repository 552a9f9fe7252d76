"""Write one shard atomically: ``<name>.tmp-<host>-<pid>`` -> fsync -> hash -> ``os.replace``."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from .._version import __version__
from ..errors import ShardError
from .manifest import file_sha256
from ..atomic import publish, tmp_path
from .schema import SCHEMA_VERSION, encode_jpeg, pack_masks


MASK_CHUNK = 64


class ShardBuffer:
    """Collects the samples of one shard in memory (images encoded as they come).

    A buffer of a part of a shard (samples rendered by a worker) is copied into the
    shard's buffer with :meth:`put`, so a shard can be made by several workers.
    """

    FIELDS = ("masks", "label", "landmarks", "face_index", "subject", "params", "background", "bg_box")

    def __init__(self, n: int, size: int, channels: int, encoding: str, n_params: int, quality: int = 95):
        self.n, self.size, self.channels, self.encoding, self.quality = n, size, channels, encoding, quality
        self.i = 0
        if encoding == "raw":
            self.images = np.zeros((n, size, size, channels), np.uint8)
        else:
            self.blobs: list = [None] * n
        self.masks = np.zeros((n, (size * size + 7) // 8), np.uint8)
        self.label = np.zeros(n, np.uint8)
        self.landmarks = np.zeros((n, 68, 2), np.float16)
        self.face_index = np.zeros(n, np.int32)
        self.subject = np.zeros(n, np.int32)
        self.params = np.zeros((n, n_params), np.float32)
        self.background = np.zeros(n, np.int64)
        self.bg_box = np.zeros((n, 4), np.int32)

    def add(self, image, mask, label, landmarks, face_index, subject, params, background, bg_box, blob=None):
        """Append one sample; ``blob``: its JPEG already encoded (``image`` is then ignored)."""
        i = self.i
        if self.encoding == "raw":
            self.images[i] = image
        else:
            self.blobs[i] = (blob if blob is not None else
                             encode_jpeg(image if image.shape[2] == 3 else image[..., 0], self.quality))
        self.masks[i] = pack_masks(mask[None])[0]
        self.label[i] = label
        self.landmarks[i] = landmarks
        self.face_index[i] = face_index
        self.subject[i] = subject
        self.params[i] = params
        self.background[i] = background
        self.bg_box[i] = bg_box
        self.i += 1

    def put(self, offset: int, part: "ShardBuffer") -> None:
        """Copy the complete buffer ``part`` (another process's samples) to rows ``offset...``."""
        if part.i != part.n or offset < 0 or offset + part.n > self.n or part.encoding != self.encoding:
            raise ShardError(f"shard part of {part.i}/{part.n} samples does not fit rows {offset}.. of {self.n}")
        sl = slice(offset, offset + part.n)
        if self.encoding == "raw":
            self.images[sl] = part.images
        else:
            self.blobs[sl] = part.blobs
        for name in self.FIELDS:
            getattr(self, name)[sl] = getattr(part, name)
        self.i += part.n


def _fill(f, buf: ShardBuffer, attrs: dict) -> None:
    if buf.encoding == "raw":
        f.create_dataset("image", data=buf.images)
    else:
        lengths = np.fromiter((len(b) for b in buf.blobs), np.int64, count=buf.n)
        offsets = np.zeros(buf.n + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        blob = np.frombuffer(b"".join(buf.blobs), np.uint8)
        f.create_dataset("image", data=blob)
        f.create_dataset("image_offsets", data=offsets)
    for name in ("label", "landmarks", "face_index", "subject", "params", "background", "bg_box"):
        f.create_dataset(name, data=getattr(buf, name))
    # packed hull masks are mostly runs of 0x00/0xFF: gzip-1 in 64-row chunks makes
    # them ~10x smaller (2 KB -> ~0.2 KB/sample at 128 px) and still reads in blocks
    f.create_dataset("mask", data=buf.masks, chunks=(min(MASK_CHUNK, buf.n), buf.masks.shape[1]),
                     compression="gzip", compression_opts=1)
    a = f.attrs
    a["schema_version"] = SCHEMA_VERSION
    a["encoding"] = buf.encoding
    a["size"] = buf.size
    a["channels"] = buf.channels
    a["ferdata_version"] = __version__
    for k, v in attrs.items():
        a[k] = v if isinstance(v, (int, float, str, np.integer, np.floating)) else json.dumps(v)


def write_shard(path, buf: ShardBuffer, attrs: dict) -> dict:
    """Write ``buf`` to ``path`` atomically; returns the manifest entry (n, bytes, sha256, lbp).

    The entry's ``bytes`` and ``sha256`` are those of the fsynced temporary file,
    taken before the rename (the file listed is the file written). HDF5 writes through
    a :class:`~ferdata.atomic.GuardedFile`, so a full disk is a clean ``OSError``
    (HDF5 itself cannot recover from a failed write). On any error the temporary file
    is removed and nothing appears at ``path``.
    """
    from ..atomic import GuardedFile

    path = Path(path)
    if buf.i != buf.n:
        raise ShardError(f"{path}: shard buffer holds {buf.i} of {buf.n} samples")
    tmp = tmp_path(path)
    guard = GuardedFile(tmp)
    try:
        try:
            with h5py.File(guard, "w", libver="v110", track_order=False) as f:
                _fill(f, buf, attrs)
            guard.sync()
        finally:
            guard.close()
        if guard.error is not None:
            raise guard.error
        entry = {"n": buf.n, "bytes": tmp.stat().st_size, "sha256": file_sha256(tmp), "lbp": []}
        publish(tmp, path)
    except BaseException as exc:
        guard.close()
        tmp.unlink(missing_ok=True)
        err = guard.error
        if err is not None:  # a failed write (HDF5 may trip over it later): report the write
            raise OSError(err.errno, f"{path}: cannot write the shard ({err.strerror or err}); "
                                     "nothing was written") from exc
        raise
    return entry
