"""Dataset readers on fixture trees in each real layout (tests/fixtures/dataset_fixtures.py)."""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ferdata import labels
from ferdata.datasets import READERS, FaceRecord, read_dataset, reader_options
from ferdata.errors import DatasetFormatError

from fixtures import dataset_fixtures as fx
from fixtures.dataset_readers import C, raises, read, rewrite_csv  # noqa: F401

NAMES = ("ckplus", "fer2013", "ferplus", "jaffe", "bu3dfe", "rafd", "affectnet", "folder")

# --------------------------------------------------------------------------- registry

def test_registry_has_every_reader():
    assert set(NAMES) <= set(READERS)
    for name in NAMES:
        opts = reader_options(name)
        assert opts["on_error"] == "raise" and opts["skipped"] is None


def test_unknown_dataset_lists_known_names(tmp_path):
    msg = raises("nope", read_dataset, "nope", tmp_path)
    for name in NAMES:
        assert name in msg


def test_unknown_option_is_named(trees):
    msg = raises("colour", read_dataset, "jaffe", trees["jaffe"], colour=True)
    assert "on_error" in msg


def test_bad_on_error_value(trees):
    raises("on_error", read_dataset, "jaffe", trees["jaffe"], on_error="ignore")


@pytest.mark.parametrize("name", NAMES)
def test_missing_root_raises_at_first_next(tmp_path, name):
    missing = tmp_path / "no-such-dataset"
    it = READERS[name](missing)          # a generator: nothing is checked yet
    with pytest.raises(DatasetFormatError) as info:
        next(it)
    assert str(missing) in str(info.value) and "\n" not in str(info.value)
    raises(missing, read_dataset, name, missing)


@pytest.mark.parametrize("name", ["ckplus", "jaffe", "bu3dfe", "rafd", "folder"])
def test_empty_dataset(tmp_path, name):
    root = tmp_path / "empty"
    root.mkdir()
    if name == "ckplus":
        (root / "cohn-kanade-images").mkdir()
        (root / "Emotion").mkdir()
    msg = raises(root, read_dataset, name, root)
    assert "no labelled images found under" in msg


def test_empty_csv_dataset(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n")
    assert "no labelled images found" in raises(path, read_dataset, "fer2013", path)


def test_records_are_canonical(trees):
    for name in NAMES:
        recs = read(name, trees[name])
        assert recs, name
        for r in recs:
            assert isinstance(r, FaceRecord)
            assert 0 <= r.label < len(labels.CLASSES)
            assert isinstance(r.subject, str) and isinstance(r.split, str)
            assert (r.path is None) != (r.image is None), (name, r.source)
            if r.path is not None:
                assert r.path.is_file() and r.path.is_absolute()
                assert not Path(r.source).is_absolute() and (trees[name] / r.source).resolve() == r.path.resolve()
            if r.landmarks is not None:
                assert r.landmarks.shape == (68, 2) and r.landmarks.dtype == np.float32


# --------------------------------------------------------------------------- CK+

def _ck_codes(n_subjects=3, n_sequences=2, codes=(1, 2, 3, 4, 5, 6, 7)):
    """Expected {(subject, sequence): canonical label} of make_ckplus."""
    out, j = {}, 0
    for s in range(n_subjects):
        for q in range(n_sequences):
            out[(f"S{5 * (s + 1):03d}", f"{q + 1:03d}")] = C[labels.CKPLUS[codes[j % len(codes)]]]
            j += 1
    return out


def test_ckplus_default(trees):
    root = trees["ckplus"]
    recs = read("ckplus", root)
    expected = _ck_codes()
    assert len(recs) == 2 * len(expected)                  # neutral first frame + peak
    assert Counter(r.subject for r in recs) == {"S005": 4, "S010": 4, "S015": 4}
    assert {r.split for r in recs} == {""}
    for r in recs:
        seq = (r.subject, r.extra["sequence"])
        assert seq in expected                             # unlabelled sequences 003 left out
        if r.extra["role"] == "neutral":
            assert r.label == C["neutral"] and r.extra["frame"] == 1
            assert r.source.endswith("_00000001.png")
        else:
            assert r.label == expected[seq] and r.extra["frame"] == 4
        assert r.source.startswith(f"cohn-kanade-images/{r.subject}/")
        assert r.landmarks.shape == (68, 2) and r.landmarks.dtype == np.float32
        assert not r.aligned
    # CK+ codes 1..7 reach anger, contempt, disgust, fear, happiness, sadness, surprise
    assert {r.label for r in recs if r.extra["role"] == "peak"} == {
        C[n] for n in ("anger", "contempt", "disgust", "fear", "happiness", "sadness")}


def test_ckplus_landmarks_match_file(trees):
    root = trees["ckplus"]
    r = read("ckplus", root)[1]
    lfile = root / "Landmarks" / r.subject / r.extra["sequence"] / (Path(r.source).stem + "_landmarks.txt")
    np.testing.assert_allclose(r.landmarks, np.loadtxt(lfile), rtol=1e-6)
    # plausible: inside the 640x490 frame
    assert (r.landmarks >= 0).all() and (r.landmarks[:, 0] < 640).all() and (r.landmarks[:, 1] < 490).all()


@pytest.mark.parametrize("peak,neutral,per_seq", [(1, True, 2), (3, True, 4), (10, True, 4),
                                                  (1, False, 1), (2, False, 2), (10, False, 4)])
def test_ckplus_peak_frames_and_neutral(trees, peak, neutral, per_seq):
    recs = read("ckplus", trees["ckplus"], peak_frames=peak, include_neutral=neutral)
    assert len(recs) == 6 * per_seq
    n_neutral = sum(r.extra["role"] == "neutral" for r in recs)
    assert n_neutral == (6 if neutral else 0)
    peaks = [r for r in recs if r.extra["role"] == "peak"]
    want = min(peak, 3 if neutral else 4)                   # the first frame stays neutral
    assert sorted({r.extra["frame"] for r in peaks}) == list(range(5 - want, 5))


def test_ckplus_without_landmarks_folder(tmp_path, faces):
    root = fx.make_ckplus(tmp_path / "ck", faces, n_subjects=1, landmarks=False)
    recs = read("ckplus", root)
    assert len(recs) == 4 and all(r.landmarks is None for r in recs)


def test_ckplus_not_a_ckplus_folder(tmp_path, faces):
    root = fx.make_ckplus(tmp_path / "ck", faces, n_subjects=1)
    shutil.rmtree(root / "Emotion")
    assert "Emotion" in raises(root, read, "ckplus", root)
    raises("peak_frames", read, "ckplus", root, peak_frames=0)


def test_ckplus_bad_emotion_file(tmp_path, faces):
    root = fx.make_ckplus(tmp_path / "ck", faces, n_subjects=2)
    bad = root / "Emotion/S010/002/S010_002_00000004_emotion.txt"
    bad.write_text("   9.0000000e+00\n")
    msg = raises(bad, read, "ckplus", root)
    assert "CK+ code" in msg
    skipped = []
    recs = read("ckplus", root, on_error="skip", skipped=skipped)
    assert len(recs) == 6
    assert skipped == [("Emotion/S010/002/S010_002_00000004_emotion.txt", msg.split(": ", 1)[1])]


def test_ckplus_bad_landmarks_and_missing_images(tmp_path, faces):
    root = fx.make_ckplus(tmp_path / "ck", faces, n_subjects=2)
    lbad = root / "Landmarks/S005/001/S005_001_00000004_landmarks.txt"
    lbad.write_text("1 2\n3 4\n")
    assert "68" in raises(lbad, read, "ckplus", root)
    lbad.unlink()                                           # a missing file just means no landmarks
    assert sum(r.landmarks is None for r in read("ckplus", root)) == 1
    shutil.rmtree(root / "cohn-kanade-images/S010/001")
    emo = root / "Emotion/S010/001/S010_001_00000004_emotion.txt"
    assert "no images" in raises(emo, read, "ckplus", root)
    skipped = []
    assert len(read("ckplus", root, on_error="skip", skipped=skipped)) == 6
    assert [s for s, _ in skipped] == ["Emotion/S010/001/S010_001_00000004_emotion.txt"]


# --------------------------------------------------------------------------- FER2013

def test_fer2013(trees):
    root = trees["fer2013"]
    for where in (root, root / "fer2013.csv"):
        recs = read("fer2013", where)
        assert len(recs) == 21
        for i, r in enumerate(recs):
            assert r.source == f"fer2013.csv:row{i + 1}"
            assert r.label == C[labels.FER2013[i % 7]]
            usage = fx.FER2013_USAGE_CYCLE[i % 5]
            assert r.split == {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}[usage]
            assert r.extra["usage"] == usage
            assert r.subject == "" and r.aligned and r.path is None
            assert r.image.shape == (48, 48) and r.image.dtype == np.uint8
    assert Counter(r.split for r in recs) == {"train": 13, "val": 4, "test": 4}
    np.testing.assert_array_equal(recs[0].image, fx.fer_crop(fx.sample_faces()[0], shift=-2))
    assert {r.split for r in read("fer2013", root, splits=["test"])} == {"test"}
    raises("splits", read, "fer2013", root, splits=["holdout"])


def test_fer2013_without_usage_column(tmp_path, faces):
    root = fx.make_fer2013(tmp_path / "f", faces, n_rows=3)
    rewrite_csv(root / "fer2013.csv", lambda rows: [r.pop() for r in rows])
    assert [r.split for r in read("fer2013", root)] == ["", "", ""]


def test_fer2013_wrong_columns(tmp_path, faces):
    root = fx.make_fer2013(tmp_path / "f", faces, n_rows=3)
    path = root / "fer2013.csv"

    def rename(rows):
        rows[0] = ["label", "image", "Usage"]
    rewrite_csv(path, rename)
    msg = raises(path, read, "fer2013", root)
    assert "expected columns emotion,pixels" in msg


def test_fer2013_not_a_folder_with_csv(tmp_path):
    raises(tmp_path, read, "fer2013", tmp_path)
    binary = tmp_path / "fer2013.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    raises(binary, read, "fer2013", binary)


@pytest.mark.parametrize("row,col,value,reason", [
    (5, 1, lambda s: s.rsplit(" ", 1)[0], "expected 2304 pixel values"),
    (2, 1, lambda s: s.replace(" ", " x ", 1), "not a number"),
    (3, 1, lambda s: "300 " + s.split(" ", 1)[1], "0..255"),
    (4, 0, lambda s: "happy", "not a FER2013 code"),
    (6, 0, lambda s: "9", "not a FER2013 code"),
    (7, 2, lambda s: "Validation", "unknown Usage"),
])
def test_fer2013_bad_row(tmp_path, faces, row, col, value, reason):
    root = fx.make_fer2013(tmp_path / "f", faces, n_rows=10)
    path = root / "fer2013.csv"

    def edit(rows):
        rows[row][col] = value(rows[row][col])
    rewrite_csv(path, edit)
    msg = raises(f"{path} row {row}:", read, "fer2013", root)
    assert reason in msg
    skipped = []
    recs = read("fer2013", root, on_error="skip", skipped=skipped)
    assert len(recs) == 9 and row not in [int(r.source.split("row")[1]) for r in recs]
    assert len(skipped) == 1 and skipped[0][0] == f"fer2013.csv:row{row}" and reason in skipped[0][1]


def test_fer2013_short_row(tmp_path, faces):
    root = fx.make_fer2013(tmp_path / "f", faces, n_rows=4)
    path = root / "fer2013.csv"
    rewrite_csv(path, lambda rows: rows[3].pop())
    assert "expected 3 fields, found 2" in raises(f"{path} row 3", read, "fer2013", root)


# --------------------------------------------------------------------------- FER+

def _ferplus_expected(tie):
    out = []
    for i, (usage, _name, _votes, outcome) in enumerate(fx.FERPLUS_ROWS):
        if outcome.startswith("tie:"):
            outcome = outcome[4:] if tie == "first" else "skip"
        if outcome != "skip":
            out.append((i + 1, C[outcome], usage))
    return out


@pytest.mark.parametrize("tie", ["skip", "first"])
def test_ferplus_plurality_and_ties(trees, tie):
    root = trees["ferplus"]
    skipped = []
    recs = read("ferplus", root, label_mode="plurality", tie=tie, skipped=skipped)
    expected = _ferplus_expected(tie)
    assert [(int(r.source.split("row")[1]), r.label) for r in recs] == [(n, lab) for n, lab, _ in expected]
    splits = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
    assert [r.split for r in recs] == [splits[u] for _, _, u in expected]
    reasons = dict(skipped)
    assert "unknown" in reasons["fer2013new.csv:row4"]
    assert "NF" in reasons["fer2013new.csv:row5"]
    assert "no image name" in reasons["fer2013new.csv:row6"]
    if tie == "skip":
        assert "tied vote" in reasons["fer2013new.csv:row3"] and "tied vote" in reasons["fer2013new.csv:row10"]
        assert len(skipped) == 5
    else:
        assert len(skipped) == 3
    for r in recs:
        assert r.image.shape == (48, 48) and r.image.dtype == np.uint8 and r.aligned
        assert r.votes.shape == (8,) and r.votes.dtype == np.float32
        assert r.votes.sum() == pytest.approx(1.0) and r.subject == ""
        assert r.extra["image_name"].startswith("fer")


def test_ferplus_votes_distribution(trees):
    r = read("ferplus", trees["ferplus"])[0]                # votes 0,8,1,0,0,0,0,0 | unknown 1
    np.testing.assert_allclose(r.votes, np.array([0, 8, 1, 0, 0, 0, 0, 0]) / 9, rtol=1e-6)
    assert r.label == C["happiness"] and r.extra["n_votes"] == 10


def test_ferplus_pixels_elsewhere(tmp_path, faces):
    root = fx.make_ferplus(tmp_path / "fp", faces, pixels_beside=False)
    msg = raises(root / "fer2013.csv", read, "ferplus", root)
    assert "fer2013_csv" in msg
    recs = read("ferplus", root / "fer2013new.csv", fer2013_csv=root / "pixels", label_mode="plurality")
    assert len(recs) == len(_ferplus_expected("skip"))
    np.testing.assert_array_equal(recs[0].image, fx.fer_crop(faces[0], shift=-2))


def test_ferplus_bad_input(tmp_path, faces):
    root = fx.make_ferplus(tmp_path / "fp", faces)
    raises("tie", read, "ferplus", root, tie="random")
    new = root / "fer2013new.csv"
    rewrite_csv(new, lambda rows: rows[2].__setitem__(4, "many"))
    assert "vote counts" in raises(f"{new} row 2:", read, "ferplus", root)
    skipped = []
    assert len(read("ferplus", root, label_mode="plurality", on_error="skip", skipped=skipped)) == \
        len(_ferplus_expected("skip")) - 1
    assert ("fer2013new.csv:row2", skipped[0][1]) in skipped

    root = fx.make_ferplus(tmp_path / "fp2", faces)
    pix = root / "fer2013.csv"
    rewrite_csv(pix, lambda rows: rows[1].__setitem__(1, rows[1][1] + " 7"))
    assert "2304" in raises(f"{pix} row 1:", read, "ferplus", root)

    rewrite_csv(pix, lambda rows: rows.pop())              # misaligned files
    assert "align" in raises(root / "fer2013new.csv", read, "ferplus", root)

    root = fx.make_ferplus(tmp_path / "fp3", faces)
    rewrite_csv(root / "fer2013new.csv", lambda rows: rows[0].__setitem__(11, "notface"))
    assert "NF" in raises(root / "fer2013new.csv", read, "ferplus", root)
