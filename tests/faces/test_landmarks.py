import numpy as np
import pytest

from ferdata.errors import NoFaceError
from ferdata.faces.landmarks import detect_faces, find_landmarks


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_dlib_landmarks_on_real_faces(sample_images, name):
    img = sample_images[name]
    lm, (x, y, w, h) = find_landmarks(img)
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    # the 68 points lie in (a slightly enlarged) detected box
    assert (lm[:, 0] > x - 0.25 * w).all() and (lm[:, 0] < x + 1.25 * w).all()
    assert (lm[:, 1] > y - 0.25 * h).all() and (lm[:, 1] < y + 1.25 * h).all()
    # eye corners in order left-to-right in the image: 36 < 39 < 42 < 45
    xs = lm[[36, 39, 42, 45], 0]
    assert np.all(np.diff(xs) > 0)
    # brows above eyes, nose tip below eyes, chin lowest
    assert lm[17:27, 1].mean() < lm[36:48, 1].mean() < lm[30, 1] < lm[8, 1]


def test_no_face_raises():
    blank = np.full((200, 200, 3), 127, np.uint8)
    assert detect_faces(blank) == []
    with pytest.raises(NoFaceError):
        find_landmarks(blank)


def test_bad_image_dtype():
    with pytest.raises(ValueError):
        find_landmarks(np.zeros((50, 50, 3), np.float32))


# --------------------------------------------------------------------------- detectors

def _portrait(i, deg=0):
    import cv2

    from fixtures import dataset_fixtures as fx, fixtures_wild as fw
    img, pts = fw.portrait(fx.sample_faces()[i], (240, 180))
    M = cv2.getRotationMatrix2D((90, 120), deg, 1.0)
    return cv2.warpAffine(img, M, (180, 240), borderMode=cv2.BORDER_REPLICATE), pts @ M[:, :2].T + M[:, 2]


def test_cnn_model_ships_with_the_package():
    import os

    from ferdata.faces.landmarks import cnn_model_path

    path = cnn_model_path()
    assert path.endswith("mmod_human_face_detector.dat") and os.path.getsize(path) > 100_000


def test_auto_falls_back_to_cnn_where_hog_finds_nothing():
    from ferdata.faces.landmarks import locate_face

    img, pts = _portrait(2, deg=45)                     # Grace Hopper mirrored, rotated 45 degrees
    with pytest.raises(NoFaceError, match="HOG"):
        locate_face(img, detector="hog")
    found = locate_face(img, detector="auto")
    assert found.detector == "cnn" and found.landmarks.shape == (68, 2)
    x, y, w, h = found.box
    ex, ey = pts[36:48].mean(0)                          # the true eye midpoint lies in the CNN box
    assert x <= ex <= x + w and y <= ey <= y + h
    upright = locate_face(_portrait(2)[0], detector="auto")
    assert upright.detector == "hog"                      # auto runs the CNN only when HOG fails


def test_cnn_and_hog_boxes_agree_on_a_frontal_face():
    img, _ = _portrait(0)
    (hx, hy, hw, hh), = detect_faces(img, detector="hog")
    (cx, cy, cw, ch), = detect_faces(img, detector="cnn")
    ix = max(0, min(hx + hw, cx + cw) - max(hx, cx))
    iy = max(0, min(hy + hh, cy + ch) - max(hy, cy))
    assert ix * iy / (hw * hh + cw * ch - ix * iy) > 0.4


def test_unknown_detector():
    with pytest.raises(ValueError, match="detector"):
        detect_faces(np.zeros((50, 50, 3), np.uint8), detector="mtcnn")
    with pytest.raises(NoFaceError, match="HOG or the CNN"):
        find_landmarks(np.full((60, 60, 3), 127, np.uint8), detector="auto")


def test_tilted_face_landmarks_refined_on_a_derotated_copy():
    from ferdata.faces.landmarks import locate_face, refine_tilted

    img, pts = _portrait(1, deg=40)                     # Grace Hopper rotated 40 degrees: HOG finds it
    first = locate_face(img, refine=False)
    found = locate_face(img)
    eye = pts[36:48].mean(0)

    def err(f):
        return float(np.hypot(*(f.landmarks[36:48].mean(0) - eye)))

    assert first.refined == 0 and err(first) > 10      # the upright-trained predictor misses the eyes
    assert found.refined > 0 and err(found) < 3
    upright, _ = _portrait(1)
    lm = locate_face(upright, refine=False).landmarks
    same, k = refine_tilted(upright, lm, (0, 0, 10, 10))
    assert k == 0 and np.array_equal(same, lm)          # level eyes: nothing to do
