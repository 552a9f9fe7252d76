import cv2
import numpy as np
import pytest

from ferdata.faces.align import (align_face, alignment_matrix, similarity_lstsq, template,
                           transform_points)
from ferdata.labels import MIRROR68
from ferdata.faces.masks import convex_hull_mask, hull_points, soft_alpha


def test_similarity_recovers_known_transform(rng):
    src = rng.uniform(0, 100, (13, 2))
    ang, s, t = np.deg2rad(23.0), 1.7, np.array([5.0, -3.0])
    R = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = s * src @ R.T + t
    M = similarity_lstsq(src, dst)
    np.testing.assert_allclose(M[:, :2], s * R, atol=1e-9)
    np.testing.assert_allclose(M[:, 2], t, atol=1e-9)
    # agrees with OpenCV's own similarity estimate (least squares, no RANSAC outliers)
    M_cv, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32), method=cv2.LMEDS)
    np.testing.assert_allclose(M, M_cv, atol=1e-3)


def test_similarity_rejects_bad_input():
    with pytest.raises(ValueError):
        similarity_lstsq(np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError):
        similarity_lstsq(np.zeros((4, 2)), np.ones((4, 2)))


def test_template_is_mirror_symmetric_and_fits():
    T = template(256)
    flipped = T[list(MIRROR68)].copy()
    flipped[:, 0] = 256 - flipped[:, 0]
    np.testing.assert_allclose(flipped, T, atol=0.05)
    assert T.min() > 0.1 * 256 and T.max() < 0.9 * 256
    assert T[36, 1] == pytest.approx(T[45, 1])  # eyes level


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_real_faces_align_to_template(sample_images, sample_landmarks, name):
    img = sample_images[name]
    lm, _ = sample_landmarks[name]
    face, alm, M = align_face(img, lm, 256)
    assert face.shape == (256, 256, 3) and face.dtype == np.uint8
    T = template(256)
    # inner eye corners within 2 px of the template, and level
    for i in (39, 42):
        assert np.hypot(*(alm[i] - T[i])) < 2.0, (i, alm[i], T[i])
    assert abs(alm[39, 1] - alm[42, 1]) < 2.0
    assert abs(alm[36, 1] - alm[45, 1]) < 3.0
    # the landmarks moved with the image: re-detecting on the aligned face agrees
    # (loosely: dlib itself jitters a few px, more on the glasses of grace_hopper)
    from ferdata.faces.landmarks import find_landmarks

    lm2, _ = find_landmarks(face)
    assert np.median(np.hypot(*(lm2 - alm).T)) < 0.08 * (T[45, 0] - T[36, 0])
    # ...and exactly: a bright dot drawn at a landmark is warped onto the transformed point
    for i in (8, 30, 39, 42):
        dot = np.zeros(img.shape[:2], np.float32)
        cv2.circle(dot, (int(round(lm[i, 0] * 16)), int(round(lm[i, 1] * 16))), 3 * 16, 1.0, -1, shift=4)
        wd = cv2.warpAffine(dot, M, (256, 256))
        ys, xs = np.nonzero(wd > 0)
        c = np.array([np.average(xs, weights=wd[ys, xs]), np.average(ys, weights=wd[ys, xs])])
        assert np.hypot(*(c - alm[i])) < 0.6


def test_rotated_face_is_leveled(sample_images, sample_landmarks):
    img = sample_images["astronaut"]
    lm, _ = sample_landmarks["astronaut"]
    h, w = img.shape[:2]
    R = cv2.getRotationMatrix2D((w / 2, h / 2), 25, 1.0)
    rot = cv2.warpAffine(img, R, (w, h))
    lm_rot = transform_points(lm, R)
    _, alm, _ = align_face(rot, lm_rot, 256)
    _, alm0, _ = align_face(img, lm, 256)
    np.testing.assert_allclose(alm, alm0, atol=1e-3)


def test_alignment_matrix_validates():
    with pytest.raises(ValueError):
        alignment_matrix(np.zeros((5, 2)))
    bad = template(256).copy()
    bad[3] = np.nan
    with pytest.raises(ValueError):
        alignment_matrix(bad)


def test_hull_mask_inside_outside_and_area():
    T = template(256)
    m = convex_hull_mask(T, 256)
    assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255}
    # nose tip and eye centres inside, corners outside
    for p in (T[30], T[36:42].mean(0), T[42:48].mean(0), T[8] - [0, 5]):
        assert m[int(p[1]), int(p[0])] == 255
    for p in ((2, 2), (253, 2), (2, 253), (253, 253)):
        assert m[p[1], p[0]] == 0
    area = (m > 0).mean()
    hull_area = cv2.contourArea(cv2.convexHull(T.astype(np.float32)))
    assert area == pytest.approx(hull_area / 256 ** 2, rel=0.03)
    assert 0.2 < area < 0.6
    m2 = convex_hull_mask(T, 256, forehead=1.0)
    assert (m2 >= m).all() and (m2 > 0).sum() > (m > 0).sum() * 1.1
    # forehead points go up (smaller y) from the brows
    hp = hull_points(T, 1.0)
    assert hp[68:, 1].max() < T[17:27, 1].min()


def test_soft_alpha_edges():
    m = np.zeros((64, 64), np.uint8)
    cv2.circle(m, (32, 32), 20, 255, -1)
    for mode in ("gaussian", "distance"):
        a = soft_alpha(m, erode=3, feather=4, mode=mode)
        assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
        assert a[32, 32] == pytest.approx(1.0)
        assert a[m == 0].max() < 1e-3  # never outside the hard mask
        assert ((a > 0.05) & (a < 0.95)).sum() > 50  # a soft ramp exists
    with pytest.raises(ValueError):
        soft_alpha(m, 1, 1, mode="nope")
