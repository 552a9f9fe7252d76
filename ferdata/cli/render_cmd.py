"""ferdata render."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ferdata.config import MAX_PER_FACE
from ferdata.errors import FerdataError

from ._common import parse_key_values, render_option
from . import _exit
from ._progress import StageBar

if TYPE_CHECKING:
    from ferdata.config import RenderConfig


def render_config(config_file, given: dict, sets) -> "RenderConfig":
    """The RenderConfig of the command line: TOML file < options < ``--set``, typed and
    range-checked by the library (``ferdata.typed``); a bad ``--set`` is a usage error."""
    from ferdata.config import RenderConfig, load_toml
    from ferdata.typed import coerce_fields

    d = coerce_fields(RenderConfig, load_toml(config_file), str(config_file)) if config_file else {}
    d.update({k: v for k, v in given.items() if v is not None})
    try:
        d.update(coerce_fields(RenderConfig, parse_key_values(sets, "--set"), "--set"))
        return RenderConfig(**d).validate()
    except FerdataError as exc:
        if not sets:
            raise
        raise click.BadParameter(str(exc).removeprefix("--set: "), param_hint="--set") from None


@click.command("render")
@click.argument("faces", required=False, type=click.Path(dir_okay=False))
@click.option("--backgrounds", type=click.Path(), default=None,
              help="A COCO-format folder or a folder of images [the sample's backgrounds].")
@click.option("--coco", type=click.Path(file_okay=False), default=None, help="COCO root (annotations/ + <split>/).")
@click.option("--coco-split", default=None, help="COCO split, e.g. train2017.")
@click.option("-o", "--out", "out", default="ferdata-out", show_default=True, type=click.Path(file_okay=False))
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML file with RenderConfig keys (options given here override it).")
@render_option("per_face", "Renders per face.", type=click.IntRange(1, MAX_PER_FACE))
@render_option("size", "Output side in px.")
@render_option("seed", "Master seed.")
@render_option("luminance", "Luminance matching.")
@render_option("blend", "Compositing.")
@render_option("perspective", "Corner jitter fraction.")
@render_option("gray", "Gray output.", is_flag=True, shown_default="off")
@render_option("encoding", "Image encoding in the shards.", shown_default="jpeg at >= 96 px, else raw")
@render_option("shard_size", "Samples per shard.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any RenderConfig field.")
@click.option("--shards", "shard_range", default=None, help="Only these shards, e.g. 0:40 (array jobs).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--executor", type=click.Choice(["process", "serial", "dask"]), default="process", show_default=True)
@click.option("--scheduler", default=None, help="dask scheduler address (tcp://host:8786).")
@click.option("--device", default=None,
              help="Render with the torch renderer on this device (cpu, cuda, cuda:N); JPEG encoding on CPU threads.")
def render_command(faces, backgrounds, coco, coco_split, out, config_file, per_face, size, seed, luminance, blend,
                   perspective, gray, encoding, shard_size, sets, shard_range, workers, executor, scheduler, device):
    """Render FACES (a face store) on backgrounds into HDF5 shards.

    With no FACES, renders the built-in sample (made on first use in ./sample).
    """
    from ..atomic import write_json_atomic

    if device is None:
        from ..render.run import render
    else:  # the torch renderer (torch is imported only when asked for)
        from ..torch.render_shards import render_shards as render

    if faces is None:
        from ..render.sample import make_sample

        if not Path("sample/faces.h5").exists():
            click.echo("materialising the built-in sample into ./sample", err=True)
            make_sample("sample")
        faces = "sample/faces.h5"
        if backgrounds is None and coco is None:
            backgrounds = "sample/backgrounds"
    if coco and backgrounds:
        raise click.BadParameter("give --coco or --backgrounds, not both", param_hint="--coco")
    bg = coco or backgrounds
    if bg is None:
        raise click.BadParameter("backgrounds are required (--coco ROOT or --backgrounds FOLDER)",
                                 param_hint="--backgrounds")
    given = dict(per_face=per_face, size=size, seed=seed, luminance=luminance, blend=blend,
                 perspective=perspective, gray=gray, encoding=encoding, shard_size=shard_size)
    cfg = render_config(config_file, given, sets)
    bar = StageBar("render", unit="sample")
    try:
        res = render(faces, bg, out, cfg, coco_split=coco_split, shards=shard_range, workers=workers,
                     executor=executor, scheduler=scheduler, on_progress=bar,
                     **({} if device is None else {"device": device}))
    finally:
        bar.close()
    write_json_atomic(Path(out, "render_config.json"), dataclasses.asdict(cfg.resolved()), sort_keys=False)
    click.echo(f"{out}: {res['shards_made']} shard(s) made, {res['shards_skipped']} already complete, "
               f"{res['num_shards']} in all; {res['samples']} samples"
               + (f" at {res['samples_per_s']}/s" if res["samples_per_s"] else ""))
    _exit.allow()   # every shard written and recorded, the pool shut down: skip the teardown


def register(main):
    main.add_command(render_command)
