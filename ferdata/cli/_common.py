"""Shared bits of the click layer: error reporting, logging, progress bars."""
from __future__ import annotations

import logging
import sys

import click

from ferdata.errors import FerdataError


DEBUG_HINT = "(run with --debug for the traceback)"


def error_line(exc: BaseException) -> str:
    """The one line printed for ``exc``: user errors as they are, anything else with its type."""
    msg = " ".join(str(exc).split()) or "(no message)"
    if isinstance(exc, (FerdataError, OSError)):
        return f"Error: {msg}"
    return f"Error: {type(exc).__name__}: {msg} {DEBUG_HINT}"


class FerdataGroup(click.Group):
    """A click group that turns every error into one ``Error:`` line (traceback with --debug).

    click's own errors (bad options) and exits pass through; KeyboardInterrupt is not caught.
    """

    def invoke(self, ctx):
        debug = bool(ctx.params.get("debug")) if ctx.params else False
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except Exception as exc:  # noqa: BLE001 - the CLI boundary: one line, never a traceback
            if debug or (ctx.obj or {}).get("debug"):
                raise
            click.echo(error_line(exc), err=True)
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
