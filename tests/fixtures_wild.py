"""Fixture trees for RAF-DB, KDEF, ExpW, AffectNet-8, FER+ images, the FER2013
Kaggle releases and a macOS copy of CK+, each in the real published layout
(file names, list / npy contents, csv headers), built from the real sample faces
of :mod:`dataset_fixtures`. Every builder is deterministic and returns ROOT.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

try:
    from tests import dataset_fixtures as fx
except ImportError:
    import dataset_fixtures as fx


def portrait(face: np.ndarray, out_hw=(240, 180), margin: float = 0.6, gray: bool = False):
    """Crop ``face`` around its landmarks (``margin`` × face size each side) and resize
    to ``out_hw`` (h, w): the face fills the frame as in KDEF / AffectNet-8 crops.
    Returns (image, landmarks in the new image)."""
    pts = fx.face_landmarks(face)
    lo, hi = pts.min(0), pts.max(0)
    c, half = (lo + hi) / 2, (1 + 2 * margin) * float((hi - lo).max()) / 2
    oh, ow = out_hw
    hx, hy = half * min(1.0, ow / oh), half * min(1.0, oh / ow)
    src = np.float32([[c[0] - hx, c[1] - hy], [c[0] + hx, c[1] - hy], [c[0] - hx, c[1] + hy]])
    dst = np.float32([[0, 0], [ow, 0], [0, oh]])
    M = cv2.getAffineTransform(src, dst)
    img = cv2.warpAffine(face, M, (ow, oh), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    if gray:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return img, (pts @ M[:, :2].T + M[:, 2]).astype(np.float32)


# --------------------------------------------------------------------------- RAF-DB

RAFDB_TRAIN, RAFDB_TEST = 9, 5


def rafdb_names(n_train: int = RAFDB_TRAIN, n_test: int = RAFDB_TEST) -> list[tuple[str, int]]:
    """(image name, RAF-DB code) in list order: train_00001.jpg ... then test_0001.jpg ...;
    code of the k-th name (0-based over all) is ``k % 7 + 1``."""
    names = [f"train_{i:05d}.jpg" for i in range(1, n_train + 1)] + [f"test_{i:04d}.jpg" for i in range(1, n_test + 1)]
    return [(n, k % 7 + 1) for k, n in enumerate(names)]


def make_rafdb(root, faces: Sequence[np.ndarray], n_train: int = RAFDB_TRAIN, n_test: int = RAFDB_TEST,
               original: bool = True) -> Path:
    """RAF-DB ``basic/``: ``EmoLabel/list_patition_label.txt``, ``Image/aligned/*_aligned.jpg``
    (100×100) and, with ``original``, ``Image/original/*.jpg`` (the full photo)."""
    root = Path(root)
    cache: dict = {}
    aligned = [portrait(f, (100, 100), margin=0.25)[0] for f in faces]
    lines = []
    for k, (name, code) in enumerate(rafdb_names(n_train, n_test)):
        face = k % len(faces)
        stem = name[:-4]
        fx._write(root / "Image" / "aligned" / f"{stem}_aligned.jpg", aligned[face], cache)
        if original:
            fx._write(root / "Image" / "original" / name, faces[face], cache)
        lines.append(f"{name} {code}\n")
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("".join(lines))
    return root


# --------------------------------------------------------------------------- KDEF

KDEF_CODES = ("AF", "AN", "DI", "HA", "NE", "SA", "SU")


def make_kdef(root, faces: Sequence[np.ndarray], people: Sequence[str] = ("F01", "M02"),
              sessions: Sequence[str] = ("A", "B"), codes: Sequence[str] = KDEF_CODES,
              angles: Sequence[str] = ("S", "HL"), size=(240, 180)) -> Path:
    """KDEF ``ROOT/AF01/AF01ANS.JPG`` for every session × person × code × angle.
    Person p, code c use face ``(p + c) % len(faces)``."""
    root = Path(root)
    cache: dict = {}
    imgs = [portrait(f, size)[0] for f in faces]
    for s in sessions:
        for p, person in enumerate(people):
            folder = root / f"{s}{person}"
            for c, code in enumerate(codes):
                for a in angles:
                    fx._write(folder / f"{s}{person}{code}{a}.JPG", imgs[(p + c) % len(imgs)], cache)
    return root


# --------------------------------------------------------------------------- ExpW

#: (image name, [(face_id, ExpW label)]) — the second image holds two faces.
EXPW_IMAGES = (
    ("angry_actor_104.jpg", [(0, 0)]),
    ("happy_family_37.jpg", [(0, 3), (1, 6)]),
    ("surprised_boy_12.jpg", [(0, 5)]),
    ("sad_woman_205.jpg", [(0, 4)]),
    ("disgusted_man_9.jpg", [(0, 1)]),
    ("afraid_African_214.jpg", [(0, 2)]),
)


def make_expw(root, faces: Sequence[np.ndarray]) -> Path:
    """ExpW: ``label/label.lst`` rows ``image_name face_id top left right bottom confidence
    label`` and ``image/origin/<name>``; the two-face image puts two faces side by side."""
    root = Path(root)
    (root / "image" / "origin").mkdir(parents=True, exist_ok=True)
    (root / "label").mkdir(parents=True, exist_ok=True)
    crops = [portrait(f, (200, 160)) for f in faces]
    rows, k = [], 0
    for name, listed in EXPW_IMAGES:
        parts = []
        for j, _ in enumerate(listed):
            parts.append(crops[(k + j) % len(crops)])
        k += 1
        img = np.concatenate([p[0] for p in parts], axis=1)
        fx._write(root / "image" / "origin" / name, img)
        for j, (face_id, code) in enumerate(listed):
            pts = parts[j][1] + [160 * j, 0]
            lo, hi = pts.min(0), pts.max(0)
            left, top, right, bottom = int(lo[0]) - 4, int(lo[1]) - 4, int(hi[0]) + 4, int(hi[1]) + 4
            rows.append(f"{name} {face_id} {top} {left} {right} {bottom} {60.5 + j:.2f} {code}\n")
    (root / "label" / "label.lst").write_text("".join(rows))
    return root


# --------------------------------------------------------------------------- AffectNet-8

def make_affectnet8(root, faces: Sequence[np.ndarray], n_train: int = 8, n_val: int = 3) -> Path:
    """AffectNet-8: ``train_set/images/<n>.jpg`` (224×224 crops) and
    ``train_set/annotations/<n>_exp.npy`` (the code as a numpy string, as published),
    ``_lnd.npy`` (136 floats), ``_val.npy``, ``_aro.npy``; ``val_set`` the same.
    Image n of a set (numbered from 0) has expression ``n % 8`` (train) or
    ``(n + 2) % 8`` (val) and face ``n % len(faces)``."""
    root = Path(root)
    cache: dict = {}
    crops = [portrait(f, (224, 224), margin=0.3) for f in faces]
    for set_name, n_items, shift in (("train_set", n_train, 0), ("val_set", n_val, 2)):
        img_dir, ann = root / set_name / "images", root / set_name / "annotations"
        img_dir.mkdir(parents=True, exist_ok=True)
        ann.mkdir(parents=True, exist_ok=True)
        for n in range(n_items):
            img, pts = crops[n % len(crops)]
            fx._write(img_dir / f"{n}.jpg", img, cache)
            np.save(ann / f"{n}_exp.npy", np.array(str((n + shift) % 8)))
            np.save(ann / f"{n}_lnd.npy", pts.astype(np.float64).ravel())
            np.save(ann / f"{n}_val.npy", np.array(f"{0.1 * (n % 5):.6f}"))
            np.save(ann / f"{n}_aro.npy", np.array(f"{-0.1 * (n % 3):.6f}"))
    return root


# --------------------------------------------------------------------------- FER+ image layout

def make_ferplus_images(root, faces: Sequence[np.ndarray], rows, checkout: bool = True) -> Path:
    """Microsoft's FERPlus layout: ``[ROOT/]data/FER2013{Train,Valid,Test}/label.csv``
    (no header: ``fer0000000.png,"(0, 0, 48, 48)",<10 votes>``) and the 48×48 PNGs.
    ``rows``: (Usage, image name, votes, ...) as :data:`dataset_fixtures.FERPLUS_ROWS`;
    rows with an empty name are left out (FER+ dropped them). With ``checkout`` a
    ``fer2013new.csv`` sits beside ``data/`` too (as in the FERPlus repository)."""
    root = Path(root)
    folders = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}
    data = root / "data" if checkout else root
    per: dict = {}
    for i, (usage, name, votes, *_r) in enumerate(rows):
        if not name:
            continue
        d = data / folders[usage]
        d.mkdir(parents=True, exist_ok=True)
        crop = fx.fer_crop(faces[i % len(faces)], shift=(i // len(faces)) % 5 - 2)
        cv2.imwrite(str(d / name), crop)
        per.setdefault(d, []).append([name, "(0, 0, 48, 48)", *votes])
    for d, lines in per.items():
        with open(d / "label.csv", "w", newline="") as f:
            csv.writer(f).writerows(lines)
    if checkout:
        from ferdata.labels import FERPLUS_COLUMNS

        with open(root / "fer2013new.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["Usage", "Image name", *FERPLUS_COLUMNS, "unknown", "NF"])
            w.writerows([u, n, *v] for u, n, v, *_r in rows)
    return root


# --------------------------------------------------------------------------- FER2013 Kaggle releases

def make_icml_face_data(root, faces: Sequence[np.ndarray], n_rows: int = 10) -> Path:
    """Kaggle challenge folder: ``icml_face_data.csv`` (header ``emotion, Usage, pixels``)
    and ``train.csv`` (``emotion,pixels``, the Training rows) and ``test.csv`` (pixels only)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cycle = fx.FER2013_USAGE_CYCLE
    rows = [(i % 7, cycle[i % len(cycle)], fx.pixel_string(fx.fer_crop(faces[i % len(faces)], shift=i % 3)))
            for i in range(n_rows)]
    with open(root / "icml_face_data.csv", "w", newline="") as f:
        f.write("emotion, Usage, pixels\n")
        csv.writer(f).writerows(rows)
    with open(root / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels"])
        w.writerows((e, p) for e, u, p in rows if u == "Training")
    with open(root / "test.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pixels"])
        w.writerows((p,) for e, u, p in rows if u != "Training")
    return root


#: Kaggle FER2013 image release: (folder, class folder, file name).
FER_IMAGES = (
    ("train", "angry", "Training_3908.jpg"), ("train", "happy", "Training_10019.jpg"),
    ("train", "neutral", "Training_65.jpg"), ("test", "happy", "PublicTest_9121.jpg"),
    ("test", "sad", "PublicTest_88.jpg"), ("test", "surprise", "PrivateTest_88305.jpg"),
    ("test", "fear", "PrivateTest_1021.jpg"),
)


def make_fer2013_images(root, faces: Sequence[np.ndarray]) -> Path:
    """``ROOT/{train,test}/<class>/Training_*.jpg|PublicTest_*.jpg|PrivateTest_*.jpg`` (48×48 gray)."""
    root = Path(root)
    for i, (split, cls, name) in enumerate(FER_IMAGES):
        fx._write(root / split / cls / name, fx.fer_crop(faces[i % len(faces)], shift=i % 3))
    return root


# --------------------------------------------------------------------------- macOS copies

APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64)


def add_macos_debris(root) -> Path:
    """What a copy made on macOS adds: a ``._<name>`` AppleDouble file beside every file
    and folder, and a ``__MACOSX/`` tree at the root and inside each top folder."""
    root = Path(root)
    entries = sorted(root.rglob("*"))
    for p in entries:
        (p.parent / f"._{p.name}").write_bytes(APPLEDOUBLE)
        rel = p.relative_to(root)
        mac = root / "__MACOSX" / rel.parent / f"._{p.name}"
        mac.parent.mkdir(parents=True, exist_ok=True)
        mac.write_bytes(APPLEDOUBLE)
    for top in [p for p in root.iterdir() if p.is_dir() and p.name != "__MACOSX"]:
        shutil.copytree(root / "__MACOSX" / top.name, top / "__MACOSX", dirs_exist_ok=True)
    return root
