"""``ferdata lbp``: add LBP codes to shards / a face store, or write code images."""
from __future__ import annotations

import os

import click

from ferdata.errors import FerdataError

from . import _exit
from ._progress import StageBar


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
              help="Cores: JPEG decode and LBP threads (shards, face store); image folder: I/O and LBP threads.")
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
    from ferdata.features.lbp import dataset_name
    from ferdata.features.lbp_run import add_lbp, target_kind

    try:
        name = dataset_name(variant, P, R)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="-P/-R") from exc
    kind = target_kind(path)
    if kind is None:
        raise click.BadParameter("expected a shard folder, a face store (.h5) or an image folder", param_hint="PATH")
    if (kind == "images") != bool(out):
        raise click.BadParameter("required for an image-folder input" if kind == "images"
                                 else "only for an image-folder input", param_hint="--out")
    numba.set_num_threads(min(workers, numba.config.NUMBA_NUM_THREADS))
    bar = StageBar(f"lbp {name}", unit="img")
    start = _starter(bar)
    try:
        res = add_lbp(path, variant, P, R, out=out, workers=workers, start=start,
                      status=lambda text: bar({"stage": text}))
    except FerdataError as exc:
        done = getattr(exc, "result", None)
        if done:
            added = sum(done.values())
            click.echo(f"{path}: {name} added to {added} shards, {len(done) - added} already had it", err=True)
        raise
    finally:
        bar.close()
    _report(res, path, out, name)
    _exit.allow()   # every shard committed and closed: skip the interpreter's teardown


def _starter(bar: StageBar):
    """``add_lbp``'s ``start(total, unit)``: sizes ``bar`` and returns its per-item callback."""
    done = [0]

    def start(total, unit):
        bar.unit = unit
        bar({"done": 0, "total": total})   # the stage (compiling ...) stays until the first images are done

        def tick(n):
            done[0] += n
            bar({"stage": "", "done": done[0], "total": total})
        return tick
    return start


def _report(res: dict, path, out, name) -> None:
    if res["kind"] == "shards":
        click.echo(f"{path}: {name} added to {res['added']} shards, {res['present']} already had it")
    elif res["kind"] == "images":
        click.echo(f"{out}: wrote {res['written']} code images, skipped {res['skipped']} present")
    else:
        click.echo(f"{path}: {name} {'added' if res['added'] else 'already present, skipped'}")


def _warmup() -> None:
    from ferdata.features.lbp import warmup

    total = warmup(lambda what, sec: click.echo(f"{sec:7.2f} s  {what}"))
    click.echo(f"LBP kernels ready in {total:.1f} s (cached on disk for later processes)")


def register(main) -> None:
    main.add_command(lbp_command, name="lbp")
