"""Ingest: dataset records -> landmarks -> aligned faces + masks -> face store.

``ingest(records, out)`` is the library entry point; ``ferdata ingest`` wraps it.
Faces are processed in a process pool (``workers``); results are written in the
order of the dataset. Files that cannot be read or hold no face are recorded in
the report with the reason (``on_error="skip"``) or stop the ingest with a
one-line error naming the file (``on_error="raise"``); in both cases no
half-written face store is left behind.
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, Iterable, Optional

import cv2
import numpy as np

from . import landmarks as lmk
from .align import align_face
from ..config import IngestConfig, to_dict
from ..datasets.base import FaceRecord
from ..errors import FerdataError, NoFaceError
from .store import FaceStoreWriter, report_path  # noqa: F401  (report_path: ingest's public name too)
from ..labels import CLASSES
from .masks import convex_hull_mask
from ..parallel import imap_ordered
from .quality import pre_alignment
from ..atomic import atomic_write_text

log = logging.getLogger(__name__)
DEFAULT_SIZE = 256


def check_jpeg_complete(path) -> None:
    """Raise FerdataError if ``path`` is a JPEG cut short (libjpeg only warns and fills grey).

    A complete JPEG has an end-of-image marker (FFD9) after its last start-of-scan (FFDA);
    neither byte pair can occur inside entropy-coded data. Non-JPEG files are not checked.
    """
    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"\xff\xd8":
                return
            data = fh.read()
    except OSError as exc:
        raise FerdataError(f"{path}: cannot read image ({exc.strerror or exc})") from None
    if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        raise FerdataError(f"{path}: truncated JPEG (no end-of-image marker after the last scan)")


def read_image_rgb(path) -> np.ndarray:
    """Read an image file as RGB uint8 (8/16-bit, gray or colour); a truncated JPEG is an error."""
    check_jpeg_complete(path)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if img is None:
        raise FerdataError(f"{path}: cannot read image (missing, corrupt or unsupported format)")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _to_rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    return img[..., :3]


def process_record(rec: FaceRecord, cfg: IngestConfig, size: int) -> dict:
    """Load, find landmarks, align and mask one record (raises on failure)."""
    img = rec.image if rec.image is not None else read_image_rgb(rec.path)
    img = _to_rgb(np.asarray(img, np.uint8))
    if rec.aligned:
        # pre-cropped faces (FER2013/FER+): stored as they are
        face = img if img.shape[:2] == (size, size) else cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR)
        lm = np.full((68, 2), np.nan, np.float32)
        mask = np.full((size, size), 255, np.uint8)
        info = {"detector": "none", **pre_alignment(None)}
        if cfg.detect_aligned:
            try:
                found = lmk.locate_face(face, upsample=max(cfg.upsample, 2), retry_upsample=None,
                                        detector=cfg.detector)
                lm, mask = found.landmarks, convex_hull_mask(found.landmarks, size, cfg.forehead)
                info = {"detector": found.detector, **pre_alignment(found.landmarks)}
            except NoFaceError:
                pass
        return dict(image=face, mask=mask, landmarks=lm, info=info)
    if rec.landmarks is not None:
        pts, det = np.asarray(rec.landmarks, np.float32), "dataset"
    elif rec.box is not None:
        pts, det = lmk.predict_landmarks(img, rec.box), "box"
    else:
        found = lmk.locate_face(img, upsample=cfg.upsample, retry_upsample=cfg.retry_upsample,
                                detector=cfg.detector)
        pts, det = found.landmarks, found.detector
    face, lm, _ = align_face(img, pts, size, eye_weight=cfg.eye_weight)
    mask = convex_hull_mask(lm, size, cfg.forehead)
    return dict(image=face, mask=mask, landmarks=lm, info={"detector": det, **pre_alignment(pts)})


def _work(args):
    rec, cfg, size = args
    try:
        return rec, process_record(rec, cfg, size), None
    except (FerdataError, ValueError, cv2.error) as exc:
        return rec, None, str(exc)


def ingest(records: Iterable[FaceRecord], out, dataset: str, cfg: IngestConfig | None = None,
           workers: int = 1, root: str = "", skipped: Optional[list] = None,
           on_progress: Optional[Callable[[int, int], None]] = None, overwrite: bool = False) -> dict:
    """Ingest ``records`` into the face store ``out`` and write its report.

    Parameters
    ----------
    records : iterable of FaceRecord
        From a reader in :mod:`ferdata.datasets`.
    out : path
        The face store to create (written to a temporary name, then renamed).
    dataset : str
        Dataset name stored in the attrs.
    cfg : IngestConfig
    workers : int
        Processes for detection/alignment (1 = in this process).
    skipped : list, optional
        The list the reader appends its own skipped (source, reason) pairs to; they
        are merged into the report.
    on_progress : callable(ok, failed), optional
        Called after every face.
    overwrite : bool
        Replace a face store already at ``out`` (once the new one is complete); without
        it an existing ``out`` is an error before any work.

    Returns
    -------
    dict
        The report (also written to ``<stem>_ingest_report.json`` beside ``out``).
    """
    cfg = (cfg or IngestConfig()).validate()
    if workers < 1:
        raise FerdataError(f"workers must be >= 1, got {workers}")
    if cfg.detector not in lmk.DETECTORS:
        raise FerdataError(f"detector must be one of {', '.join(lmk.DETECTORS)}, got {cfg.detector!r}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FerdataError(f"{out}: a face store is already there; replace it with --overwrite "
                           "(the old one stays until the new one is complete) or choose another -o")
    skipped = skipped if skipped is not None else []
    t0 = time.perf_counter()
    it = iter(records)
    try:
        first = next(it)
    except StopIteration:
        raise FerdataError(f"{root or dataset}: no labelled images found") from None

    size = _store_size(first, cfg)
    if (not first.aligned and first.landmarks is None) or (first.aligned and cfg.detect_aligned):
        lmk.require_dlib()  # before any work: this dataset needs the detector

    def chain():
        yield (first, cfg, size)
        for r in it:
            yield (r, cfg, size)

    failures = []
    counts = Counter()
    faces_info = {"detector": [], "iod_px": [], "eye_angle_deg": []}  # per stored face (ferdata.faces.quality)
    has_votes = first.votes is not None
    config = dict(to_dict(cfg), size=size)
    with FaceStoreWriter(out, size, dataset, config, with_votes=has_votes) as w:
        try:
            _write_faces(w, imap_ordered(_work, chain(), workers, window=max(4, workers * 16)), cfg,
                         failures, counts, faces_info, on_progress)
        except BrokenProcessPool:
            raise FerdataError(f"{out}: an ingest worker process died (killed, or out of memory) after "
                               f"{w.n} face(s); no face store written, run the ingest again") from None
        if w.n == 0:
            raise FerdataError(f"{root or dataset}: no face could be ingested "
                               f"({len(failures)} failed, e.g. {failures[0]['source'] if failures else '-'}: "
                               f"{failures[0]['reason'] if failures else '-'})")
    dt = time.perf_counter() - t0
    all_skipped = [{"source": s, "reason": r} for s, r in skipped] + failures
    report = {
        "dataset": dataset,
        "root": str(root),
        "output": str(out),
        "size": size,
        "ingested": int(sum(counts.values())),
        "skipped": len(all_skipped),
        "per_class": dict(counts),
        "seconds": round(dt, 3),
        "faces_per_s": round(sum(counts.values()) / dt, 2) if dt > 0 else None,
        "workers": workers,
        "config": config,
        "per_detector": dict(Counter(faces_info["detector"])),
        "skipped_files": all_skipped,
        "faces": faces_info,
    }
    _write_report(out, report)
    return report


def _store_size(first: FaceRecord, cfg: IngestConfig) -> int:
    """The face store size: given, else native for pre-cropped datasets, else 256."""
    if cfg.size is not None:
        return cfg.size
    if first.aligned:
        im = first.image if first.image is not None else read_image_rgb(first.path)
        return int(im.shape[0])
    return DEFAULT_SIZE


def _write_report(out: Path, report: dict) -> None:
    rp = report_path(out)
    try:
        atomic_write_text(rp, json.dumps(report, indent=1))
    except OSError as exc:
        raise FerdataError(f"{rp}: cannot write the ingest report ({exc.strerror or exc}); "
                           f"the face store {out} itself is complete") from None


def _write_faces(w: FaceStoreWriter, results, cfg: IngestConfig, failures: list, counts: Counter,
                 faces_info: dict, on_progress) -> None:
    """Append each processed record to ``w`` in order; record (or raise on) failures."""
    for rec, res, err in results:
        if err is not None:
            if cfg.on_error == "raise":
                where = str(rec.path if rec.path is not None else rec.source)
                raise FerdataError(err if err.startswith(where) else f"{where}: {err}")
            failures.append({"source": rec.source, "reason": err})
        else:
            w.append(res["image"], res["mask"], res["landmarks"], rec.label, rec.subject,
                     rec.source, rec.split, rec.votes)
            counts[CLASSES[rec.label]] += 1
            for k, v in faces_info.items():
                v.append(res["info"][k])
        if on_progress:
            on_progress(w.n, len(failures))
