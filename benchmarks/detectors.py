"""HOG vs CNN vs auto face detection: faces found and seconds per face.

    python benchmarks/detectors.py [--lfw 100]

Sets (all offline, real faces):
- ``lfw48``: the first N real faces of scikit-image's LFW subset (25×25 gray,
  tight crops) upscaled to 48×48 like FER2013 rows; detected as ingest does for
  pre-cropped faces with ``--detect-aligned`` (upsample 2, no retry). Its 100
  non-face patches count false detections.
- the four sample faces (astronaut, Grace Hopper, mirrors) degraded: rotated
  ±30° / ±40° / ±45°, eyes covered (sunglasses band), mouth and nostrils covered (mask),
  small (eye distance ~15 px), FER-style 48×48 crops (5 shifts each);
  detected as ingest does (upsample 0, retry 1). A detection counts when its
  box holds the true eye midpoint; for those the error of the predicted eye
  midpoint is reported with and without the de-rotated refinement.
"""
import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fixtures import dataset_fixtures as fx  # noqa: E402
from fixtures import fixtures_wild as fw  # noqa: E402

from ferdata.errors import NoFaceError  # noqa: E402
from ferdata.faces.landmarks import locate_face  # noqa: E402


def _rotate(img, pts, deg):
    h, w = img.shape[:2]
    M = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return cv2.warpAffine(img, M, (w, h), borderMode=cv2.BORDER_REPLICATE), pts @ M[:, :2].T + M[:, 2]


def _cover(img, pts, idx, pad):
    out = img.copy()
    lo, hi = pts[idx].min(0) - pad, pts[idx].max(0) + pad
    out[int(lo[1]):int(hi[1]), int(lo[0]):int(hi[0])] = 30
    return out


def degraded_sets():
    sets = {k: [] for k in ("rotated 30", "rotated -30", "rotated 40", "rotated -40", "rotated 45", "rotated -45",
                            "eyes covered", "mouth covered", "small", "fer48")}
    for face in fx.sample_faces():
        img, pts = fw.portrait(face, (240, 180))
        for deg in (30, 40, 45):
            sets[f"rotated {deg}"].append(_rotate(img, pts, deg))
            sets[f"rotated -{deg}"].append(_rotate(img, pts, -deg))
        sets["eyes covered"].append((_cover(img, pts, list(range(36, 48)), 6), pts))
        sets["mouth covered"].append((_cover(img, pts, list(range(31, 36)) + list(range(48, 68)), 4), pts))
        s = 0.33
        sets["small"].append((cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA), pts * s))
        for shift in range(-2, 3):
            crop = fx.fer_crop(face, shift=shift)
            sets["fer48"].append((crop, None))
    return sets


def lfw_sets(n):
    import skimage.data

    x = (skimage.data.lfw_subset() * 255).round().astype(np.uint8)
    up = [cv2.resize(a, (48, 48), interpolation=cv2.INTER_CUBIC) for a in x]
    return {"lfw48 faces": [(a, None) for a in up[:n]], "lfw48 non-faces": [(a, None) for a in up[100:100 + n]]}


def run(items, detector, upsample, retry, refine=True):
    """(faces found, seconds per face, mean eye-midpoint error in px of the found faces)."""
    found, errs, t0 = 0, [], time.perf_counter()
    for img, pts in items:
        try:
            f = locate_face(img, upsample, retry, detector, refine=refine)
        except NoFaceError:
            continue
        if pts is None:
            found += 1
            continue
        eye = pts[36:48].mean(0)
        x, y, w, h = f.box
        ok = x <= eye[0] <= x + w and y <= eye[1] <= y + h
        found += int(ok)
        if ok:
            errs.append(float(np.hypot(*(f.landmarks[36:48].mean(0) - eye))))
    return found, (time.perf_counter() - t0) / len(items), (np.mean(errs) if errs else float("nan"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lfw", type=int, default=100, help="LFW faces (and non-faces); 0: none")
    args = ap.parse_args()
    locate_face(fx.sample_faces()[0], detector="cnn")  # load every model first
    sets = {**(lfw_sets(args.lfw) if args.lfw else {}), **degraded_sets()}
    print("| set | n | HOG found | CNN found | auto found | HOG s/face | CNN s/face | auto s/face "
          "| auto eye error px: first pass → refined |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, items in sets.items():
        tiny = items[0][0].shape[0] <= 48
        up, retry = (2, None) if tiny else (0, 1)
        res = [run(items, d, up, retry) for d in ("hog", "cnn", "auto")]
        err = "–"
        if items[0][1] is not None:
            err = f"{run(items, 'auto', up, retry, refine=False)[2]:.1f} → {res[2][2]:.1f}"
        print(f"| {name} | {len(items)} | " + " | ".join(str(r[0]) for r in res) + " | "
              + " | ".join(f"{r[1]:.3f}" for r in res) + f" | {err} |", flush=True)


if __name__ == "__main__":
    main()
