"""Contact sheets as the papers show faces: captions (index, subject, source) under each tile,
landmarks only on tiles large enough to see the face under them (> 128 px)."""
import logging

import cv2
import numpy as np
from click.testing import CliRunner

from ferdata.viz import LANDMARK_MAX_HIDDEN_TILE, contact_sheet, sample_captions, sheet_captions


def faces(n=4, side=100, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(60, 200, (n, side, side, 3), dtype=np.uint8)
    lm = np.stack([np.stack([np.linspace(20, 80, 68), np.linspace(30, 70, 68)], axis=1)] * n)
    return images, lm


def test_landmarks_only_on_tiles_larger_than_128(caplog):
    images, lm = faces()
    assert LANDMARK_MAX_HIDDEN_TILE == 128
    for tile in (64, 128):
        with caplog.at_level(logging.INFO, logger="ferdata.viz"):
            caplog.clear()
            asked = contact_sheet(images, lm, tile=tile)
        assert np.array_equal(asked, contact_sheet(images, None, tile=tile))    # asked for, none drawn
        assert any("landmarks not drawn" in r.getMessage() and f"{tile} px" in r.getMessage() for r in caplog.records)
    assert np.array_equal(contact_sheet(images, lm), contact_sheet(images, None))  # 100 px natively: none either
    for tile in (129, 200):
        with_lm, without = contact_sheet(images, lm, tile=tile), contact_sheet(images, None, tile=tile)
        green = (with_lm[..., 1] > 200) & (with_lm[..., 0] < 100) & (with_lm[..., 2] < 100)
        assert (with_lm != without).any() and green.sum() > 68 * len(images)   # every dot drawn


def test_sample_captions_lines():
    caps = sample_captions([1, 0], indices=[12, 40], subjects=["S005", "S010"],
                           sources=["cohn-kanade/S005/001/img_0012.png", "x/y.jpg"], dataset="ckplus")
    assert caps == [["#12 happiness", "S005", "ckplus:img_0012.png"], ["#40 neutral", "S010", "ckplus:y.jpg"]]
    caps = sheet_captions({"label": np.array([2]), "index": np.array([7]), "subject": np.array(["s1"]),
                           "face_index": np.array([31])})
    assert caps == [["#7 surprise", "s1", "face 31"]]
    assert sheet_captions({"label": [0]}) == [["neutral"]]


def _dark_rows(sheet, y0, y1, x0, x1):
    band = sheet[y0:y1, x0:x1].min(axis=-1)
    return int((band < 128).sum())


def test_captions_are_drawn_under_each_tile_one_band_per_line():
    images, _ = faces(n=2, side=96)
    caps = sample_captions([1, 0], indices=[3, 4], subjects=["S005", "S010"], sources=["a.png", "b.png"],
                           dataset="jaffe")
    sheet = contact_sheet(images, captions=caps, ncols=2, pad=2)
    blank = contact_sheet(images, captions=[["", "", ""]] * 2, ncols=2, pad=2)
    assert sheet.shape == blank.shape == (2 + 96 + 3 * 10 + 3 + 2, 2 + 2 * (96 + 2), 3)
    assert np.array_equal(sheet[:98], blank[:98])                     # the tiles themselves untouched
    for c in range(2):                                                  # every line of every caption has ink
        x0 = 2 + c * 98
        for k in range(3):
            y0 = 2 + 96 + k * 10
            assert _dark_rows(sheet, y0, y0 + 10, x0, x0 + 96) > 10
            assert _dark_rows(blank, y0, y0 + 10, x0, x0 + 96) == 0
    other = contact_sheet(images, captions=sample_captions([1, 0], indices=[5, 4], subjects=["S005", "S010"],
                                                           sources=["a.png", "b.png"], dataset="jaffe"),
                          ncols=2, pad=2)
    assert (other[98:108, 2:98] != sheet[98:108, 2:98]).any()         # the index is what differs
    assert np.array_equal(other[:, 100:], sheet[:, 100:])


def test_long_captions_are_cut_to_the_tile():
    images, _ = faces(n=2, side=40)
    sheet = contact_sheet(images, captions=["x" * 200, "y"], ncols=2, pad=2)
    assert _dark_rows(sheet, 42, sheet.shape[0], 2 + 40, 2 + 40 + 2) == 0   # nothing spills into the gap


def test_show_captions_index_subject_source(sample_dir, tmp_path):
    from ferdata.cli import main

    out = tmp_path / "sheet.png"
    r = CliRunner().invoke(main, ["show", str(sample_dir / "faces.h5"), "-o", str(out), "--tile", "96", "--seed", "-1"])
    assert r.exit_code == 0, r.output
    im = cv2.imread(str(out))[..., ::-1]
    assert im.shape[0] == 2 + 96 + 3 * 10 + 3 + 2                       # three caption lines under the row
    assert _dark_rows(im, 2 + 96 + 20, 2 + 96 + 30, 2, 98) > 10        # the source line is there
