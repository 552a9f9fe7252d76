"""LBP on files: add ``lbp/<variant>`` datasets to face stores and shards, or write PNGs.

Codes are computed on the gray image ``cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)``
(ITU-R BT.601 luma, ``Y = 0.299 R + 0.587 G + 0.114 B``, OpenCV's rounded
fixed-point path for uint8). Every file is changed atomically: a copy is written
next to it as ``<name>.tmp-<host>-<pid>``, fsynced and renamed over the original, so a
crash leaves either the old or the new file and a rerun skips what is done. Shard
folders: :mod:`ferdata.features.lbp_shards`.
"""
from __future__ import annotations

import glob
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import FerdataError
from ..atomic import atomic_save, file_lock, publish, remove_dead_temps, write_json_atomic
from .lbp import code_dtype, dataset_name, lbp
from .lbp_h5 import BLOCK, GRAY, _lbp_attrs, lbp_copy, to_gray
from .lbp_shards import add_lbp_to_shards

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

__all__ = ["GRAY", "to_gray", "lbp_copy", "add_lbp_to_h5", "add_lbp_to_shards", "lbp_image_folder", "lbp_figure"]


def add_lbp_to_h5(path, variant: str = "circle", P: int = 8, R: float = 1.0, *,
                  block: int = BLOCK, progress=None, threads: int = 1) -> bool:
    """Add the codes of every image of an HDF5 file as dataset ``lbp/<variant>_P<P>_R<R>``.

    Works on a face store (``image (N,S,S,3) uint8`` RGB) and on a shard (raw or
    JPEG images, read with :func:`ferdata.shards.reader.read_images`). The new
    dataset is ``(N,H,W)`` of :func:`~ferdata.features.lbp.code_dtype`, laid out like
    ``image`` (chunked one image per chunk in a face store, contiguous in a shard),
    with attrs ``variant``, ``P``, ``R``, ``gray``, ``ferdata_version``.
    For the shards of a render folder use :func:`add_lbp_to_shards`, which also keeps
    the manifest right.

    Parameters
    ----------
    path : str or Path
        The HDF5 file; changed atomically (copy, add, fsync, rename) while holding
        the lock ``<path>.lock``, so two runs on one file serialise instead of one
        losing the other's dataset. This host's temps of killed runs are removed.
    variant, P, R
        As for :func:`ferdata.features.lbp`.
    block : int
        Images read and coded at a time.
    progress : callable, optional
        Called with the number of images done after each block.
    threads : int
        JPEG decode threads (the kernels run on numba's threads).

    Returns
    -------
    added : bool
        False if the dataset was already there (nothing is written).
    """
    path = Path(path)
    name = dataset_name(variant, P, R)
    with file_lock(path):
        remove_dead_temps(path.parent, f"{glob.escape(path.name)}.tmp-*")
        if _has_dataset(path, name):
            return False
        tmp = lbp_copy(path, variant, P, R, block=block, progress=progress, threads=threads)
        try:
            publish(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return True


def _has_dataset(path: Path, name: str) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "image" not in f:
                raise FerdataError(f"{path}: no 'image' dataset (not a face store or shard)")
            return name in f
    except (OSError, RuntimeError) as exc:
        raise FerdataError(f"{path}: cannot read as HDF5 ({exc})") from exc


def _read_gray(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FerdataError(f"{path}: cannot read as an image")
    if img.ndim == 3:
        code = {3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}.get(img.shape[2])
        if code is None:
            raise FerdataError(f"{path}: cannot make a gray image from {img.shape[2]} channels")
        img = cv2.cvtColor(img, code)  # same weights as RGB2GRAY on the RGB image
    return img


def _write_png(path: Path, codes: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)

    def save(tmp):
        if not cv2.imwrite(str(tmp), codes):
            raise FerdataError(f"{path}: cannot write PNG")

    atomic_save(path, save)


def lbp_image_folder(src, out, variant: str = "circle", P: int = 8, R: float = 1.0, *,
                     workers: int = 1, progress=None) -> dict:
    """Write the codes of every image under ``src`` as ``out/<relative path>.png``.

    The suffix of each image is replaced by ``.png`` (``a/b.jpg`` -> ``out/a/b.png``);
    codes are 8-bit PNGs, or 16-bit where a code exceeds 255 (``circle``/``ror`` with
    9 <= P <= 16, ``nri_uniform`` with P >= 17). Existing outputs are skipped, each
    PNG is written to a temporary name and renamed, and ``out/lbp.json`` records the
    settings. Images are read and written by ``workers`` threads.

    Returns ``{"written": int, "skipped": int}``.
    """
    src, out = Path(src), Path(out)
    dt = code_dtype(variant, P)
    if dt.itemsize > 2:
        raise FerdataError(f"{variant} codes with P={P} exceed 16 bits and cannot be stored as PNG")
    if not src.is_dir():
        raise FerdataError(f"{src}: not a folder")
    out_abs = out.resolve()
    files = sorted(p for p in src.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and out_abs not in p.resolve().parents and not p.name.startswith("."))
    if not files:
        raise FerdataError(f"{src}: no images ({', '.join(IMAGE_SUFFIXES)})")
    dst = {}
    for p in files:
        d = out / p.relative_to(src).with_suffix(".png")
        if d in dst:
            raise FerdataError(f"{p} and {dst[d]} would both be written to {d}")
        dst[d] = p
    todo = [(p, d) for d, p in dst.items() if not d.exists()]
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(_lbp_attrs(variant, P, R), source=str(src), dataset=dataset_name(variant, P, R))
    write_json_atomic(out / "lbp.json", cfg)
    if progress is not None and len(files) > len(todo):
        progress(len(files) - len(todo))
    with ThreadPoolExecutor(max(1, int(workers))) as ex:
        for a in range(0, len(todo), 256):  # bounded read-ahead
            part = todo[a:a + 256]
            writes = [ex.submit(_write_png, d, lbp(gray, variant, P, R))
                      for (_, d), gray in zip(part, ex.map(_read_gray, [p for p, _ in part]))]
            for w in writes:
                w.result()
                if progress is not None:
                    progress(1)
    return {"written": len(todo), "skipped": len(files) - len(todo)}


def lbp_figure(images, path, P: int = 8, R: float = 1.0,
               variants=("original", "circle", "uniform"), titles=None):
    """Save a PNG: each image (a row) beside its codes for ``variants`` (columns).

    ``images`` is one gray/RGB uint8 image or a list of them; the codes are computed
    on the gray image (:func:`to_gray`). ``original`` and ``circle`` codes are shown
    in gray levels (0..2**P-1), ``uniform`` and the others in a colour map over
    their codes. Uses matplotlib's Agg canvas (no display needed), like
    seed 001's Figure 7 (image, circle, original, uniform LBP).
    """
    from matplotlib.figure import Figure

    from .lbp import n_bins

    if isinstance(images, np.ndarray):
        images = [images]
    rows = len(images)
    fig = Figure(figsize=(2.0 * (len(variants) + 1), 2.1 * rows), layout="constrained")
    axes = fig.subplots(rows, len(variants) + 1, squeeze=False)
    for i, img in enumerate(images):
        img = np.asarray(img)
        gray = img if img.ndim == 2 else to_gray(img[None])[0]
        axes[i, 0].imshow(img if img.ndim == 3 else gray, cmap=None if img.ndim == 3 else "gray")
        axes[i, 0].set_title(titles[i] if titles else "image", fontsize=9)
        for j, v in enumerate(variants, 1):
            pp, rr = (8, 1.0) if v == "original" else (P, R)
            codes = lbp(gray, v, pp, rr)
            gray_levels = v in ("original", "circle")
            axes[i, j].imshow(codes, cmap="gray" if gray_levels else "viridis",
                              vmin=0, vmax=n_bins(v, pp) - 1, interpolation="nearest")
            axes[i, j].set_title(v if v == "original" else f"{v} P={pp} R={rr:g}", fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return Path(path)
