"""``ferdata ingest <fmt> ROOT -o x.h5`` end to end on the new formats' fixture trees
(tests/fixtures/fixtures_wild.py): exact counts, labels of named files, subjects, splits,
the ``classes`` attribute, and which detector placed each face."""
from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner

from ferdata.cli import main
from ferdata.faces.store import FaceStore
from ferdata.faces.ingest import report_path
from ferdata.labels import CLASSES

from fixtures import dataset_fixtures as fx, fixtures_wild as fw
from fixtures.fixtures_wild import majority_tree


@pytest.fixture(scope="module")
def faces():
    return fx.sample_faces()


def ingest(fmt, root, out, *extra):
    r = CliRunner().invoke(main, ["ingest", fmt, str(root), "-o", str(out), *map(str, extra)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    report = json.loads(report_path(out).read_text())
    fs = FaceStore(out)
    return fs, report, {s: (CLASSES[l], sub, sp) for s, l, sub, sp in zip(fs.sources, fs.labels, fs.subjects, fs.splits)}


def canonical_order(classes):
    return classes == [c for c in CLASSES if c in classes]


def test_ingest_rafdb(tmp_path, faces):
    root = fw.make_rafdb(tmp_path / "basic", faces, original=False)
    fs, rep, by = ingest("rafdb", root, tmp_path / "raf.h5")
    with fs:
        assert len(fs) == 14 and fs.size == 100            # aligned 100x100 crops, stored as they are
        assert by["Image/aligned/train_00001_aligned.jpg"] == ("surprise", "", "train")
        assert by["Image/aligned/test_0005_aligned.jpg"] == ("neutral", "", "test")  # 14th line: 13 % 7 + 1 = 7
        assert Counter(fs.splits) == {"train": 9, "test": 5} and set(fs.subjects) == {""}
        assert fs.classes == list(CLASSES[:7]) and canonical_order(fs.classes)
    assert rep["per_detector"] == {"none": 14}


def test_ingest_kdef(tmp_path, faces):
    root = fw.make_kdef(tmp_path / "KDEF", faces, people=("F01", "M02"), angles=("S", "FR"))
    fs, rep, by = ingest("kdef", root, tmp_path / "kdef.h5", "--option", "angles=S")
    with fs:
        assert len(fs) == 28 and rep["skipped"] == 0
        assert by["AF01/AF01AFS.JPG"] == ("fear", "F01", "")
        assert by["BM02/BM02HAS.JPG"] == ("happiness", "M02", "")
        assert Counter(fs.subjects) == {"F01": 14, "M02": 14}
        assert fs.classes == ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear"]
        assert np.isfinite(fs.landmarks).all()
    assert rep["per_detector"] == {"hog": 28}
    assert rep["faces"]["detector"] == ["hog"] * 28 and all(v > 20 for v in rep["faces"]["iod_px"])


def test_ingest_expw(tmp_path, faces):
    root = fw.make_expw(tmp_path / "ExpW", faces)
    fs, rep, by = ingest("expw", root, tmp_path / "expw.h5")
    with fs:
        assert len(fs) == 7
        assert by["image/origin/happy_family_37.jpg:face0"] == ("happiness", "", "")
        assert by["image/origin/happy_family_37.jpg:face1"] == ("neutral", "", "")
        assert by["image/origin/afraid_African_214.jpg:face0"] == ("fear", "", "")
        assert fs.classes == ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear"]
        # the two faces of one image are two different faces
        assert not np.array_equal(fs.images[1], fs.images[2])
    assert rep["per_detector"] == {"box": 7}


def test_ingest_affectnet8(tmp_path, faces):
    root = fw.make_affectnet8(tmp_path / "AffectNet", faces)
    fs, rep, by = ingest("affectnet", root, tmp_path / "an.h5")
    with fs:
        assert len(fs) == 11 and Counter(fs.splits) == {"train": 8, "val": 3}
        assert by["train_set/images/7.jpg"] == ("contempt", "", "train")
        assert by["val_set/images/0.jpg"] == ("sadness", "", "val")
        assert fs.classes == list(CLASSES)
    assert rep["per_detector"] == {"dataset": 11}


def test_ingest_ferplus_images_and_fer2013_releases(tmp_path, faces):
    rows, _ = majority_tree(tmp_path / "csv", faces)
    root = fw.make_ferplus_images(tmp_path / "FERPlus", faces, rows)
    fs, rep, by = ingest("ferplus", root, tmp_path / "fp.h5")
    with fs:
        assert len(fs) == 8 and rep["skipped"] == 7 and fs.size == 48
        assert by["data/FER2013Train/fer0000007.png"] == ("contempt", "", "train")
        assert Counter(fs.splits) == {"train": 4, "val": 1, "test": 3}
        assert fs.classes == ["neutral", "happiness", "surprise", "disgust", "fear", "contempt"]
        assert fs.f["votes"].shape == (8, 8)
    assert {s["source"] for s in rep["skipped_files"]} >= {"data/FER2013Train/fer0000001.png"}
    challenge = fw.make_icml_face_data(tmp_path / "challenge", faces)
    fs, _rep, by = ingest("fer2013", challenge, tmp_path / "icml.h5")
    with fs:
        assert len(fs) == 10 and by["icml_face_data.csv:row4"] == ("happiness", "", "val")
    fs, _rep, by = ingest("fer2013", challenge / "train.csv", tmp_path / "train.h5")
    with fs:
        assert len(fs) == 6 and set(fs.splits) == {"train"}
    imgs = fw.make_fer2013_images(tmp_path / "fer-images", faces)
    fs, rep, by = ingest("folder", imgs, tmp_path / "folder.h5", "--option", "aligned=true")
    with fs:
        assert len(fs) == 7 and fs.size == 48
        assert by["test/surprise/PrivateTest_88305.jpg"] == ("surprise", "", "test")
        assert by["test/sad/PublicTest_88.jpg"] == ("sadness", "", "val")
    assert rep["per_detector"] == {"none": 7}


def test_ingest_ckplus_macos_copy(tmp_path, faces):
    clean = fx.make_ckplus(tmp_path / "ck", faces, n_subjects=2, n_sequences=1)
    mac = fw.add_macos_debris(shutil.copytree(clean, tmp_path / "ck-mac"))
    fs1, _r, a = ingest("ckplus", clean, tmp_path / "a.h5")
    fs2, rep, b = ingest("ckplus", mac, tmp_path / "b.h5")
    with fs1, fs2:
        assert a == b and len(fs2) == 4 and rep["skipped"] == 0
        np.testing.assert_array_equal(fs1.images[:], fs2.images[:])


def test_ingest_detector_option(tmp_path, faces):
    root = fw.make_kdef(tmp_path / "KDEF", faces[:1], people=("F01",), sessions=("A",), codes=("HA",))
    blank = np.full((240, 180, 3), 128, np.uint8)
    fx._write(root / "AF01" / "AF01NES.JPG", blank)           # no face for any detector
    fs, rep, _ = ingest("kdef", root, tmp_path / "k.h5", "--detector", "auto")
    with fs:
        assert len(fs) == 1 and rep["per_detector"] == {"hog": 1}
    assert rep["config"]["detector"] == "auto"
    assert "HOG or the CNN" in rep["skipped_files"][0]["reason"]
    r = CliRunner().invoke(main, ["ingest", "kdef", str(root), "-o", str(tmp_path / "x.h5"), "--detector", "mtcnn"])
    assert r.exit_code != 0 and "mtcnn" in r.output
