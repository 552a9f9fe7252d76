"""ferdata render."""
from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import click

from ferdata.errors import FerdataError

from ._common import parse_key_values, progress

# bounds checked where the CLI reads a value (options, --set, --config); None = open
BOUNDS = {
    "size": (16, 4096), "per_face": (1, None), "seed": (0, None), "shard_size": (1, None),
    "jpeg_quality": (1, 100), "flip": (0, 1), "blur_p": (0, 1), "scale_min": (0, None), "scale_max": (0, None),
    "rotation": (0, 180), "translate": (0, None), "perspective": (0, 1), "lum_min": (0, None),
    "lum_max": (0, None), "erode": (0, None), "feather": (0, None), "brightness_min": (0, None),
    "brightness_max": (0, None), "contrast": (0, None), "gamma": (0, None), "blur_sigma": (0, None),
    "noise": (0, None),
}


def _typed(key: str, value, hint):
    """``value`` as RenderConfig field ``key`` wants it; raises ValueError saying why not."""
    args = typing.get_args(hint)
    if args and type(None) in args:  # Optional[X]
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"expected a number, got {value!r}")
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
    elif hint is tuple:
        value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    lo, hi = BOUNDS.get(key, (None, None))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"must be in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}], "
                         f"got {value!r}")
    return value


def typed_config_values(d: dict, source: str, as_param: bool) -> dict:
    """Check and convert RenderConfig values read from ``source`` (``--set`` or a TOML file)."""
    from ferdata.config import RenderConfig

    hints = typing.get_type_hints(RenderConfig)
    out = {}
    for k, v in d.items():
        if k not in hints:
            raise click.BadParameter(f"unknown RenderConfig key {k!r}", param_hint=source)
        try:
            out[k] = _typed(k, v, hints[k])
        except ValueError as exc:
            if as_param:
                raise click.BadParameter(f"{k}: {exc}", param_hint=source) from None
            raise FerdataError(f"{source}: {k}: {exc}") from None
    return out


def _opt(name, default, help, **kw):
    return click.option(f"--{name.replace('_', '-')}", name, default=default, show_default=True, help=help, **kw)


@click.command("render")
@click.argument("faces", required=False, type=click.Path(dir_okay=False))
@click.option("--backgrounds", type=click.Path(), default=None,
              help="A COCO-format folder or a folder of images [the sample's backgrounds].")
@click.option("--coco", type=click.Path(file_okay=False), default=None, help="COCO root (annotations/ + <split>/).")
@click.option("--coco-split", default=None, help="COCO split, e.g. train2017.")
@click.option("-o", "--out", "out", default="ferdata-out", show_default=True, type=click.Path(file_okay=False))
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML file with RenderConfig keys (options given here override it).")
@_opt("per_face", None, "Renders per face [9231].", type=click.IntRange(min=1))
@_opt("size", None, "Output side in px, 16..4096 [128].", type=click.IntRange(16, 4096))
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Master seed [0].")
@click.option("--luminance", type=click.Choice(["ratio", "reinhard", "none"]), default=None, help="[ratio]")
@click.option("--blend", type=click.Choice(["alpha", "poisson", "hard"]), default=None, help="[alpha]")
@click.option("--perspective", type=click.FloatRange(0, 1), default=None, help="Corner jitter fraction [0].")
@click.option("--gray", is_flag=True, default=None, help="Gray output.")
@click.option("--encoding", type=click.Choice(["raw", "jpeg"]), default=None, help="[jpeg at >=96 px, else raw]")
@click.option("--shard-size", type=click.IntRange(min=1), default=None, help="Samples per shard [8192].")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any RenderConfig field.")
@click.option("--shards", "shard_range", default=None, help="Only these shards, e.g. 0:40 (array jobs).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--executor", type=click.Choice(["process", "serial", "dask"]), default="process", show_default=True)
@click.option("--scheduler", default=None, help="dask scheduler address (tcp://host:8786).")
def render_command(faces, backgrounds, coco, coco_split, out, config_file, per_face, size, seed, luminance, blend,
                   perspective, gray, encoding, shard_size, sets, shard_range, workers, executor, scheduler):
    """Render FACES (a face store) on backgrounds into HDF5 shards.

    With no FACES, renders the built-in sample (made on first use in ./sample).
    """
    from ferdata.config import RenderConfig, from_dict, load_toml
    from ferdata.render.run import render
    from ferdata.shards.tempfiles import write_json_atomic

    if faces is None:
        from ferdata.sample import make_sample

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
    d = dataclasses.asdict(RenderConfig())
    if config_file:
        toml = from_dict(RenderConfig, load_toml(config_file), config_file).__dict__
        d.update(typed_config_values(toml, str(config_file), as_param=False))
    given = dict(per_face=per_face, size=size, seed=seed, luminance=luminance, blend=blend,
                 perspective=perspective, gray=gray, encoding=encoding, shard_size=shard_size)
    d.update({k: v for k, v in given.items() if v is not None})
    d.update(typed_config_values(parse_key_values(sets, "--set"), "--set", as_param=True))
    cfg = RenderConfig(**d)
    bar = progress(desc="render", unit="sample")

    def on_shard(e):
        bar.update(e["n"])

    try:
        res = render(faces, bg, out, cfg, coco_split=coco_split, shards=shard_range, workers=workers,
                     executor=executor, scheduler=scheduler, on_shard=on_shard)
    finally:
        bar.close()
    write_json_atomic(Path(out, "render_config.json"), dataclasses.asdict(cfg.resolved()), sort_keys=False)
    click.echo(f"{out}: {res['shards_made']} shard(s) made, {res['shards_skipped']} already complete, "
               f"{res['num_shards']} in all; {res['samples']} samples"
               + (f" at {res['samples_per_s']}/s" if res["samples_per_s"] else ""))


def register(main):
    main.add_command(render_command)
