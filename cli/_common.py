"""Shared bits of the click layer: error reporting, logging, progress bars."""
from __future__ import annotations

import logging
import sys

import click

from ferdata.errors import FerdataError


class FerdataGroup(click.Group):
    """A click group that turns user errors into one line (traceback with --debug)."""

    def invoke(self, ctx):
        debug = bool(ctx.params.get("debug")) if ctx.params else False
        try:
            return super().invoke(ctx)
        except (FerdataError, OSError) as exc:
            if debug or (ctx.obj or {}).get("debug"):
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)


def setup_logging(verbose: int, debug: bool) -> None:
    level = logging.DEBUG if debug else (logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def progress(total=None, desc="", unit="it", disable=None):
    """A tqdm progress bar on stderr (disabled when stderr is not a terminal unless forced)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr,
                disable=disable, mininterval=0.5)


def parse_key_values(pairs, option: str) -> dict:
    """``("a=1", "b=x")`` -> ``{"a": 1, "b": "x"}`` (values parsed as JSON when they are)."""
    import json

    out = {}
    for kv in pairs:
        if "=" not in kv:
            raise click.BadParameter(f"{kv!r} is not KEY=VALUE", param_hint=option)
        k, v = kv.split("=", 1)
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out
