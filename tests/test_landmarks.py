import numpy as np
import pytest

from ferdata.errors import NoFaceError
from ferdata.landmarks import detect_faces, find_landmarks


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
