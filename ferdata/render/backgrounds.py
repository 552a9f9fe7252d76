"""Backgrounds for rendering: COCO (via pycocotools), a plain folder, the sample set.

A :class:`BackgroundSource` is a list of image ids plus a way to load each; the
renderer picks ``ids[rng.integers(len(ids))]`` so the choice depends only on the
per-sample generator, and each worker keeps decoded images in an LRU cache
instead of decoding a JPEG per sample.
"""
from __future__ import annotations

import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from ..errors import FerdataError

log = logging.getLogger(__name__)
PERSON = 1
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# Public-domain / CC0 photos that scikit-image ships, none with a face; 'camera'
# (the cameraman) is added with a person annotation so the default filter (no
# person) is exercised and excludes it.
SAMPLE_BACKGROUNDS = (
    ("coffee", [(47, "cup")]), ("chelsea", [(17, "cat")]), ("rocket", []),
    ("hubble_deep_field", []), ("immunohistochemistry", []), ("colorwheel", []),
    ("brick", []), ("grass", []), ("gravel", []), ("moon", []), ("coins", []),
    ("clock", [(85, "clock")]), ("retina", []), ("cell", []), ("camera", [(1, "person")]),
)
SAMPLE_SPLIT = "sample"


def make_sample_backgrounds(root) -> Path:
    """Write the sample backgrounds as a COCO-format folder; returns ``root``.

    Layout: ``root/annotations/instances_sample.json`` and ``root/sample/<name>.jpg``.
    """
    import skimage.data

    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / SAMPLE_SPLIT).mkdir(parents=True, exist_ok=True)
    images, anns, cats = [], [], {}
    for i, (name, objects) in enumerate(SAMPLE_BACKGROUNDS, start=1):
        img = getattr(skimage.data, name)()
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = img[..., :3]
        h, w = img.shape[:2]
        fn = f"{name}.jpg"
        cv2.imwrite(str(root / SAMPLE_SPLIT / fn), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
        images.append({"id": i, "file_name": fn, "width": w, "height": h, "license": 0,
                       "source": f"skimage.data.{name}()"})
        for cid, cname in objects:
            cats[cid] = cname
            bw, bh = w // 2, h // 2
            x, y = w // 4, h // 4
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cid, "iscrowd": 0,
                         "bbox": [x, y, bw, bh], "area": float(bw * bh),
                         "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]})
    coco = {
        "info": {"description": "ferdata sample backgrounds (scikit-image data, public domain/CC0)"},
        "licenses": [{"id": 0, "name": "public domain / CC0 (scikit-image data)"}],
        "images": images, "annotations": anns,
        "categories": [{"id": k, "name": v, "supercategory": v} for k, v in sorted(cats.items())],
    }
    (root / "annotations" / f"instances_{SAMPLE_SPLIT}.json").write_text(json.dumps(coco))
    return root


def _cat_ids(coco, annotation_file, spec) -> list:
    out = []
    for c in spec:
        if isinstance(c, (int, np.integer)) or str(c).isdigit():
            out.append(int(c))
        else:
            ids = coco.getCatIds(catNms=[str(c)])
            if not ids:
                raise FerdataError(f"{annotation_file}: unknown category {c!r}")
            out += ids
    return out


def _filter_ids(coco, annotation_file, include_categories, exclude_categories) -> set:
    """Image ids left after the category filters (a json without annotations cannot be filtered)."""
    if (include_categories or exclude_categories) and "annotations" not in coco.dataset:
        raise FerdataError(
            f"{annotation_file}: has no 'annotations' list, so images with category "
            f"{', '.join(map(str, exclude_categories or include_categories))} cannot be filtered "
            f"(default: no person, i.e. no second face); use the instances_*.json with annotations, "
            f"or turn filtering off explicitly (--set exclude_categories=[])")
    ids = set(coco.getImgIds())
    if include_categories:
        keep = set()
        for c in _cat_ids(coco, annotation_file, include_categories):
            keep |= set(coco.getImgIds(catIds=[c]))
        ids &= keep
    for c in _cat_ids(coco, annotation_file, exclude_categories):
        ids -= set(coco.catToImgs.get(c, []))
    return ids


class BackgroundSource:
    """Background images addressed by integer id.

    Build with :meth:`from_coco`, :meth:`from_folder` or :meth:`from_path`.
    """

    def __init__(self, ids: Sequence[int], paths: dict, description: str, cache_size: int = 256,
                 max_side: Optional[int] = None):
        if len(ids) == 0:
            raise FerdataError(f"{description}: no background image left after filtering")
        self.ids = np.asarray(sorted(ids), np.int64)
        self.paths = paths
        self.description = description
        self.cache_size = cache_size
        self.max_side = max_side
        self._cache: OrderedDict = OrderedDict()

    def __len__(self):
        return len(self.ids)

    def __getstate__(self):  # do not pickle the decoded cache to workers
        d = dict(self.__dict__)
        d["_cache"] = OrderedDict()
        return d

    def load(self, image_id: int) -> np.ndarray:
        """Decoded RGB uint8 image (cached per process)."""
        image_id = int(image_id)
        img = self._cache.get(image_id)
        if img is not None:
            self._cache.move_to_end(image_id)
            return img
        path = self.paths[image_id]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FerdataError(f"{path}: background image missing or unreadable "
                               f"(listed as id {image_id} in {self.description})")
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if self.max_side and max(img.shape[:2]) > self.max_side:
            s = self.max_side / max(img.shape[:2])
            img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        self._cache[image_id] = img
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return img

    @classmethod
    def from_coco(cls, root, split: Optional[str] = None, annotation_file=None,
                  exclude_categories: Sequence = (PERSON,), include_categories: Sequence = (),
                  check_files: bool = True, **kw) -> "BackgroundSource":
        """COCO images via pycocotools.

        Parameters
        ----------
        root : path
            COCO root holding ``annotations/instances_<split>.json`` and ``<split>/``.
        split : str
            e.g. ``train2017``; if None, the only ``instances_*.json`` in annotations/.
        exclude_categories : ids or names
            Drop images with any of these categories (default: person, so no second face).
        include_categories : ids or names
            If given, keep only images with at least one of these.
        """
        root = Path(root)
        if not root.is_dir():
            raise FerdataError(f"{root}: COCO folder does not exist")
        if annotation_file is None:
            ann_dir = root / "annotations"
            if split is None:
                cands = sorted(ann_dir.glob("instances_*.json"))
                if len(cands) != 1:
                    raise FerdataError(f"{ann_dir}: expected one instances_<split>.json, found "
                                       f"{len(cands)}; pass the split (e.g. --coco-split train2017)")
                annotation_file = cands[0]
                split = annotation_file.stem[len("instances_"):]
            else:
                annotation_file = ann_dir / f"instances_{split}.json"
        annotation_file = Path(annotation_file)
        if not annotation_file.exists():
            raise FerdataError(f"{annotation_file}: COCO annotation file does not exist")
        image_dir = root / split if split else root
        from pycocotools.coco import COCO
        import contextlib
        import io

        try:
            with contextlib.redirect_stdout(io.StringIO()):
                coco = COCO(str(annotation_file))
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            raise FerdataError(f"{annotation_file}: not a valid COCO annotation file ({exc})") from exc

        ids = _filter_ids(coco, annotation_file, include_categories, exclude_categories)
        paths = {}
        for i in ids:
            name = coco.imgs[i].get("file_name")
            if not isinstance(name, str) or not name:
                raise FerdataError(f"{annotation_file}: image id {i} has no file_name")
            paths[i] = image_dir / name
        if check_files:
            missing = [p for p in paths.values() if not p.exists()]
            if missing:
                raise FerdataError(f"{missing[0]}: image listed in {annotation_file} does not exist "
                                   f"({len(missing)} missing in all)")
        return cls(sorted(ids), paths, f"COCO {annotation_file}", **kw)

    @classmethod
    def from_folder(cls, folder, **kw) -> "BackgroundSource":
        """Every image file under ``folder`` (sorted paths; ids are positions)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FerdataError(f"{folder}: background folder does not exist")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        paths = {i: p for i, p in enumerate(files)}
        return cls(list(paths), paths, f"folder {folder}", **kw)

    @classmethod
    def from_path(cls, path, split=None, **kw) -> "BackgroundSource":
        """A COCO root (has ``annotations/``) or a plain image folder."""
        path = Path(path)
        if (path / "annotations").is_dir():
            return cls.from_coco(path, split, **kw)
        kw.pop("exclude_categories", None)
        kw.pop("include_categories", None)
        return cls.from_folder(path, **kw)

