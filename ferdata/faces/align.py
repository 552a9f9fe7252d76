"""Face alignment: a least-squares similarity transform on stable landmarks.

The 68 iBUG points are mapped onto a canonical template (eyes level, fixed
inter-ocular distance) by the similarity (rotation, uniform scale, translation)
that minimises the weighted squared distance of the stable points — the eye
corners (inner 39, 42 weighted ``eye_weight``, outer 36, 45 half that) and the nose (27–35) — which
move little with expression. The image is warped with one ``cv2.warpAffine`` and
the landmarks are transformed with the same matrix.
"""
from __future__ import annotations

import cv2
import numpy as np

# Mean 68-point shape in units of the outer-eye-corner distance, with point 36 at
# (0, 0) and point 45 at (1, 0). Derived from dlib's 68 landmarks of the two
# built-in public-domain sample faces (astronaut, Grace Hopper), averaged and made
# mirror-symmetric with ferdata.labels.MIRROR68.
MEAN_SHAPE = np.array([
    [-0.2784, 0.0417],
    [-0.2594, 0.2418],
    [-0.2323, 0.4375],
    [-0.1990, 0.6312],
    [-0.1216, 0.8076],
    [-0.0100, 0.9549],
    [0.1422, 1.0753],
    [0.3107, 1.1689],
    [0.5000, 1.1976],
    [0.6893, 1.1689],
    [0.8578, 1.0753],
    [1.0100, 0.9549],
    [1.1216, 0.8076],
    [1.1990, 0.6312],
    [1.2323, 0.4375],
    [1.2594, 0.2418],
    [1.2784, 0.0417],
    [-0.1624, -0.1291],
    [-0.0747, -0.2441],
    [0.0625, -0.2734],
    [0.2062, -0.2549],
    [0.3354, -0.1968],
    [0.6646, -0.1968],
    [0.7938, -0.2549],
    [0.9375, -0.2734],
    [1.0747, -0.2441],
    [1.1624, -0.1291],
    [0.5000, -0.0113],
    [0.5000, 0.1177],
    [0.5000, 0.2508],
    [0.5000, 0.3836],
    [0.3254, 0.4569],
    [0.4106, 0.4799],
    [0.5000, 0.5050],
    [0.5894, 0.4799],
    [0.6746, 0.4569],
    [0.0000, -0.0000],
    [0.0835, -0.0480],
    [0.1855, -0.0484],
    [0.2773, 0.0248],
    [0.1793, 0.0374],
    [0.0750, 0.0417],
    [0.7227, 0.0248],
    [0.8145, -0.0484],
    [0.9165, -0.0480],
    [1.0000, -0.0000],
    [0.9250, 0.0417],
    [0.8207, 0.0374],
    [0.1585, 0.6515],
    [0.2880, 0.6360],
    [0.4166, 0.6269],
    [0.5000, 0.6500],
    [0.5834, 0.6269],
    [0.7120, 0.6360],
    [0.8415, 0.6515],
    [0.7162, 0.7819],
    [0.5935, 0.8357],
    [0.5000, 0.8461],
    [0.4065, 0.8357],
    [0.2838, 0.7819],
    [0.2066, 0.6636],
    [0.4127, 0.6897],
    [0.5000, 0.7001],
    [0.5873, 0.6897],
    [0.7934, 0.6636],
    [0.5873, 0.7479],
    [0.5000, 0.7502],
    [0.4127, 0.7479]
], dtype=np.float64)

STABLE_POINTS = (36, 39, 42, 45, 27, 28, 29, 30, 31, 32, 33, 34, 35)
EYE_CORNERS = (36, 39, 42, 45)
# Outer-eye distance as a fraction of the crop, and where point 36 lands. With these,
# the brows-to-chin face plus a forehead extension of one eye-brow distance fits the
# square crop with a ~15% margin, so any smaller render size can be cut from it.
EYE_DISTANCE = 0.36
ORIGIN = (0.32, 0.38)


def template(size: int = 256) -> np.ndarray:
    """The canonical 68-point template (68,2) float64 for a ``size``×``size`` crop."""
    return (MEAN_SHAPE * EYE_DISTANCE + np.asarray(ORIGIN)) * size


def similarity_lstsq(src: np.ndarray, dst: np.ndarray, weights=None) -> np.ndarray:
    """Weighted least-squares similarity ``dst ≈ s·R·src + t`` (no reflection).

    Parameters
    ----------
    src, dst : (K, 2) array
        Corresponding points (K >= 2).
    weights : (K,) array, optional
        Non-negative weights.

    Returns
    -------
    M : (2, 3) float64
        The affine matrix of the similarity, usable with ``cv2.warpAffine``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError("src and dst must be matching (K,2) arrays with K >= 2")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    ms, md = w @ src, w @ dst
    a, b = src - ms, dst - md
    # complex form: minimise sum w |z b - c a|^2 over c = s e^{i theta}
    za = a[:, 0] + 1j * a[:, 1]
    zb = b[:, 0] + 1j * b[:, 1]
    denom = np.sum(w * np.abs(za) ** 2)
    if denom <= 0:
        raise ValueError("degenerate source points (all equal)")
    c = np.sum(w * np.conj(za) * zb) / denom
    M = np.array([[c.real, -c.imag, 0.0], [c.imag, c.real, 0.0]])
    M[:, 2] = md - M[:, :2] @ ms
    return M


def transform_points(points: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Apply a (2,3) affine or (3,3) projective matrix to (K,2) points."""
    p = np.asarray(points, np.float64)
    if M.shape == (2, 3):
        return p @ M[:, :2].T + M[:, 2]
    h = np.c_[p, np.ones(len(p))] @ M.T
    return h[:, :2] / h[:, 2:3]


def alignment_matrix(landmarks: np.ndarray, size: int = 256, eye_weight: float = 10.0) -> np.ndarray:
    """The (2,3) similarity taking ``landmarks`` onto :func:`template` of ``size``."""
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        raise ValueError(f"landmarks must be a finite (68,2) array, got shape {lm.shape}")
    idx = list(STABLE_POINTS)
    # inner corners (39, 42) move least with expression and head turn: full weight;
    # outer corners (36, 45) half of it; the nose points 1.
    w = np.array([eye_weight if i in (39, 42) else eye_weight / 2 if i in (36, 45) else 1.0 for i in idx])
    return similarity_lstsq(lm[idx], template(size)[idx], w)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 256, eye_weight: float = 10.0,
               border: str = "replicate"):
    """Align a face: warp ``image`` so its landmarks match the canonical template.

    Parameters
    ----------
    image : (H, W, 3) or (H, W) uint8
    landmarks : (68, 2) float
        (x, y) pixel coordinates in ``image``.
    size : int
        Side of the square output crop (default 256).
    eye_weight : float
        Weight of the four eye corners relative to the nose points.
    border : {"replicate", "constant"}

    Returns
    -------
    aligned : (size, size[, 3]) uint8
    aligned_landmarks : (68, 2) float32
    M : (2, 3) float64 matrix used.
    """
    M = alignment_matrix(landmarks, size, eye_weight)
    mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
    out = cv2.warpAffine(image, M, (size, size), flags=cv2.INTER_LINEAR, borderMode=mode)
    return out, transform_points(landmarks, M).astype(np.float32), M
