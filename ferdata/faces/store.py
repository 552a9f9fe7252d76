"""The face store ``faces.h5``: aligned faces, masks, landmarks, labels, subjects.

Layout (schema version 1, docs/datasets.md)::

    image      (N,S,S,3) uint8   aligned RGB faces
    mask       (N,S,S)   uint8   convex-hull mask, 0/255
    landmarks  (N,68,2)  float32 aligned (x, y); NaN where unknown
    label      (N,)      int16   canonical class index (ferdata.labels.CLASSES)
    subject    (N,)      str     subject id ("" if the dataset has none)
    source     (N,)      str     path relative to the dataset root (or csv:row)
    split      (N,)      str     official split ("" if none)
    votes      (N,8)     float32 optional (FER+ vote distribution)
    attrs: schema_version, dataset, classes (JSON list of present class names),
           size, ferdata_version, ingest_config (JSON)

The file is written to ``<name>.tmp-<host>-<pid>`` and renamed when complete; a full
disk or any other failure removes the temp and raises a one-line error. Temps of
killed runs on this host are removed when the next writer for the same path starts.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from .._version import __version__
from ..errors import FerdataError
from ..labels import CLASSES, present_classes
from ..atomic import GuardedFile, publish, remove_dead_temps_of, tmp_path

SCHEMA_VERSION = 1
MAX_SIZE = 4096
_STR = h5py.string_dtype("utf-8")
REQUIRED = ("image", "mask", "landmarks", "label", "subject", "source", "split")
REQUIRED_ATTRS = ("schema_version", "size", "dataset", "classes")


def report_path(out) -> Path:
    """The ingest report beside a face store: ``<stem>_ingest_report.json``."""
    out = Path(out)
    return out.with_name(out.stem + "_ingest_report.json")


class FaceStoreWriter:
    """Append faces to a new face store; ``close()`` renames it into place.

    Use as a context manager: on an exception the temporary file is removed and
    no face store appears at ``path``.
    """

    def __init__(self, path, size: int, dataset: str, config: dict | None = None,
                 with_votes: bool = False, chunk: int = 256):
        self.path = Path(path)
        self.size = int(size)
        if not 1 <= self.size <= MAX_SIZE:
            raise FerdataError(f"{self.path}: face size must be in [1, {MAX_SIZE}], got {size}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_temps_of(self.path)
        self.tmp = tmp_path(self.path)
        self.n = 0
        self._written = 0
        self._buf: list = []
        self._chunk = chunk
        self._labels: list[int] = []
        self._fh = GuardedFile(self.tmp)
        self.f = None
        try:
            self.f = h5py.File(self._fh, "w")
            self._create(dataset, config, with_votes, chunk)
            self._check()
        except BaseException:
            self.abort()
            raise

    def _create(self, dataset, config, with_votes, chunk):
        S = self.size
        c = 1  # one face per chunk: no waste for tiny stores, fast random access
        self.f.create_dataset("image", (0, S, S, 3), np.uint8, maxshape=(None, S, S, 3), chunks=(c, S, S, 3))
        self.f.create_dataset("mask", (0, S, S), np.uint8, maxshape=(None, S, S), chunks=(c, S, S))
        self.f.create_dataset("landmarks", (0, 68, 2), np.float32, maxshape=(None, 68, 2), chunks=(chunk, 68, 2))
        self.f.create_dataset("label", (0,), np.int16, maxshape=(None,), chunks=(chunk * 16,))
        for name in ("subject", "source", "split"):
            self.f.create_dataset(name, (0,), _STR, maxshape=(None,), chunks=(chunk * 16,))
        if with_votes:
            self.f.create_dataset("votes", (0, len(CLASSES)), np.float32, maxshape=(None, len(CLASSES)),
                                  chunks=(chunk, len(CLASSES)))
        a = self.f.attrs
        a["schema_version"] = SCHEMA_VERSION
        a["dataset"] = dataset
        a["size"] = S
        a["ferdata_version"] = __version__
        a["ingest_config"] = json.dumps(config or {}, sort_keys=True, default=str)

    _FIELDS = ("image", "mask", "landmarks", "label", "subject", "source", "split", "votes")

    def append(self, image, mask, landmarks, label, subject="", source="", split="", votes=None):
        """Append one face (arrays as in the layout above); written in blocks."""
        S = self.size
        if image.shape != (S, S, 3) or image.dtype != np.uint8:
            raise ValueError(f"face image must be ({S},{S},3) uint8, got {image.shape} {image.dtype}")
        if mask.shape != (S, S):
            raise ValueError(f"face mask must be ({S},{S}), got {mask.shape}")
        if votes is None:
            votes = np.full(len(CLASSES), np.nan, np.float32)
        row = (image, mask, np.asarray(landmarks, np.float32), int(label), subject, source, split, votes)
        self._buf.append(row)
        self._labels.append(int(label))
        self.n += 1
        if len(self._buf) >= self._chunk:
            self._flush()

    def _flush(self):
        if not self._buf:
            return
        i, k = self._written, len(self._buf)
        cols = list(zip(*self._buf))
        for name, col in zip(self._FIELDS, cols):
            if name not in self.f:
                continue
            ds = self.f[name]
            ds.resize(i + k, axis=0)
            ds[i:i + k] = np.array(col, dtype=object) if ds.dtype.kind == "O" else np.stack(col)
        self._written += k
        self._buf = []
        self._check()

    def _check(self):
        """Raise (after removing the temp) if a write to the temp failed, e.g. a full disk."""
        err = self._fh.error
        if err is not None:
            self.abort()
            raise FerdataError(f"{self.path}: cannot write the face store ({err.strerror or err}; "
                               f"temp {self.tmp.name} removed, nothing written)")

    def close(self):
        """Finish: write the classes attr, fsync and rename into place."""
        if self.n == 0:
            self.abort()
            raise FerdataError(f"{self.path}: no face could be ingested (see the ingest report)")
        try:
            self._flush()
            self.f.attrs["classes"] = json.dumps(present_classes(self._labels))
            self.f.close()
            self._fh.sync()
            self._check()
            self._fh.close()
            self._check()
            publish(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self):
        """Close quietly and remove the temp (nothing appears at ``path``)."""
        for close in (getattr(self.f, "close", None), self._fh.close):
            try:
                if close is not None:
                    close()
            except Exception:  # noqa: BLE001 - already failing; the temp goes either way
                pass
        self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        else:
            self.close()
        return False


def _decode(arr):
    return np.array([s.decode() if isinstance(s, bytes) else str(s) for s in arr], dtype=object)


class FaceStore:
    """Read a face store. Arrays are loaded on first access (small ones eagerly)."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise FerdataError(f"{self.path}: face store does not exist")
        try:
            self.f = h5py.File(self.path, "r")
        except OSError as exc:
            raise FerdataError(f"{self.path}: not a readable HDF5 face store ({exc})") from exc
        try:
            self._load()
        except BaseException:
            self.f.close()
            raise

    def _load(self):
        a, f = self.f.attrs, self.f
        bad = lambda why: FerdataError(f"{self.path}: not a valid face store: {why}")  # noqa: E731
        if "schema_version" not in a:
            raise bad("no schema_version attribute (is it a ferdata face store?)")
        version = a["schema_version"]
        if str(version) != str(SCHEMA_VERSION):
            raise FerdataError(f"{self.path}: face store schema_version {version} is not supported "
                               f"(this ferdata reads version {SCHEMA_VERSION}); re-ingest with this version")
        missing = [k for k in REQUIRED if k not in f] + [f"attr {k}" for k in REQUIRED_ATTRS if k not in a]
        if missing:
            raise bad(f"missing {', '.join(missing)}")
        try:
            self.size = int(a["size"])
            self.dataset = str(a["dataset"])
            self.classes = json.loads(a["classes"])
            self.config = json.loads(a.get("ingest_config", "{}"))
        except (TypeError, ValueError) as exc:
            raise bad(f"unreadable attributes ({exc})") from None
        if not isinstance(self.classes, list) or not set(self.classes) <= set(CLASSES):
            raise bad(f"attr classes {self.classes!r} is not a list of {', '.join(CLASSES)}")
        self._check_shapes()
        self.labels = f["label"][:].astype(np.int64)
        if len(self.labels) and not (0 <= self.labels.min() and self.labels.max() < len(CLASSES)):
            raise bad(f"label values must be in 0..{len(CLASSES) - 1}")
        self.subjects = _decode(f["subject"][:])
        self.sources = _decode(f["source"][:])
        self.splits = _decode(f["split"][:])
        self.landmarks = f["landmarks"][:]

    def _check_shapes(self):
        f, S = self.f, self.size
        n = f["image"].shape[0]
        want = {"image": (n, S, S, 3), "mask": (n, S, S), "landmarks": (n, 68, 2), "label": (n,),
                "subject": (n,), "source": (n,), "split": (n,)}
        for k, shape in want.items():
            if f[k].shape != shape:
                raise FerdataError(f"{self.path}: not a valid face store: {k} has shape {f[k].shape}, "
                                   f"expected {shape} (size attr {S}, {n} images)")

    def __len__(self):
        return len(self.labels)

    @property
    def images(self):
        return self.f["image"]

    @property
    def masks(self):
        return self.f["mask"]

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def summary(self) -> dict:
        """Counts per class / subject / split and basic facts (JSON-able)."""
        from collections import Counter

        by_class = Counter(CLASSES[i] for i in self.labels)
        return {
            "path": str(self.path),
            "dataset": self.dataset,
            "faces": len(self),
            "size": self.size,
            "classes": self.classes,
            "per_class": {c: by_class.get(c, 0) for c in self.classes},
            "subjects": len(set(self.subjects) - {""}),
            "per_subject": dict(sorted(Counter(self.subjects).items())),
            "per_split": dict(sorted(Counter(self.splits).items())),
            "landmarks_known": int(np.isfinite(self.landmarks).all(axis=(1, 2)).sum()),
            "bytes": self.path.stat().st_size,
        }
