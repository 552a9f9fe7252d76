"""Face masks: the filled convex hull of the landmarks, and the soft alpha for compositing."""
from __future__ import annotations

import cv2
import numpy as np

BROWS = tuple(range(17, 27))
EYES = tuple(range(36, 48))


def hull_points(landmarks: np.ndarray, forehead: float = 0.0) -> np.ndarray:
    """Landmarks used for the hull; brows raised by ``forehead`` × eye–brow distance.

    The brow points (17–26) are moved along the face's vertical axis (perpendicular
    to the eye line) by ``forehead`` times the mean eye-to-brow distance, extending
    the mask up to the forehead.
    """
    lm = np.asarray(landmarks, np.float64).copy()
    if forehead:
        left, right = lm[36:42].mean(0), lm[42:48].mean(0)
        axis = right - left
        axis /= max(np.hypot(*axis), 1e-9)
        up = np.array([axis[1], -axis[0]])  # perpendicular, pointing to the forehead (y up)
        eye_y = lm[list(EYES)] @ up
        brow_y = lm[list(BROWS)] @ up
        d = float(brow_y.mean() - eye_y.mean())
        extra = lm[list(BROWS)] + up * (forehead * max(d, 0.0))
        lm = np.vstack([lm, extra])
    return lm


def convex_hull_mask(landmarks: np.ndarray, size, forehead: float = 0.0) -> np.ndarray:
    """Filled convex hull of the landmarks as a uint8 mask in {0, 255}.

    Parameters
    ----------
    landmarks : (68, 2) float
        (x, y) pixel coordinates.
    size : int or (H, W)
        Output shape.
    forehead : float
        Raise the brows by this many eye–brow distances before taking the hull
        (0 = the plain 68-point hull).
    """
    h, w = (size, size) if np.isscalar(size) else size
    pts = hull_points(landmarks, forehead)
    mask = np.zeros((h, w), np.uint8)
    if not np.all(np.isfinite(pts)):
        raise ValueError("landmarks contain NaN/inf")
    hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255, lineType=cv2.LINE_8, shift=4)
    return mask


def soft_alpha(mask: np.ndarray, erode: float, feather: float, mode: str = "gaussian") -> np.ndarray:
    """A soft alpha in [0, 1] (float32) from a hard mask: erode, then feather.

    Parameters
    ----------
    mask : (H, W) uint8 or bool
        Hard mask (nonzero = face).
    erode : float
        Erosion radius in pixels applied first, so the feathered edge stays inside
        the face and no background of the face photo leaks into the composite.
    feather : float
        Width of the soft ramp in pixels. ``mode="gaussian"``: Gaussian blur with
        sigma = feather/2; ``mode="distance"``: a linear ramp over ``feather`` px of
        the distance transform inside the eroded mask.
    """
    hard = (np.asarray(mask) > 0).astype(np.uint8)
    m = hard
    if erode > 0:
        r = int(round(erode))
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        m = cv2.erode(m, k)
    if feather <= 0:
        return m.astype(np.float32)
    if mode == "gaussian":
        sigma = feather / 3.0
        # replicate at the canvas border: a face cut by the frame stays opaque there
        a = cv2.GaussianBlur(m.astype(np.float32), (0, 0), sigmaX=sigma, sigmaY=sigma,
                             borderType=cv2.BORDER_REPLICATE)
        # the blur's tail never leaves the hard mask (no background of the face photo)
        return np.clip(a, 0.0, 1.0) * hard
    if mode == "distance":
        pad = int(np.ceil(feather)) + 1
        mp = cv2.copyMakeBorder(m, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        d = cv2.distanceTransform(mp, cv2.DIST_L2, 3)[pad:-pad, pad:-pad]
        return np.clip(d / float(feather), 0.0, 1.0).astype(np.float32) * hard
    raise ValueError(f"unknown alpha mode {mode!r} (gaussian|distance)")
