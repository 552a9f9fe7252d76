"""Build small dataset trees in each real source layout (docs/datasets.md) from real faces.

Plain functions, reused by the reader tests, the ingest tests and benchmarks::

    faces = sample_faces()
    root = make_ckplus(tmp_path / "ck", faces, n_subjects=3)

The faces and their stored 68-point landmarks come from tests/fixtures_faces.py
(re-exported here: ``sample_faces``, ``sample_landmarks``, ...). Every builder returns
the root it wrote (pass it to the reader) and is deterministic.
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

try:
    from tests.fixtures_faces import (_fit, _write, face_landmarks, fer_crop, pixel_string,  # noqa: F401
                                      sample_faces, sample_landmarks, template_landmarks)
except ImportError:
    from fixtures_faces import (_fit, _write, face_landmarks, fer_crop, pixel_string,  # noqa: F401
                                sample_faces, sample_landmarks, template_landmarks)

# --------------------------------------------------------------------------- CK+

def make_ckplus(root, faces: Sequence[np.ndarray], n_subjects: int = 3, n_sequences: int = 2,
                n_frames: int = 4, codes: Sequence[int] = (1, 2, 3, 4, 5, 6, 7),
                n_unlabelled: int = 1, landmarks: bool = True) -> Path:
    """CK+ tree: ``cohn-kanade-images/``, ``Emotion/``, ``Landmarks/``.

    Subjects ``S005, S010, ...``; each has ``n_sequences`` labelled sequences
    (``001``...) of ``n_frames`` 640×490 gray frames growing from 90 % to 100 %
    scale (onset to peak), and ``n_unlabelled`` more sequences without an emotion
    file. Sequence j (counting over all subjects) has CK+ code ``codes[j % len(codes)]``
    in ``Emotion/Sxxx/nnn/Sxxx_nnn_<last frame>_emotion.txt``; every frame has a
    landmark file when ``landmarks``. Labelled records with the default reader
    options: 2 per labelled sequence (neutral first frame + peak).
    """
    root = Path(root)
    cache: dict = {}
    j = 0
    for s in range(n_subjects):
        subj = f"S{5 * (s + 1):03d}"
        for q in range(n_sequences + n_unlabelled):
            seq = f"{q + 1:03d}"
            face = faces[(s * (n_sequences + n_unlabelled) + q) % len(faces)]
            pts = face_landmarks(face)
            for i in range(n_frames):
                scale = 0.9 + 0.1 * i / max(1, n_frames - 1)
                img, lm = _fit(face, pts, (490, 640), scale=scale, gray=True)
                stem = f"{subj}_{seq}_{i + 1:08d}"
                _write(root / "cohn-kanade-images" / subj / seq / f"{stem}.png", img, cache)
                if landmarks:
                    lpath = root / "Landmarks" / subj / seq / f"{stem}_landmarks.txt"
                    lpath.parent.mkdir(parents=True, exist_ok=True)
                    lpath.write_text("".join(f"   {x:.7e}   {y:.7e}\n" for x, y in lm))
            emo_dir = root / "Emotion" / subj / seq
            if q < n_sequences:
                emo_dir.mkdir(parents=True, exist_ok=True)
                code = codes[j % len(codes)]
                j += 1
                (emo_dir / f"{subj}_{seq}_{n_frames:08d}_emotion.txt").write_text(f"   {float(code):.7e}\n")
            elif q == n_sequences:
                emo_dir.mkdir(parents=True, exist_ok=True)  # an empty (unlabelled) folder, as in CK+
    return root


# --------------------------------------------------------------------------- FER2013 / FER+

#: Usage of data row i (0-based) in :func:`make_fer2013`: cycles through this tuple.
FER2013_USAGE_CYCLE = ("Training", "Training", "Training", "PublicTest", "PrivateTest")


def make_fer2013(root, faces: Sequence[np.ndarray], n_rows: int = 21, filename: str = "fer2013.csv") -> Path:
    """``ROOT/fer2013.csv``: row i has emotion ``i % 7``, Usage
    ``FER2013_USAGE_CYCLE[i % 5]`` and a 48×48 gray crop of ``faces[i % len(faces)]``
    (shifted by a few pixels so rows differ). Returns the folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / filename, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for i in range(n_rows):
            crop = fer_crop(faces[i % len(faces)], shift=(i // len(faces)) % 5 - 2)
            w.writerow([i % 7, pixel_string(crop), FER2013_USAGE_CYCLE[i % len(FER2013_USAGE_CYCLE)]])
    return root


#: Default FER+ rows: (Usage, Image name, 10 vote counts in fer2013new.csv column order
#: neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF), and the
#: expected outcome: a canonical class name, or "skip" (tie/unknown/NF/dropped), or
#: "tie:<first class>" for a tie that ``tie="first"`` resolves.
FERPLUS_ROWS = (
    ("Training", "fer0000000.png", (0, 8, 1, 0, 0, 0, 0, 0, 1, 0), "happiness"),
    ("Training", "fer0000001.png", (6, 1, 1, 1, 0, 0, 0, 1, 0, 0), "neutral"),
    ("Training", "fer0000002.png", (4, 0, 4, 1, 0, 0, 0, 0, 1, 0), "tie:neutral"),
    ("Training", "fer0000003.png", (1, 1, 0, 0, 0, 0, 0, 0, 7, 1), "skip"),      # unknown
    ("Training", "fer0000004.png", (0, 0, 0, 0, 0, 0, 0, 0, 1, 9), "skip"),      # not a face
    ("Training", "", (0, 0, 0, 0, 0, 0, 0, 0, 0, 0), "skip"),                     # dropped by FER+
    ("Training", "fer0000006.png", (1, 0, 0, 0, 6, 2, 0, 1, 0, 0), "anger"),
    ("Training", "fer0000007.png", (2, 0, 0, 0, 1, 0, 0, 5, 2, 0), "contempt"),
    ("PublicTest", "fer0000008.png", (2, 0, 0, 7, 0, 0, 1, 0, 0, 0), "sadness"),
    ("PublicTest", "fer0000009.png", (0, 4, 0, 0, 0, 0, 0, 0, 4, 2), "tie:happiness"),
    ("PrivateTest", "fer0000010.png", (0, 0, 3, 0, 0, 0, 6, 0, 1, 0), "fear"),
    ("PrivateTest", "fer0000011.png", (0, 0, 0, 0, 3, 6, 0, 1, 0, 0), "disgust"),
    ("PrivateTest", "fer0000012.png", (1, 0, 8, 0, 0, 0, 1, 0, 0, 0), "surprise"),
)


def make_ferplus(root, faces: Sequence[np.ndarray], rows=FERPLUS_ROWS, pixels_beside: bool = True) -> Path:
    """``ROOT/fer2013new.csv`` (FER+ votes) and ``ROOT/fer2013.csv`` (pixels), aligned
    row by row. ``rows`` as :data:`FERPLUS_ROWS` (the 4th field is ignored). With
    ``pixels_beside=False`` the pixel file goes to ``ROOT/pixels/fer2013.csv`` (for the
    ``fer2013_csv=`` option). Returns the folder."""
    from ferdata.labels import FERPLUS_COLUMNS

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    pix_dir = root if pixels_beside else root / "pixels"
    pix_dir.mkdir(parents=True, exist_ok=True)
    fer_codes = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4,
                 "surprise": 5, "neutral": 6, "contempt": 6}
    with open(root / "fer2013new.csv", "w", newline="") as f, \
            open(pix_dir / "fer2013.csv", "w", newline="") as g:
        wf, wg = csv.writer(f), csv.writer(g)
        wf.writerow(["Usage", "Image name", *FERPLUS_COLUMNS, "unknown", "NF"])
        wg.writerow(["emotion", "pixels", "Usage"])
        for i, (usage, name, votes, *_rest) in enumerate(rows):
            wf.writerow([usage, name, *votes])
            top = FERPLUS_COLUMNS[int(np.argmax(votes[:8]))]
            crop = fer_crop(faces[i % len(faces)], shift=(i // len(faces)) % 5 - 2)
            wg.writerow([fer_codes[top], pixel_string(crop), usage])
    return root


# --------------------------------------------------------------------------- JAFFE

JAFFE_CODES = ("AN", "DI", "FE", "HA", "NE", "SA", "SU")


def make_jaffe(root, faces: Sequence[np.ndarray], subjects: Sequence[str] = ("KA", "KL", "KM"),
               codes: Sequence[str] = JAFFE_CODES, repeats: int = 1, subfolder: str = "jaffedbase",
               size: int = 256) -> Path:
    """JAFFE files ``ROOT/<subfolder>/KA.AN1.39.tiff`` (256×256 gray TIFF), one per
    subject × code × repeat, with a running image index; plus a README (ignored).
    Returns ``ROOT`` (the reader searches subfolders)."""
    root = Path(root)
    folder = root / subfolder if subfolder else root
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README").write_text("JAFFE fixture\n")
    cache: dict = {}
    imgs = [_fit(f, face_landmarks(f), (size, size), gray=True)[0] for f in faces]
    idx = 1
    for s, subj in enumerate(subjects):
        for c, code in enumerate(codes):
            for r in range(repeats):
                img = imgs[(s + c + r) % len(imgs)]
                _write(folder / f"{subj}.{code}{r + 1}.{idx}.tiff", img, cache)
                idx += 1
    return root


# --------------------------------------------------------------------------- BU-3DFE

BU3DFE_CODES = ("AN", "DI", "FE", "HA", "SA", "SU")


def make_bu3dfe(root, faces: Sequence[np.ndarray], subjects: Sequence[str] = ("F0001", "M0002"),
                codes: Sequence[str] = BU3DFE_CODES, intensities: Sequence[int] = (1, 2, 3, 4),
                races: Sequence[str] = ("WH", "AE"), size: int = 512, extra_files: bool = True) -> Path:
    """BU-3DFE tree ``ROOT/F0001/F0001_AN01WH_F2D.bmp``: per subject a neutral
    ``NE00`` face and every code × intensity (25 images with the defaults), RGB BMP
    ``size``×``size``; with ``extra_files`` also ``*_F3D.bmp`` / ``*_F3D.wrl`` siblings
    that the reader must ignore."""
    root = Path(root)
    cache: dict = {}
    imgs = [_fit(f, face_landmarks(f), (size, size))[0] for f in faces]
    for s, subj in enumerate(subjects):
        race = races[s % len(races)]
        names = [f"{subj}_NE00{race}"] + [f"{subj}_{c}{k:02d}{race}" for c in codes for k in intensities]
        for n, name in enumerate(names):
            img = imgs[(s + n) % len(imgs)]
            _write(root / subj / f"{name}_F2D.bmp", img, cache)
            if extra_files and n == 0:
                _write(root / subj / f"{name}_F3D.bmp", img, cache)
                (root / subj / f"{name}_F3D.wrl").write_text("#VRML V2.0 utf8\n")
    return root


# --------------------------------------------------------------------------- RaFD

RAFD_EXPRESSIONS = ("angry", "contemptuous", "disgusted", "fearful", "happy", "neutral", "sad", "surprised")


def make_rafd(root, faces: Sequence[np.ndarray], n_subjects: int = 2, angles: Sequence[int] = (90, 45),
              gazes: Sequence[str] = ("frontal", "left"), expressions: Sequence[str] = RAFD_EXPRESSIONS,
              size=(512, 400)) -> Path:
    """RaFD files ``ROOT/Rafd090_01_Caucasian_female_angry_frontal.jpg`` for every
    subject × angle × gaze × expression (64 with the defaults). ``size`` is (h, w)."""
    root = Path(root)
    cache: dict = {}
    imgs = [_fit(f, face_landmarks(f), size)[0] for f in faces]
    ethnic, gender = ("Caucasian", "Moroccan", "Kid"), ("female", "male")
    for s in range(n_subjects):
        for a in angles:
            for g in gazes:
                for e, expr in enumerate(expressions):
                    img = imgs[(s + e) % len(imgs)]
                    name = f"Rafd{a:03d}_{s + 1:02d}_{ethnic[s % 3]}_{gender[s % 2]}_{expr}_{g}.jpg"
                    _write(root / name, img, cache)
    return root


# --------------------------------------------------------------------------- AffectNet

AFFECTNET_HEADER = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                    "facial_landmarks", "expression", "valence", "arousal")


def make_affectnet(root, faces: Sequence[np.ndarray], n_train: int = 10, n_val: int = 4,
                   non_faces: Sequence[int] = (8, 9, 10), lists_dir: str = "Manually_Annotated_file_lists",
                   images_dir: str = "Manually_Annotated_Images") -> Path:
    """AffectNet tree: ``ROOT/<lists_dir>/training.csv`` and ``validation.csv``,
    images ``ROOT/<images_dir>/<n>/<sha1>.jpg``. Training row i has expression ``i % 8``;
    validation row i has ``(i + 3) % 8``; ``non_faces`` codes are appended to the
    training csv (image files present) and must be skipped. Box and landmarks come
    from the face's landmarks."""
    root = Path(root)
    cache: dict = {}
    lists = root / lists_dir if lists_dir else root
    lists.mkdir(parents=True, exist_ok=True)
    k = 0

    def rows(codes):
        nonlocal k
        out = []
        for code in codes:
            face = faces[k % len(faces)]
            pts = face_landmarks(face)
            lo, hi = pts.min(0), pts.max(0)
            pad = 0.15 * (hi - lo)
            x, y = np.maximum(0, np.floor(lo - pad)).astype(int)
            w, h = np.ceil(hi - lo + 2 * pad).astype(int)
            name = hashlib.sha1(f"affectnet-{k}".encode()).hexdigest() + ".jpg"
            rel = f"{k % 3 + 1}/{name}"
            _write(root / images_dir / rel, face, cache)
            lmk = ";".join(f"{v:.2f}" for v in pts.ravel())
            out.append([rel, x, y, w, h, lmk, code, f"{0.1 * (code % 5):.4f}", f"{-0.1 * (code % 3):.4f}"])
            k += 1
        return out

    for name, codes in (("training.csv", [i % 8 for i in range(n_train)] + list(non_faces)),
                        ("validation.csv", [(i + 3) % 8 for i in range(n_val)])):
        with open(lists / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(AFFECTNET_HEADER)
            w.writerows(rows(codes))
    return root


# --------------------------------------------------------------------------- folder

def make_folder(root, faces: Sequence[np.ndarray], classes: Sequence[str] = ("happy", "sad", "neutral", "angry"),
                n_per_class: int = 3, n_subjects: int = 2, splits: Optional[Sequence[str]] = None,
                ext: str = ".png", size: Optional[int] = 256) -> Path:
    """``ROOT/<class>/S01_<class>_000.png`` (or ``ROOT/<split>/<class>/...`` when
    ``splits`` is given), ``n_per_class`` images per class (per split), subjects
    ``S01..`` cycling so that ``subject_regex=r"^(S\\d+)_"`` recovers them."""
    root = Path(root)
    cache: dict = {}
    imgs = [(_fit(f, face_landmarks(f), (size, size))[0] if size else f) for f in faces]
    for split in (splits or [None]):
        base = root / split if split else root
        for c, cls in enumerate(classes):
            for i in range(n_per_class):
                img = imgs[(c + i) % len(imgs)]
                _write(base / cls / f"S{i % n_subjects + 1:02d}_{cls}_{i:03d}{ext}", img, cache)
    return root
