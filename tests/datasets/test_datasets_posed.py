"""Dataset readers on fixture trees in each real layout (tests/fixtures/dataset_fixtures.py): JAFFE,
BU-3DFE, RaFD, AffectNet and the folder-per-class reader. The registry, CK+, FER2013 and
FER+ are in test_datasets.py; the shared fixtures (faces, trees) are in conftest.py, the
helpers in fixtures/dataset_readers.py."""
from __future__ import annotations

import csv
import shutil
from collections import Counter

import numpy as np

from ferdata import labels
from fixtures import dataset_fixtures as fx
from fixtures.dataset_readers import C, raises, read, rewrite_csv

# --------------------------------------------------------------------------- JAFFE

def test_jaffe(trees):
    recs = read("jaffe", trees["jaffe"])
    assert len(recs) == 21                                  # README ignored, subfolder searched
    assert Counter(r.subject for r in recs) == {"KA": 7, "KL": 7, "KM": 7}
    assert Counter(r.label for r in recs) == {C[labels.JAFFE[c]]: 3 for c in fx.JAFFE_CODES}
    assert all(r.split == "" and r.source.startswith("jaffedbase/") for r in recs)
    r = next(r for r in recs if r.source == "jaffedbase/KA.HA1.4.tiff")
    assert r.label == C["happiness"] and r.extra == {"repeat": 1, "index": 4}


def test_jaffe_bad_name(tmp_path, faces):
    root = fx.make_jaffe(tmp_path / "j", faces, subjects=("KA",))
    bad = root / "jaffedbase" / "KA.XX1.99.tiff"
    shutil.copy(root / "jaffedbase" / "KA.AN1.1.tiff", bad)
    assert "expression code 'XX'" in raises(bad, read, "jaffe", root)
    (root / "jaffedbase" / "photo.tiff").write_bytes(b"")
    skipped = []
    assert len(read("jaffe", root, on_error="skip", skipped=skipped)) == 7
    assert sorted(s for s, _ in skipped) == ["jaffedbase/KA.XX1.99.tiff", "jaffedbase/photo.tiff"]


# --------------------------------------------------------------------------- BU-3DFE

def test_bu3dfe(trees):
    root = trees["bu3dfe"]
    recs = read("bu3dfe", root)
    assert len(recs) == 50                                  # 2 × (NE + 6 × 4); F3D files ignored
    assert all(r.source.endswith("_F2D.bmp") for r in recs)
    assert Counter(r.subject for r in recs) == {"F0001": 25, "M0002": 25}
    assert Counter(r.label for r in recs)[C["neutral"]] == 2
    r = next(r for r in recs if r.source == "M0002/M0002_SU03AE_F2D.bmp")
    assert r.label == C["surprise"] and r.extra == {"intensity": 3, "race": "AE"}
    strong = read("bu3dfe", root, min_intensity=3)
    assert len(strong) == 2 * (1 + 6 * 2)
    assert {r.extra["intensity"] for r in strong} == {0, 3, 4}
    assert len(read("bu3dfe", root, min_intensity=4, include_neutral=False)) == 12
    raises("min_intensity", read, "bu3dfe", root, min_intensity=5)


def test_bu3dfe_bad_name(tmp_path, faces):
    root = fx.make_bu3dfe(tmp_path / "b", faces, subjects=("F0001",), codes=("HA",), size=64)
    src = root / "F0001" / "F0001_HA01WH_F2D.bmp"
    for name, reason in (("F0001_HA07WH_F2D.bmp", "intensity 07"),
                         ("F0001_NE02WH_F2D.bmp", "intensity 02"),
                         ("F0001_XX01WH_F2D.bmp", "expression code"),
                         ("F01_HA01_F2D.bmp", "not a BU-3DFE file name")):
        bad = root / "F0001" / name
        shutil.copy(src, bad)
        assert reason in raises(bad, read, "bu3dfe", root)
        skipped = []
        assert len(read("bu3dfe", root, on_error="skip", skipped=skipped)) == 5
        assert skipped[0][0] == f"F0001/{name}"
        bad.unlink()


# --------------------------------------------------------------------------- RaFD

def test_rafd(trees):
    root = trees["rafd"]
    recs = read("rafd", root)
    assert len(recs) == 2 * 2 * 8                          # frontal camera only, both gazes
    assert {r.extra["angle"] for r in recs} == {90}
    assert Counter(r.subject for r in recs) == {"01": 16, "02": 16}
    assert Counter(r.label for r in recs) == {i: 4 for i in range(8)}
    r = next(r for r in recs if r.source == "Rafd090_02_Moroccan_male_contemptuous_left.jpg")
    assert r.label == C["contempt"] and r.extra == {"angle": 90, "ethnicity": "Moroccan",
                                                    "gender": "male", "gaze": "left"}
    assert len(read("rafd", root, angles=(45, 90))) == 64
    assert len(read("rafd", root, gazes=("frontal",))) == 16
    raises("angles", read, "rafd", root, angles=(30,))
    raises("gazes", read, "rafd", root, gazes=("up",))


def test_rafd_bad_name(tmp_path, faces):
    root = fx.make_rafd(tmp_path / "r", faces, n_subjects=1, angles=(90,), gazes=("frontal",),
                        size=(64, 48))
    bad = root / "Rafd090_01_Caucasian_female_bored_frontal.jpg"
    shutil.copy(root / "Rafd090_01_Caucasian_female_angry_frontal.jpg", bad)
    assert "unknown RaFD expression 'bored'" in raises(bad, read, "rafd", root)
    skipped = []
    assert len(read("rafd", root, on_error="skip", skipped=skipped)) == 8
    assert skipped[0][0] == bad.name


# --------------------------------------------------------------------------- AffectNet

def test_affectnet(trees):
    root = trees["affectnet"]
    skipped = []
    recs = read("affectnet", root, skipped=skipped)
    assert len(recs) == 14
    assert Counter(r.split for r in recs) == {"train": 10, "val": 4}
    train = [r for r in recs if r.split == "train"]
    assert [r.label for r in train] == [C[labels.AFFECTNET[i % 8]] for i in range(10)]
    val = [r for r in recs if r.split == "val"]
    assert [r.label for r in val] == [C[labels.AFFECTNET[(i + 3) % 8]] for i in range(4)]
    assert [reason for _, reason in skipped] == ["expression 8 (none)", "expression 9 (uncertain)",
                                                 "expression 10 (non-face)"]
    faces_lmk = fx.sample_landmarks()
    for i, r in enumerate(recs):
        assert r.subject == "" and r.source.startswith("Manually_Annotated_Images/")
        np.testing.assert_allclose(r.landmarks, faces_lmk[i % 4 if r.split == "train" else (i + 3) % 4],
                                   atol=0.01)
        x, y, w, h = r.box
        assert w > 0 and h > 0
        assert (r.landmarks >= [x, y]).all() and (r.landmarks <= [x + w, y + h]).all()
        assert isinstance(r.extra["valence"], float)
    only_val = read("affectnet", root, csv="Manually_Annotated_file_lists/validation.csv")
    assert len(only_val) == 4 and {r.split for r in only_val} == {"val"}


def test_affectnet_flat_layout(tmp_path, faces):
    root = fx.make_affectnet(tmp_path / "a", faces, n_train=3, n_val=2, lists_dir="", images_dir="")
    recs = read("affectnet", root)
    assert len(recs) == 5 and recs[0].path.parent.parent == root


def test_affectnet_bad_input(tmp_path, faces):
    root = fx.make_affectnet(tmp_path / "a", faces, n_train=4, n_val=2)
    train = root / "Manually_Annotated_file_lists" / "training.csv"
    raises(root / "nope.csv", read, "affectnet", root, csv="nope.csv")
    rewrite_csv(train, lambda rows: rows[2].__setitem__(5, "1;2;3"))
    assert "136" in raises(f"{train} row 2:", read, "affectnet", root)
    rewrite_csv(train, lambda rows: rows[2].__setitem__(5, rows[1][5]))
    (root / "Manually_Annotated_Images" / rows_path(train, 3)).unlink()
    assert "does not exist" in raises(f"{train} row 3:", read, "affectnet", root)
    skipped = []
    assert len(read("affectnet", root, on_error="skip", skipped=skipped)) == 5
    assert skipped[0][0] == "Manually_Annotated_Images/" + rows_path(train, 3)  # relative to ROOT
    rewrite_csv(train, lambda rows: rows[1].__setitem__(6, "11"))
    assert "not an AffectNet code" in raises(f"{train} row 1:", read, "affectnet", root)
    rewrite_csv(train, lambda rows: rows[0].__setitem__(6, "emotion"))
    assert "expression" in raises(train, read, "affectnet", root)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "training.csv" in raises(empty, read, "affectnet", empty)


def rows_path(path, row):
    with open(path, newline="") as f:
        return list(csv.reader(f))[row][0]


# --------------------------------------------------------------------------- folder

def test_folder(trees):
    root = trees["folder"]
    recs = read("folder", root)
    assert len(recs) == 12
    assert Counter(r.label for r in recs) == {C["happiness"]: 3, C["sadness"]: 3, C["neutral"]: 3, C["anger"]: 3}
    assert {r.subject for r in recs} == {""} and {r.split for r in recs} == {""}
    with_subj = read("folder", root, subject_regex=r"^(S\d+)_")
    assert Counter(r.subject for r in with_subj) == {"S01": 8, "S02": 4}
    raises("subject_regex", read, "folder", root, subject_regex="(")
    msg = raises(root / "angry" / "S01_angry_000.png", read, "folder", root, subject_regex=r"^(P\d+)_")
    assert "subject_regex" in msg


def test_folder_canonical_names_and_splits(tmp_path, faces):
    classes = ("neutral", "Happiness", "surprised", "contemptuous", "FEARFUL")
    root = fx.make_folder(tmp_path / "f", faces, classes=classes, n_per_class=2,
                          splits=("train", "PublicTest"), ext=".jpg", size=64)
    recs = read("folder", root)
    assert len(recs) == 20
    assert Counter(r.split for r in recs) == {"train": 10, "val": 10}
    assert {r.label for r in recs} == {C[n] for n in ("neutral", "happiness", "surprise", "contempt", "fear")}
    assert recs[0].source.split("/")[0] in ("train", "PublicTest")


def test_folder_unknown_class_and_loose_images(tmp_path, faces):
    root = fx.make_folder(tmp_path / "f", faces, n_per_class=2, size=64)
    shutil.copytree(root / "happy", root / "bored")
    msg = raises(root / "bored", read, "folder", root)
    assert "unknown class folder 'bored'" in msg
    skipped = []
    recs = read("folder", root, on_error="skip", skipped=skipped)
    assert len(recs) == 8 and skipped == [("bored/", msg.split(": ", 1)[1])]
    shutil.rmtree(root / "bored")
    loose = root / "stray.png"
    shutil.copy(root / "happy" / "S01_happy_000.png", loose)
    assert "not inside a class folder" in raises(loose, read, "folder", root)
