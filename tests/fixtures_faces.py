"""The sample faces of the dataset fixtures (tests/dataset_fixtures.py): public-domain
photos that install offline -- scikit-image's ``astronaut()`` (smiling) and matplotlib's
``grace_hopper.jpg`` (neutral), plus their mirror images -- with their 68-point
landmarks, measured once with dlib's HOG detector + 68-point predictor and stored here
(the fixtures need neither dlib nor its model), and the small image helpers the
builders share. Deterministic.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ferdata.labels import MIRROR68

# --------------------------------------------------------------------------- faces

# dlib 68-point landmarks (x, y) of astronaut() (face box (175,76)-(265,166)).
_ASTRONAUT_68 = [
    [179, 104], [180, 116], [181, 127], [182, 139], [185, 150], [191, 160], [200, 168], [209, 176],
    [220, 178], [232, 177], [243, 171], [253, 163], [260, 154], [265, 143], [268, 131], [270, 120],
    [272, 108], [186, 94], [192, 88], [200, 87], [208, 89], [216, 92], [236, 93], [244, 91], [252, 91],
    [260, 92], [265, 99], [226, 102], [225, 111], [225, 119], [225, 127], [214, 131], [219, 133],
    [224, 134], [229, 133], [234, 132], [195, 101], [200, 98], [207, 98], [212, 104], [206, 104],
    [199, 104], [237, 106], [243, 100], [250, 100], [255, 105], [250, 107], [244, 107], [201, 139],
    [209, 139], [218, 139], [224, 141], [230, 140], [238, 140], [246, 141], [238, 151], [229, 155],
    [222, 156], [216, 155], [208, 150], [204, 141], [218, 143], [223, 144], [230, 143], [243, 142],
    [229, 150], [223, 151], [217, 150],
]
# dlib 68-point landmarks of grace_hopper.jpg (face box (180,139)-(366,325)).
_GRACE_68 = [
    [178, 203], [181, 226], [186, 248], [192, 270], [199, 291], [209, 310], [226, 323], [245, 331],
    [269, 333], [293, 329], [312, 319], [329, 304], [340, 284], [347, 262], [351, 241], [353, 218],
    [355, 195], [189, 188], [196, 172], [211, 165], [228, 165], [243, 171], [284, 168], [298, 161],
    [315, 161], [331, 167], [340, 181], [265, 188], [265, 205], [266, 221], [267, 238], [247, 246],
    [257, 249], [268, 252], [278, 249], [287, 246], [210, 195], [218, 187], [228, 187], [238, 194],
    [229, 195], [219, 196], [291, 192], [300, 184], [310, 184], [319, 190], [311, 192], [301, 193],
    [233, 281], [245, 274], [258, 272], [267, 274], [277, 271], [288, 273], [300, 277], [289, 284],
    [278, 287], [269, 289], [259, 288], [246, 285], [238, 279], [258, 278], [268, 279], [277, 278],
    [296, 278], [277, 278], [268, 279], [258, 279],
]


@functools.lru_cache(maxsize=1)
def _base_faces():
    import matplotlib
    import skimage.data

    astro = np.ascontiguousarray(skimage.data.astronaut())
    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(path)
    grace = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    lmk = [np.array(_ASTRONAUT_68, np.float32), np.array(_GRACE_68, np.float32)]
    faces = [astro, grace]
    for im, pts in list(zip(faces, lmk)):
        faces.append(np.ascontiguousarray(im[:, ::-1]))
        flipped = pts[list(MIRROR68)].copy()
        flipped[:, 0] = im.shape[1] - 1 - flipped[:, 0]
        lmk.append(flipped)
    for a in faces + lmk:
        a.setflags(write=False)
    return tuple(faces), tuple(lmk)


def sample_faces() -> list:
    """Real faces as RGB uint8 arrays: astronaut, Grace Hopper, and their mirrors."""
    return [f.copy() for f in _base_faces()[0]]


def sample_landmarks() -> list:
    """(68, 2) float32 landmarks of :func:`sample_faces`, in the same order."""
    return [p.copy() for p in _base_faces()[1]]


def template_landmarks(shape) -> np.ndarray:
    """A plausible 68-point mean shape scaled into the central half of an image ``shape``."""
    shapes = []
    for pts in _base_faces()[1][:2]:
        lo, hi = pts.min(0), pts.max(0)
        shapes.append((pts - lo) / (hi - lo))
    mean = np.mean(shapes, axis=0)
    h, w = shape[:2]
    side = 0.5 * min(h, w)
    return (mean * side + [(w - side) / 2, (h - side) / 2]).astype(np.float32)


def face_landmarks(face: np.ndarray) -> np.ndarray:
    """Landmarks of ``face``: the measured ones for a sample face, else the template."""
    for f, pts in zip(*_base_faces()):
        if f.shape == face.shape and np.array_equal(f, face):
            return pts.copy()
    return template_landmarks(face.shape)


def _gray(face):
    return face if face.ndim == 2 else cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)


def _write(path: Path, image: np.ndarray, cache: Optional[dict] = None, quality: int = 90) -> Path:
    """Write an RGB or gray image; identical (image, extension) pairs are encoded once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    key = (id(image), ext)
    data = cache.get(key) if cache is not None else None
    if data is None:
        arr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
        ok, buf = cv2.imencode(ext, arr, params)
        if not ok:
            raise RuntimeError(f"cannot encode {path}")
        data = buf.tobytes()
        if cache is not None:
            cache[key] = data
            cache[("keep", key)] = image  # keep id() valid
    path.write_bytes(data)
    return path


def _fit(face, pts, out_hw, scale=1.0, gray=False):
    """Resize ``face`` to fit ``out_hw`` (times ``scale``), centred; returns (image, landmarks)."""
    oh, ow = out_hw
    h, w = face.shape[:2]
    s = min(oh / h, ow / w) * scale
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    small = cv2.resize(face, (nw, nh), interpolation=cv2.INTER_AREA)
    if gray:
        small = _gray(small)
    canvas = np.zeros((oh, ow) + small.shape[2:], np.uint8)
    y0, x0 = (oh - nh) // 2, (ow - nw) // 2
    canvas[y0:y0 + nh, x0:x0 + nw] = small
    sx, sy = nw / w, nh / h
    out = np.empty_like(pts)
    out[:, 0] = (pts[:, 0] + 0.5) * sx - 0.5 + x0
    out[:, 1] = (pts[:, 1] + 0.5) * sy - 0.5 + y0
    return canvas, out.astype(np.float32)


def fer_crop(face: np.ndarray, shift: int = 0, side: int = 48) -> np.ndarray:
    """A FER2013-style 48×48 gray crop of ``face`` around its landmarks."""
    pts = face_landmarks(face)
    lo, hi = pts.min(0), pts.max(0)
    c = (lo + hi) / 2 + shift
    half = 0.65 * float(max(hi - lo))
    h, w = face.shape[:2]
    x0, y0 = int(max(0, c[0] - half)), int(max(0, c[1] - half))
    x1, y1 = int(min(w, c[0] + half)), int(min(h, c[1] + half))
    return cv2.resize(_gray(face[y0:y1, x0:x1]), (side, side), interpolation=cv2.INTER_AREA)


def pixel_string(img: np.ndarray) -> str:
    return " ".join(map(str, np.asarray(img, np.uint8).ravel().tolist()))
