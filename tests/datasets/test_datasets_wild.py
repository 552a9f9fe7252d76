"""Readers of the formats FER research uses today, on fixture trees in the real
published layouts (tests/fixtures/fixtures_wild.py): RAF-DB, KDEF, ExpW, AffectNet-8,
FER+ (Microsoft's majority rule and image layout), FER2013's Kaggle releases,
CK+ copied on macOS."""
from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest

from ferdata import labels
from ferdata.datasets import READERS, read_dataset
from ferdata.datasets.ferplus_labels import label_votes
from ferdata.errors import DatasetFormatError

from fixtures import dataset_fixtures as fx, fixtures_wild as fw
from fixtures.fixtures_wild import majority_tree  # the FER+ majority-rule table: MAJORITY_ROWS there

C = labels.CLASS_INDEX


@pytest.fixture(scope="module")
def faces():
    return fx.sample_faces()


def read(name, root, **options):
    return list(read_dataset(name, root, **options))


def one_line_error(match, fn, *args, **kwargs):
    with pytest.raises(DatasetFormatError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and str(match) in msg, msg
    return msg


def test_new_readers_registered():
    assert {"rafdb", "kdef", "expw"} <= set(READERS)


# --------------------------------------------------------------------------- RAF-DB

def test_rafdb_aligned_and_original(tmp_path, faces):
    root = fw.make_rafdb(tmp_path / "basic", faces)
    recs = read("rafdb", root)
    names = fw.rafdb_names()
    assert len(recs) == 14
    assert [r.source for r in recs] == [f"Image/aligned/{n[:-4]}_aligned.jpg" for n, _ in names]
    assert [r.label for r in recs] == [C[labels.RAFDB[c]] for _, c in names]
    assert Counter(r.split for r in recs) == {"train": 9, "test": 5}
    assert all(r.aligned and r.subject == "" for r in recs)
    # named files: 1 Surprise ... 7 Neutral
    by = {r.extra["image_name"]: r.label for r in recs}
    assert by["train_00001.jpg"] == C["surprise"] and by["train_00004.jpg"] == C["happiness"]
    assert by["train_00007.jpg"] == C["neutral"] and by["test_0001.jpg"] == C["disgust"]  # 10th line: code 3
    orig = read("rafdb", root, images="original")
    assert orig[0].source == "Image/original/train_00001.jpg" and not orig[0].aligned


def test_rafdb_bad_lines(tmp_path, faces):
    root = fw.make_rafdb(tmp_path / "basic", faces, n_train=3, n_test=1, original=False)
    lst = root / "EmoLabel" / "list_patition_label.txt"
    lst.write_text(lst.read_text() + "train_00009.jpg 9\nval_0001.jpg 2\n")
    msg = one_line_error(f"{lst} line 5", read, "rafdb", root)
    assert "not a RAF-DB code" in msg
    skipped = []
    assert len(read("rafdb", root, on_error="skip", skipped=skipped)) == 4
    assert [s for s, _ in skipped] == ["Image/aligned/train_00009_aligned.jpg", "Image/aligned/val_0001_aligned.jpg"]
    one_line_error("images", read, "rafdb", root, images="crop")
    one_line_error("Image/original", read, "rafdb", root, images="original")
    shutil.rmtree(root / "EmoLabel")
    one_line_error("list_patition_label.txt", read, "rafdb", root)


# --------------------------------------------------------------------------- KDEF

def test_kdef_angles_subjects(tmp_path, faces):
    root = fw.make_kdef(tmp_path / "KDEF", faces)
    recs = read("kdef", root)
    assert len(recs) == 2 * 2 * 7                                 # sessions x people x codes, frontal only
    assert {r.extra["angle"] for r in recs} == {"S"}
    assert Counter(r.subject for r in recs) == {"F01": 14, "M02": 14}  # sessions A and B share a subject
    by = {r.source: r for r in recs}
    assert by["AF01/AF01AFS.JPG"].label == C["fear"] and by["BM02/BM02SUS.JPG"].label == C["surprise"]
    assert by["BF01/BF01NES.JPG"].label == C["neutral"] and by["AM02/AM02DIS.JPG"].label == C["disgust"]
    assert {r.split for r in recs} == {""}
    assert len(read("kdef", root, angles="all")) == 56
    assert len(read("kdef", root, angles="HL,S")) == 56
    assert {r.extra["angle"] for r in read("kdef", root, angles="HL")} == {"HL"}
    one_line_error("angles", read, "kdef", root, angles="UP")
    bad = root / "AF01" / "AF01XXS.JPG"
    shutil.copy(root / "AF01" / "AF01ANS.JPG", bad)
    assert "not a KDEF name" in one_line_error(bad, read, "kdef", root)
    skipped = []
    assert len(read("kdef", root, on_error="skip", skipped=skipped)) == 28
    assert skipped[0][0] == "AF01/AF01XXS.JPG"


# --------------------------------------------------------------------------- ExpW

def test_expw_faces_from_list(tmp_path, faces):
    root = fw.make_expw(tmp_path / "ExpW", faces)
    recs = read("expw", root)
    assert len(recs) == 7                                        # 6 images, one with two faces
    assert [r.source for r in recs][:3] == ["image/origin/angry_actor_104.jpg:face0",
                                            "image/origin/happy_family_37.jpg:face0",
                                            "image/origin/happy_family_37.jpg:face1"]
    assert [r.label for r in recs] == [C[labels.EXPW[c]] for _, fl in fw.EXPW_IMAGES for _, c in fl]
    assert recs[0].label == C["anger"] and recs[2].label == C["neutral"] and recs[-1].label == C["fear"]
    assert {r.subject for r in recs} == {""} and {r.split for r in recs} == {""}
    lines = (root / "label" / "label.lst").read_text().splitlines()
    name, _fid, top, left, right, bottom, _conf, _lab = lines[2].split()
    assert recs[2].box == (int(left), int(top), int(right) - int(left), int(bottom) - int(top))
    assert recs[2].path == root / "image" / "origin" / name
    assert len(read("expw", root, min_confidence=61)) == 1


def test_expw_bad_rows(tmp_path, faces):
    root = fw.make_expw(tmp_path / "ExpW", faces)
    lst = root / "label" / "label.lst"
    lst.write_text(lst.read_text() + "gone.jpg 0 1 2 30 40 50.0 3\nangry_actor_104.jpg 1 5 5 4 40 50.0 3\n")
    assert "does not exist" in one_line_error(f"{lst} line 8", read, "expw", root)
    skipped = []
    assert len(read("expw", root, on_error="skip", skipped=skipped)) == 7
    assert [s for s, _ in skipped] == ["image/origin/gone.jpg:face0", "image/origin/angry_actor_104.jpg:face1"]
    assert "empty face box" in skipped[1][1]


# --------------------------------------------------------------------------- AffectNet

def test_affectnet8(tmp_path, faces):
    root = fw.make_affectnet8(tmp_path / "AffectNet", faces)
    recs = read("affectnet", root)
    assert len(recs) == 11 and Counter(r.split for r in recs) == {"train": 8, "val": 3}
    assert [r.source for r in recs][:3] == ["train_set/images/0.jpg", "train_set/images/1.jpg", "train_set/images/2.jpg"]
    assert [r.label for r in recs] == [C[labels.AFFECTNET[n % 8]] for n in range(8)] + \
        [C[labels.AFFECTNET[(n + 2) % 8]] for n in range(3)]
    assert recs[7].label == C["contempt"] and recs[8].label == C["sadness"]
    lnd = np.load(root / "val_set" / "annotations" / "1_lnd.npy").reshape(68, 2)
    np.testing.assert_allclose(recs[9].landmarks, lnd, atol=1e-4)
    assert recs[1].extra["valence"] == pytest.approx(0.1) and recs[2].extra["arousal"] == pytest.approx(-0.2)
    assert {r.subject for r in recs} == {""}
    np.save(root / "train_set" / "annotations" / "3_exp.npy", np.array("12"))
    assert "not an AffectNet code" in one_line_error(root / "train_set" / "images" / "3.jpg", read, "affectnet", root)
    skipped = []
    assert len(read("affectnet", root, on_error="skip", skipped=skipped)) == 10
    assert skipped[0][0] == "train_set/images/3.jpg"


def test_affectnet_csv_release_nested_images(tmp_path, faces):
    root = fx.make_affectnet(tmp_path / "a", faces, n_train=3, n_val=2,
                             images_dir="Manually_Annotated/Manually_Annotated_Images")
    skipped = []
    recs = read("affectnet", root, skipped=skipped)
    assert len(recs) == 5
    assert all(r.source.startswith("Manually_Annotated/Manually_Annotated_Images/") for r in recs)
    assert all(s.startswith("Manually_Annotated/Manually_Annotated_Images/") for s, _ in skipped)  # 8-10


# --------------------------------------------------------------------------- FER2013 releases

def test_fer2013_kaggle_releases(tmp_path, faces):
    root = fw.make_icml_face_data(tmp_path / "challenge", faces)
    recs = read("fer2013", root)                                 # the folder: icml_face_data.csv
    assert len(recs) == 10 and recs[0].source == "icml_face_data.csv:row1"
    assert Counter(r.split for r in recs) == {"train": 6, "val": 2, "test": 2}
    assert [r.label for r in recs] == [C[labels.FER2013[i % 7]] for i in range(10)]
    np.testing.assert_array_equal(recs[4].image, fx.fer_crop(faces[0], shift=1))
    train = read("fer2013", root / "train.csv")
    assert len(train) == 6 and {r.split for r in train} == {"train"}
    assert "emotion" in one_line_error(root / "test.csv", read, "fer2013", root / "test.csv")


def test_folder_kaggle_fer2013_images(tmp_path, faces):
    root = fw.make_fer2013_images(tmp_path / "fer2013", faces)
    recs = read("folder", root, aligned=True)
    by = {r.source: r for r in recs}
    assert len(recs) == 7 and all(r.aligned for r in recs)
    assert by["test/happy/PublicTest_9121.jpg"].split == "val"
    assert by["test/surprise/PrivateTest_88305.jpg"].split == "test"
    assert by["train/angry/Training_3908.jpg"].split == "train"
    assert Counter(r.split for r in recs) == {"train": 3, "val": 2, "test": 2}
    assert not read("folder", root)[0].aligned
    one_line_error("aligned", read, "folder", root, aligned="yes")


# --------------------------------------------------------------------------- CK+ on macOS

def test_ckplus_macos_copy_same_faces(tmp_path, faces):
    clean = fx.make_ckplus(tmp_path / "ck", faces, n_subjects=2, n_sequences=2)
    mac = fw.add_macos_debris(shutil.copytree(clean, tmp_path / "ck-mac"))
    assert list((mac / "Emotion" / "S005" / "001").glob("._*_emotion.txt"))
    assert (mac / "Emotion" / "__MACOSX").is_dir()
    a = [(r.source, r.label, r.subject) for r in read("ckplus", clean)]
    skipped = []
    b = [(r.source, r.label, r.subject) for r in read("ckplus", mac, skipped=skipped)]
    assert a == b and len(a) == 8 and skipped == []


# --------------------------------------------------------------------------- FER+
# The majority-rule table (MAJORITY_ROWS) and majority_tree: fixtures/fixtures_wild.py.

def independent_majority(votes):
    """Microsoft's rule written again from its description, sharing no code with ferdata."""
    kept = [v if v > 1 else 0 for v in votes]
    total = sum(kept)
    cols = list(labels.FERPLUS_COLUMNS) + ["unknown", "NF"]
    for i, v in enumerate(kept):
        if total and 2 * v > total:
            return cols[i] if i < 8 else None
    return None


@pytest.mark.parametrize("layout", ["csv", "images"])
def test_ferplus_majority_rule(tmp_path, faces, layout):
    rows, root = majority_tree(tmp_path / "csv", faces)
    if layout == "images":
        root = fw.make_ferplus_images(tmp_path / "FERPlus", faces, rows)
    expected = [(name, o) for u, name, v, o in rows if name and o is not None]
    assert [o for _, o in expected] == [independent_majority(v) for u, n, v, o in rows
                                       if n and independent_majority(v) is not None]
    for _u, name, v, o in rows:
        if name:
            assert independent_majority(v) == o, name       # the table above is the rule
    skipped = []
    recs = read("ferplus", root, skipped=skipped)
    assert [(r.extra["image_name"], labels.CLASSES[r.label]) for r in recs] == expected
    assert len(recs) == 8 and len(skipped) == (8 if layout == "csv" else 7)  # images: no empty-name row
    assert Counter(r.split for r in recs) == {"train": 4, "val": 1, "test": 3}
    reasons = " | ".join(r for _, r in skipped)
    for part in ("no majority", "more than one vote", "unknown", "NF", "no image name" if layout == "csv" else ""):
        assert part in reasons
    if layout == "images":
        assert recs[0].source == "data/FER2013Train/fer0000000.png" and recs[0].path.is_file()
        assert skipped[0][0] == "data/FER2013Train/fer0000001.png"
        assert [r.source for r in read("ferplus", root / "data")][0] == "FER2013Train/fer0000000.png"
    plural = read("ferplus", root, label_mode="plurality")
    assert len(plural) == 10                               # + the 4-of-8 and 4-of-10 rows


def test_ferplus_probability_mode(tmp_path, faces):
    assert label_votes([6, 3, 1, 0, 0, 0, 0, 0, 0, 0], "probability")[1].tolist() == \
        pytest.approx([6 / 9, 3 / 9, 0, 0, 0, 0, 0, 0])
    lab, target, _ = label_votes([3, 3, 3, 1, 0, 0, 0, 0, 0, 0], "probability")
    assert lab == C["neutral"] and target[:3].tolist() == pytest.approx([1 / 3] * 3)
    assert label_votes([2, 2, 2, 2, 1, 1, 0, 0, 0, 0], "probability")[0] is None   # > 3 emotions
    assert label_votes([4, 0, 0, 0, 0, 0, 0, 0, 4, 2], "probability")[0] is None   # unknown ties the top
    _rows, root = majority_tree(tmp_path / "fp", faces)
    recs = read("ferplus", root, label_mode="probability")
    r = next(r for r in recs if r.extra["image_name"] == "fer0000000.png")         # 5,1,1,1,1,1
    assert r.votes.tolist() == [1, 0, 0, 0, 0, 0, 0, 0] and r.extra["label_mode"] == "probability"
    maj = next(r for r in read("ferplus", root) if r.extra["image_name"] == "fer0000000.png")
    assert maj.votes.tolist() == pytest.approx([0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0, 0])  # raw distribution
    one_line_error("label_mode", read, "ferplus", root, label_mode="vote")


def test_ferplus_image_layout_errors(tmp_path, faces):
    rows, _ = majority_tree(tmp_path / "csv", faces, with_dropped=False)
    root = fw.make_ferplus_images(tmp_path / "FERPlus", faces, rows, checkout=False)
    lst = root / "FER2013Train" / "label.csv"
    (root / "FER2013Train" / "fer0000000.png").unlink()
    msg = one_line_error(f"{lst} row 1", read, "ferplus", root)
    assert "does not exist" in msg
    lst.write_text(lst.read_text() + "fer9.png,\"(0, 0, 48, 48)\",1,2\n")
    skipped = []
    read("ferplus", root, on_error="skip", skipped=skipped)
    assert ("FER2013Train/fer9.png", "expected 12 fields (image name, face box, 10 votes), found 4") in skipped
