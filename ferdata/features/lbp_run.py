"""``ferdata lbp PATH``: one call that adds LBP codes to whatever PATH is.

A render folder (``manifest.json``), one of its shards, a face store or any HDF5 file
with ``image``, or a folder of images (PNG code images written under ``out``). The
command line only sets threads and draws the progress (``docs/lbp.md``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import FerdataError
from ..shards.manifest import load_manifest
from .lbp import dataset_name
from .lbp_io import add_lbp_to_h5, lbp_image_folder
from .lbp_shards import add_lbp_to_shards

Start = Callable[[Optional[int], str], Callable[[int], None]]


def target_kind(path) -> Optional[str]:
    """``"shards"`` (a render folder), ``"images"`` (any other folder), ``"h5"`` or None."""
    path = Path(path)
    if path.is_dir():
        return "shards" if (path / "manifest.json").exists() else "images"
    return "h5" if path.suffix.lower() in (".h5", ".hdf5") else None


def add_lbp(path, variant: str = "circle", P: int = 8, R: float = 1.0, *, out=None, workers: int = 1,
            start: Optional[Start] = None, status: Optional[Callable[[str], None]] = None) -> dict:
    """Add codes ``lbp/<variant>_P<P>_R<R>`` to ``path`` (or write PNGs to ``out`` for an image folder).

    ``start(total, unit)`` is called once the kind of ``path`` is known and returns the
    progress callback (items done). ``status(text)`` is told what the run waits for before
    the first item (``compiling LBP kernels`` on a fresh kernel cache). Returns ``{"kind": "shards"|"h5"|"images", "name":
    dataset name, ...counts}``. A failure after some shards were done raises with
    ``exc.result`` holding the per-shard outcome so far.
    """
    name = dataset_name(variant, P, R)  # ValueError for bad P/R
    path = Path(path)
    start = start or (lambda total, unit: None)
    kind = target_kind(path)
    if kind == "images":
        if not out:
            raise FerdataError(f"{path}: an image folder needs an output folder for the code images (out)")
        res = lbp_image_folder(path, out, variant, P, R, workers=workers, progress=start(None, "img"))
        return {"kind": "images", "name": name, **res}
    if kind not in ("shards", "h5"):
        raise FerdataError(f"{path}: expected a shard folder, a face store (.h5) or an image folder")
    _no_out(out, path)
    one_shard = kind == "h5" and _listed_shard(path)  # one shard of a render folder: keep its manifest right
    folder = path if kind == "shards" else path.parent if one_shard else None
    _kernel_ahead(path, folder, path.name if one_shard else None, (variant, P, R), status or (lambda text: None))
    if folder is not None:
        return _shards(folder, variant, P, R, workers, name, [path.name] if one_shard else None, start)
    added = add_lbp_to_h5(path, variant, P, R, progress=start(_h5_images(path), "img"), threads=workers)
    return {"kind": "h5", "name": name, "added": added}


def _kernel_ahead(path, folder, shard, spec, status) -> None:
    """Make the first block's kernel ready (loaded from numba's cache, or compiled: then
    ``status`` says so) before the first shard is read. ``folder``: a render folder (its
    first shard, or ``shard``); None: ``path`` is a face store.

    Waited for here, not overlapped with the first block: loading is GIL-bound Python,
    and the decode threads, which need the GIL between JPEGs, each waited out the
    interpreter's 5 ms switch interval behind it (the first block took 0.6-0.9 s instead
    of 0.2 s; the whole README-render run was 0.4-0.6 s slower, docs/lbp.md)."""
    from .lbp import needs_compile
    from .lbp_h5 import compile_ahead

    shape = _first_block(path, folder, shard)
    if shape is None:
        return
    if needs_compile(*spec, np.uint8, shape):
        status("compiling LBP kernels, first run only")
    compile_ahead(*spec, shape).result()


def _first_block(path, folder, shard) -> Optional[tuple]:
    """The (n, H, W) of the first block :func:`ferdata.features.lbp_h5.lbp_copy` will code, or None."""
    import h5py

    from .lbp_h5 import BLOCK, block_bounds

    try:
        if folder is None:
            with h5py.File(path, "r") as f:
                n, size = len(f["image"]), f["image"].shape[1]
        else:
            m = load_manifest(folder)
            name = shard or min(m["shards"], default=None)
            if name is None or "size" not in m:
                return None
            n, size = int(m["shards"][name]["n"]), int(m["size"])
        a, b = block_bounds(n, BLOCK)[0] if n else (0, 0)
    except (OSError, KeyError, ValueError, RuntimeError):
        return None   # the run itself reports what is wrong with the file
    return (b - a, size, size) if b > a else None


def _no_out(out, path: Path) -> None:
    if out:
        raise FerdataError(f"{path}: an output folder (out) is only for an image-folder input")


def _h5_images(path: Path) -> Optional[int]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return len(f["image"]) if "image" in f and "image_offsets" not in f else None
    except (OSError, RuntimeError) as exc:
        raise FerdataError(f"{path}: cannot read as HDF5 ({exc})") from exc


def _listed_shard(path: Path) -> bool:
    if not (path.parent / "manifest.json").exists():
        return False
    return path.name in load_manifest(path.parent)["shards"]


def _shards(folder: Path, variant, P, R, workers, name, only, start) -> dict:
    listed = load_manifest(folder)["shards"]
    n = sum(int(e.get("n", 0)) for s, e in listed.items() if not only or s in only)
    res = add_lbp_to_shards(folder, variant, P, R, workers=workers, progress=start(n, "img"), only=only)
    added = sum(res.values())
    return {"kind": "shards", "name": name, "added": added, "present": len(res) - added}
