"""Readers fail loudly instead of silently dropping or duplicating data: FER+ (missing
label.csv, probability mode on val/test, the 2016 csv, which labels file was read),
AffectNet (AffectNet-8 sets and orphan annotations, a headerless validation.csv), ExpW
(boxes outside the image, nan confidences), RAF-DB (an image listed twice). Fixture trees
in the published layouts: tests/fixtures/dataset_fixtures.py and fixtures_wild.py."""
from __future__ import annotations

import logging
import shutil
from collections import Counter

import numpy as np
import pytest

from ferdata import labels
from ferdata.datasets import read_ferplus

from fixtures import dataset_fixtures as fx, fixtures_wild as fw
from fixtures.dataset_readers import C, raises, read, rewrite_csv
from fixtures.fixtures_wild import majority_tree

SPLIT_FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}


def ferplus_images(tmp_path, faces):
    rows, _ = majority_tree(tmp_path / "csv", faces)
    return rows, fw.make_ferplus_images(tmp_path / "FERPlus", faces, rows)


# --------------------------------------------------------------------------- 1. FER+ label.csv

@pytest.mark.parametrize("damage", ["missing", "empty"])
def test_ferplus_images_missing_or_empty_label_csv(tmp_path, faces, damage):
    _rows, root = ferplus_images(tmp_path, faces)
    lst = root / "data" / "FER2013Valid" / "label.csv"
    whole = read("ferplus", root)
    if damage == "missing":
        lst.unlink()
    else:
        lst.write_text("")
    msg = raises(lst, read, "ferplus", root)
    assert ("does not exist" if damage == "missing" else "is empty") in msg and "val split" in msg
    skipped = []
    recs = read("ferplus", root, on_error="skip", skipped=skipped)
    assert [s for s, _ in skipped if s.endswith("label.csv")] == ["data/FER2013Valid/label.csv"]
    assert [r.source for r in recs] == [r.source for r in whole if r.split != "val"]  # the others are read
    assert len(read("ferplus", root, splits=["train", "test"])) == len(recs)           # not asked for: no error


def test_ferplus_images_missing_label_csv_raises_before_any_record(tmp_path, faces):
    _rows, root = ferplus_images(tmp_path, faces)
    (root / "data" / "FER2013Test" / "label.csv").unlink()
    it = read_ferplus(root)
    raises(root / "data" / "FER2013Test" / "label.csv", next, it)        # not after the train faces


# --------------------------------------------------------------------------- 2. AffectNet-8

@pytest.mark.parametrize("damage", ["missing", "empty"])
def test_affectnet8_train_set_without_images(tmp_path, faces, damage):
    root = fw.make_affectnet8(tmp_path / "AffectNet", faces)
    images = root / "train_set" / "images"
    if damage == "missing":
        shutil.rmtree(images)
    else:
        for p in images.iterdir():
            p.unlink()
    msg = raises(images, read, "affectnet", root)
    assert ("does not exist" if damage == "missing" else "no images") in msg
    skipped = []
    recs = read("affectnet", root, on_error="skip", skipped=skipped)
    assert Counter(r.split for r in recs) == {"val": 3}
    assert skipped[0][0] == "train_set/images" and "train split" in skipped[0][1]


def test_affectnet8_val_set_is_expected_too(tmp_path, faces):
    root = fw.make_affectnet8(tmp_path / "AffectNet", faces)
    shutil.rmtree(root / "val_set")
    raises(root / "val_set" / "images", read, "affectnet", root)
    skipped = []
    assert len(read("affectnet", root, on_error="skip", skipped=skipped)) == 8
    assert [s for s, _ in skipped] == ["val_set/images"]


def test_affectnet8_annotation_without_image(tmp_path, faces):
    root = fw.make_affectnet8(tmp_path / "AffectNet", faces)
    (root / "train_set" / "images" / "5.jpg").unlink()
    msg = raises(root / "train_set" / "annotations" / "5_exp.npy", read, "affectnet", root)
    assert "without its image" in msg
    skipped = []
    recs = read("affectnet", root, on_error="skip", skipped=skipped)
    assert len(recs) == 10 and "train_set/images/5.jpg" not in {r.source for r in recs}
    assert [s for s, _ in skipped] == ["train_set/annotations/5_exp.npy"]
    assert "train_set/images/5.*" in skipped[0][1]


# --------------------------------------------------------------------------- 3. ExpW

def _append_expw(root, *lines):
    lst = root / "label" / "label.lst"
    lst.write_text(lst.read_text() + "".join(line + "\n" for line in lines))
    return lst


@pytest.mark.parametrize("box", ["500 500 600 700", "-80 -90 -10 -5", "0 160 200 300"])
def test_expw_box_outside_image_is_a_bad_item(tmp_path, faces, box):
    root = fw.make_expw(tmp_path / "ExpW", faces)        # angry_actor_104.jpg is 160 wide, 200 high
    lst = _append_expw(root, f"angry_actor_104.jpg 1 {box} 50.0 3")
    msg = raises(f"{lst} line 8", read, "expw", root)
    assert "entirely outside the 160x200 image" in msg
    skipped = []
    assert len(read("expw", root, on_error="skip", skipped=skipped)) == 7
    assert skipped == [("image/origin/angry_actor_104.jpg:face1", msg.split(": ", 1)[1])]


def test_expw_box_partly_outside_is_kept(tmp_path, faces):
    root = fw.make_expw(tmp_path / "ExpW", faces)
    _append_expw(root, "angry_actor_104.jpg 1 -20 -30 40 60 50.0 3")   # top left right bottom
    recs = read("expw", root)
    assert len(recs) == 8 and recs[-1].box == (-30, -20, 70, 80)


@pytest.mark.parametrize("conf", ["nan", "NaN", "inf", "-inf"])
def test_expw_nan_confidence_is_a_bad_value(tmp_path, faces, conf):
    root = fw.make_expw(tmp_path / "ExpW", faces)
    lst = _append_expw(root, f"angry_actor_104.jpg 1 5 5 40 60 {conf} 3")
    assert "not a finite number" in raises(f"{lst} line 8", read, "expw", root, min_confidence=61)
    for threshold in (0, 61):
        skipped = []
        recs = read("expw", root, min_confidence=threshold, on_error="skip", skipped=skipped)
        assert "image/origin/angry_actor_104.jpg:face1" not in {r.source for r in recs}
        assert ("image/origin/angry_actor_104.jpg:face1", f"confidence {conf!r} is not a finite number") in skipped


def test_expw_infinite_coordinate_is_a_bad_value(tmp_path, faces):
    root = fw.make_expw(tmp_path / "ExpW", faces)
    lst = _append_expw(root, "angry_actor_104.jpg 1 5 5 inf 60 50.0 3")
    assert "must be numbers" in raises(f"{lst} line 8", read, "expw", root)


# --------------------------------------------------------------------------- 4. RAF-DB

def test_rafdb_image_listed_twice(tmp_path, faces):
    root = fw.make_rafdb(tmp_path / "basic", faces, original=False)
    lst = root / "EmoLabel" / "list_patition_label.txt"
    lst.write_text(lst.read_text() + "train_00001.jpg 5\ntest_0002.jpg 2\n")   # test_0002 is line 11, code 4
    msg = raises(f"{lst} line 15", read, "rafdb", root)
    assert "train_00001.jpg is listed again (read from line 1, with label 1 there and 5 here)" in msg
    skipped = []
    recs = read("rafdb", root, on_error="skip", skipped=skipped)
    sources = [r.source for r in recs]
    assert len(recs) == 14 and len(set(sources)) == 14
    assert recs[0].label == C[labels.RAFDB[1]]                           # read from its first line
    assert [s for s, _ in skipped] == ["Image/aligned/train_00001_aligned.jpg", "Image/aligned/test_0002_aligned.jpg"]
    assert "line 11" in skipped[1][1]


# --------------------------------------------------------------------------- 5. FER+ probability

@pytest.mark.parametrize("layout", ["csv", "images"])
def test_ferplus_probability_uses_majority_on_val_and_test(tmp_path, faces, layout):
    rows, root = majority_tree(tmp_path / "csv", faces)
    if layout == "images":
        root = fw.make_ferplus_images(tmp_path / "FERPlus", faces, rows)
    maj = read("ferplus", root, layout=layout)
    skipped = []
    prob = read("ferplus", root, layout=layout, label_mode="probability", skipped=skipped)
    def held_out(recs):
        return [(r.source, r.label, r.votes.tolist(), r.extra["label_mode"]) for r in recs if r.split != "train"]

    assert held_out(prob) == held_out(maj) and {r.split for r in maj} >= {"val", "test"}
    # the val face 0,0,0,4,3,0,0,0,3,0 has a probability target (sadness 4/7) but no majority
    no_majority = next(i for i, (u, n, v, o) in enumerate(rows) if v == (0, 0, 0, 4, 3, 0, 0, 0, 3, 0))
    assert rows[no_majority][0] == "PublicTest"
    assert rows[no_majority][1] not in {r.extra["image_name"] for r in prob}
    assert any("no majority" in why for _, why in skipped)
    train = [r for r in prob if r.split == "train"]
    assert train and {r.extra["label_mode"] for r in train} == {"probability"}
    assert {r.extra["label_mode"] for r in prob if r.split != "train"} == {"majority"}


# --------------------------------------------------------------------------- 6. 2016 fer2013new.csv

def test_ferplus_2016_csv_without_image_name(tmp_path, faces):
    rows, _ = majority_tree(tmp_path / "x", faces)
    nf = (0,) * 9 + (10,)
    rows = [(u, n, v if n else nf, o) for u, n, v, o in rows]          # the dropped face: all 10 votes NF
    new = fx.make_ferplus(tmp_path / "2017", faces, rows=rows)
    old = fx.make_ferplus(tmp_path / "2016", faces, rows=rows)
    rewrite_csv(old / "fer2013new.csv", lambda rs: [r.pop(1) for r in rs])
    assert (old / "fer2013new.csv").read_text().splitlines()[0] == \
        "Usage,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    for mode in ("majority", "plurality", "probability"):
        s17, s16 = [], []
        a = read("ferplus", new, label_mode=mode, skipped=s17)
        b = read("ferplus", old, label_mode=mode, skipped=s16)
        assert [(r.source, r.label, r.split, r.votes.tolist()) for r in a] == \
            [(r.source, r.label, r.split, r.votes.tolist()) for r in b]
        assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
        assert [s for s, _ in s17] == [s for s, _ in s16]
    assert ("fer2013new.csv:row4", "all 10 votes NF (not a face; dropped by FER+)") in s16
    assert {r.extra["image_name"] for r in b} == {""}


# --------------------------------------------------------------------------- 7. AffectNet csv header

def test_affectnet_headerless_validation_csv(tmp_path, faces):
    root = fx.make_affectnet(tmp_path / "a", faces, n_train=4, n_val=3)
    before = read("affectnet", root)
    val = root / "Manually_Annotated_file_lists" / "validation.csv"
    val.write_text("".join(val.read_text().splitlines(keepends=True)[1:]))
    assert not val.read_text().startswith("subDirectory_filePath")
    after = read("affectnet", root)
    def key(r):
        return r.source, r.label, r.split, r.box, r.extra.get("valence"), r.extra.get("arousal")

    assert [key(r) for r in after] == [key(r) for r in before]
    assert Counter(r.split for r in after) == {"train": 4, "val": 3}
    assert [r.extra["row"] for r in after if r.split == "val"] == [1, 2, 3]   # the first line is data row 1
    rewrite_csv(val, lambda rs: rs[0].__setitem__(6, "x"))              # no longer reads as data: a header
    raises(val, read, "affectnet", root)


def test_affectnet_header_still_checked(tmp_path, faces):
    root = fx.make_affectnet(tmp_path / "a", faces, n_train=2, n_val=1)
    train = root / "Manually_Annotated_file_lists" / "training.csv"
    rewrite_csv(train, lambda rs: rs[0].__setitem__(0, "path"))
    assert "missing subDirectory_filePath" in raises(train, read, "affectnet", root)


# --------------------------------------------------------------------------- 8. which FER+ file

def test_ferplus_auto_layout_says_which_file(tmp_path, faces, caplog):
    _rows, root = ferplus_images(tmp_path, faces)
    assert (root / "fer2013new.csv").is_file()
    with caplog.at_level(logging.INFO, logger="ferdata.datasets.ferplus"):
        recs = read("ferplus", root)
    said = " ".join(r.getMessage() for r in caplog.records if r.name == "ferdata.datasets.ferplus")
    assert "label.csv" in said and "fer2013new.csv is not read" in said and "layout=csv" in said
    assert {r.extra["layout"] for r in recs} == {"images"}
    for r in recs:
        assert r.extra["labels_file"] == f"data/{SPLIT_FOLDERS[r.split]}/label.csv"
    csv_root = fx.make_ferplus(tmp_path / "csv-layout", faces)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ferdata.datasets.ferplus"):
        recs = read("ferplus", csv_root)
    assert {(r.extra["layout"], r.extra["labels_file"]) for r in recs} == {("csv", "fer2013new.csv")}
    assert any("fer2013new.csv" in r.getMessage() for r in caplog.records)
