"""``ferdata lbp``: add LBP codes to shards / a face store, or write code images."""
from __future__ import annotations

import os
from pathlib import Path

import click

from ferdata.errors import FerdataError

from ._common import progress


@click.command("lbp")
@click.argument("path", type=click.Path(exists=True), required=False)
@click.option("--variant", default="circle", show_default=True,
              type=click.Choice(["circle", "uniform", "original", "ror", "nri_uniform"]),
              help="circle = skimage 'default', uniform = riu2, original = 3x3 (seed 001).")
@click.option("-P", "P", type=int, default=8, show_default=True,
              help="Neighbours (1..32; 8 for original).")
@click.option("-R", "R", type=float, default=1.0, show_default=True,
              help="Radius in pixels (1 for original).")
@click.option("-o", "--out", "out", type=click.Path(file_okay=False),
              help="Output folder for the PNG code images (image-folder input only).")
@click.option("--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default="all cores",
              help="Shards: processes; face store: LBP threads; image folder: I/O and LBP threads.")
@click.option("--warmup", is_flag=True,
              help="Compile every LBP kernel now (cached on disk), so no later call waits; no PATH.")
def lbp_command(path, variant, P, R, out, workers, warmup):
    """Compute LBP codes of the gray images in PATH.

    \b
    PATH is one of:
      a shard folder (manifest.json + shard-*.h5): adds dataset lbp/<variant>_P<P>_R<R>
        (lbp/original for the 3x3 operator) of shape (n,H,W) to every shard;
      a face store (.h5 with 'image'): adds the same dataset;
      a folder of images: writes OUT/<relative path>.png (8-bit, 16-bit above 255).
    Gray = cv2 RGB2GRAY (0.299 R + 0.587 G + 0.114 B). Files are changed atomically
    and datasets/PNGs already present are skipped, so an interrupted run resumes.

    \b
      ferdata lbp shards/ --variant circle -P 8 -R 1
      ferdata lbp faces.h5 --variant uniform
      ferdata lbp photos/ --variant original -o lbp/
      ferdata lbp --warmup            # once after installing: compile and cache the kernels
    """
    import numba

    if warmup:
        if path:
            raise click.BadParameter("takes no PATH", param_hint="--warmup")
        return _warmup()
    if not path:
        raise click.BadParameter("missing (or use --warmup)", param_hint="PATH")

    from ferdata.features import add_lbp_to_h5, dataset_name, lbp_image_folder

    try:
        name = dataset_name(variant, P, R)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="-P/-R") from exc
    numba.set_num_threads(min(workers, numba.config.NUMBA_NUM_THREADS))
    path = Path(path)
    if path.is_dir() and (path / "manifest.json").exists():
        if out:
            raise click.BadParameter("only for an image-folder input", param_hint="--out")
        _shards(path, variant, P, R, workers, name)
    elif path.is_dir():
        if not out:
            raise click.BadParameter("required for an image-folder input", param_hint="--out")
        bar = progress(desc=f"lbp {name}", unit="img")
        try:
            res = lbp_image_folder(path, out, variant, P, R, workers=workers, progress=bar.update)
        finally:
            bar.close()
        click.echo(f"{out}: wrote {res['written']} code images, skipped {res['skipped']} present")
    elif path.suffix.lower() in (".h5", ".hdf5"):
        if out:
            raise click.BadParameter("only for an image-folder input", param_hint="--out")
        if _listed_shard(path):  # one shard of a render folder: keep its manifest entry right
            return _shards(path.parent, variant, P, R, workers, name, only=[path.name])
        import h5py

        try:
            with h5py.File(path, "r") as f:
                n = len(f["image"]) if "image" in f and "image_offsets" not in f else None
        except (OSError, RuntimeError) as exc:
            raise FerdataError(f"{path}: cannot read as HDF5 ({exc})") from exc
        bar = progress(total=n, desc=f"lbp {name}", unit="img")
        try:
            added = add_lbp_to_h5(path, variant, P, R, progress=bar.update)
        finally:
            bar.close()
        click.echo(f"{path}: {name} {'added' if added else 'already present, skipped'}")
    else:
        raise click.BadParameter("expected a shard folder, a face store (.h5) or an image folder",
                                 param_hint="PATH")


def _warmup() -> None:
    from ferdata.features.lbp import warmup

    total = warmup(lambda what, sec: click.echo(f"{sec:7.2f} s  {what}"))
    click.echo(f"LBP kernels ready in {total:.1f} s (cached on disk for later processes)")


def _listed_shard(path: Path) -> bool:
    from ferdata.shards.manifest import load_manifest

    if not (path.parent / "manifest.json").exists():
        return False
    return path.name in load_manifest(path.parent)["shards"]


def _shards(folder: Path, variant, P, R, workers, name, only=None) -> None:
    from ferdata.features import add_lbp_to_shards
    from ferdata.shards.manifest import load_manifest

    n = len(only) if only else len(load_manifest(folder)["shards"])
    bar = progress(total=n, desc=f"lbp {name}", unit="shard")
    try:
        res = add_lbp_to_shards(folder, variant, P, R, workers=workers, progress=bar.update, only=only)
    except FerdataError as exc:
        bar.close()
        res = getattr(exc, "result", None)
        if res:
            added = sum(res.values())
            click.echo(f"{folder}: {name} added to {added} shards, {len(res) - added} already had it", err=True)
        raise
    finally:
        bar.close()
    added = sum(res.values())
    click.echo(f"{folder}: {name} added to {added} shards, {len(res) - added} already had it")


def register(main) -> None:
    main.add_command(lbp_command, name="lbp")
