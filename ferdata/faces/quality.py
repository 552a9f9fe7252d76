"""Alignment quality you can check: per-face proxies and outlier flags.

Computed from a face store (aligned landmarks) and, where the ingest report
has them, what ingest saw before alignment:

``iod_px``
    Inter-ocular distance (between the eye centres) in the *source* image, in
    pixels: a face with a small one was detected at low resolution.
``eye_angle_deg``
    Eye-line angle in the source image before alignment (0 = level).
``detector``
    What placed the landmarks: ``hog`` / ``cnn`` (dlib detectors), ``box``
    (the dataset's face box), ``dataset`` (the dataset's landmarks), ``none``
    (pre-cropped face stored as is).
``residual``
    RMS distance of the 68 aligned landmarks to the canonical template, in
    units of the template's outer-eye distance. Alignment fits the eyes and
    nose only, so a face whose landmarks were placed wrong (jaw on the
    background, mouth on the chin) stands out here; strong expressions raise it
    a little.
``aligned_angle_deg``
    Eye-line angle after alignment (close to 0 unless the eye points are bad).

:func:`flag_outliers` marks faces by simple, documented rules; :func:`worst_faces`
orders faces from the most to the least likely mis-aligned.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from .align import template

LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)
#: Flag thresholds (documented in docs/datasets.md).
MAX_RESIDUAL_Z = 3.5          # robust z-score of the template residual
MAX_ALIGNED_ANGLE = 8.0       # degrees
MIN_IOD_PX = 20.0             # source pixels
MAX_SOURCE_ANGLE = 30.0       # degrees


def eye_line(landmarks: np.ndarray) -> tuple[float, float]:
    """``(distance, angle_deg)`` between the two eye centres of (68, 2) landmarks
    (angle 0: level; positive: the face's left eye lower in the image)."""
    lm = np.asarray(landmarks, np.float64)
    a, b = lm[LEFT_EYE].mean(0), lm[RIGHT_EYE].mean(0)
    d = b - a
    return float(np.hypot(*d)), float(np.degrees(np.arctan2(d[1], d[0])))


def pre_alignment(landmarks: Optional[np.ndarray]) -> dict:
    """``{"iod_px", "eye_angle_deg"}`` of source-image landmarks (None when unknown)."""
    if landmarks is None or not np.all(np.isfinite(landmarks)):
        return {"iod_px": None, "eye_angle_deg": None}
    iod, ang = eye_line(landmarks)
    return {"iod_px": round(iod, 2), "eye_angle_deg": round(ang, 2)}


def template_residual(aligned: np.ndarray, size: int) -> np.ndarray:
    """(N,) RMS distance of (N, 68, 2) aligned landmarks to :func:`ferdata.faces.align.template`,
    in outer-eye distances (NaN for faces without landmarks)."""
    lm = np.asarray(aligned, np.float64).reshape(-1, 68, 2)
    tpl = template(size)
    unit = np.hypot(*(tpl[45] - tpl[36]))
    return np.sqrt(((lm - tpl) ** 2).sum(-1).mean(-1)) / unit


def _robust_z(x: np.ndarray) -> np.ndarray:
    ok = np.isfinite(x)
    if ok.sum() < 3:
        return np.zeros_like(x)
    med = np.median(x[ok])
    mad = np.median(np.abs(x[ok] - med)) * 1.4826
    return (x - med) / max(mad, 1e-6)


def face_quality(aligned_landmarks: np.ndarray, size: int, faces_info: Optional[dict] = None) -> dict:
    """Per-face proxies (arrays of length N) from aligned landmarks and ingest's per-face info.

    ``faces_info`` is the ingest report's ``"faces"`` entry (columns ``detector``,
    ``iod_px``, ``eye_angle_deg``); without it those columns are unknown.
    """
    lm = np.asarray(aligned_landmarks, np.float64).reshape(-1, 68, 2)
    n = len(lm)
    known = np.isfinite(lm).all(axis=(1, 2))
    angles = np.full(n, np.nan)
    for i in np.flatnonzero(known):
        angles[i] = eye_line(lm[i])[1]
    info = faces_info or {}

    def col(name, fill):
        v = info.get(name)
        if v is None or len(v) != n:
            v = [fill] * n
        if isinstance(fill, str):
            return np.array(v, dtype=object)
        return np.array([np.nan if x is None else x for x in v], dtype=np.float64)

    q = {"residual": template_residual(lm, size), "aligned_angle_deg": angles, "landmarks_known": known,
         "detector": col("detector", "unknown"), "iod_px": col("iod_px", np.nan),
         "eye_angle_deg": col("eye_angle_deg", np.nan)}
    q["residual_z"] = _robust_z(q["residual"])
    q["flags"] = flag_outliers(q)
    return q


def flag_outliers(q: dict) -> list[list[str]]:
    """Reasons a face is likely mis-aligned (empty list: none), one list per face."""
    out = []
    for i in range(len(q["residual"])):
        f = []
        if not q["landmarks_known"][i]:
            out.append(f)  # pre-cropped face stored as is: nothing to judge
            continue
        if q["residual_z"][i] > MAX_RESIDUAL_Z:
            f.append(f"landmarks far from the template (residual {q['residual'][i]:.3f}, "
                     f"robust z {q['residual_z'][i]:.1f} > {MAX_RESIDUAL_Z})")
        if abs(q["aligned_angle_deg"][i]) > MAX_ALIGNED_ANGLE:
            f.append(f"eyes not level after alignment ({q['aligned_angle_deg'][i]:.1f} deg)")
        if q["iod_px"][i] < MIN_IOD_PX:
            f.append(f"small face in the source (eye distance {q['iod_px'][i]:.1f} px < {MIN_IOD_PX:g})")
        if abs(q["eye_angle_deg"][i]) > MAX_SOURCE_ANGLE:
            f.append(f"strongly rotated in the source ({q['eye_angle_deg'][i]:.1f} deg)")
        out.append(f)
    return out


def badness(q: dict) -> np.ndarray:
    """A score ordering faces from most to least likely mis-aligned (NaN-free)."""
    score = np.nan_to_num(q["residual_z"], nan=-np.inf)
    score = score + np.nan_to_num(np.abs(q["aligned_angle_deg"]), nan=0.0) / MAX_ALIGNED_ANGLE
    return score + 10.0 * np.array([len(f) for f in q["flags"]])


def worst_faces(q: dict, n: int) -> np.ndarray:
    """Indices of the ``n`` faces most likely mis-aligned, worst first (faces with landmarks only)."""
    idx = np.flatnonzero(q["landmarks_known"])
    order = idx[np.argsort(-badness(q)[idx], kind="stable")]
    return order[: max(0, int(n))]


def load_faces_info(store_path) -> Optional[dict]:
    """The ``"faces"`` columns of the ingest report beside a face store (None if absent)."""
    from .store import report_path

    rp = report_path(Path(store_path))
    if not rp.exists():
        return None
    try:
        return json.loads(rp.read_text()).get("faces")
    except ValueError:
        return None


def quality_summary(q: dict, sources, top: int = 10) -> dict:
    """JSON-able summary: per-detector counts, flag counts, residual percentiles, worst faces."""
    from collections import Counter

    flagged = [i for i, f in enumerate(q["flags"]) if f]
    res = q["residual"][np.isfinite(q["residual"])]
    pct = {f"p{p}": round(float(np.percentile(res, p)), 4) for p in (50, 90, 99)} if res.size else {}
    iod = q["iod_px"][np.isfinite(q["iod_px"])]
    return {
        "per_detector": dict(Counter(str(d) for d in q["detector"])),
        "flagged": len(flagged),
        "flag_reasons": dict(Counter(r.split(" (")[0] for i in flagged for r in q["flags"][i])),
        "residual": pct,
        "iod_px_median": round(float(np.median(iod)), 2) if iod.size else None,
        "worst": [{"index": int(i), "source": str(sources[i]), "detector": str(q["detector"][i]),
                   "residual": round(float(q["residual"][i]), 4), "flags": q["flags"][i]}
                  for i in worst_faces(q, top)],
    }


def assess_store(fs) -> dict:
    """:func:`face_quality` of an open :class:`ferdata.faces.store.FaceStore` (with its ingest report)."""
    return face_quality(fs.landmarks, fs.size, load_faces_info(fs.path))
