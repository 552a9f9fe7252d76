"""The ``ferdata`` command: a thin click layer over the library.

This folder is installed as the ``ferdata.cli`` package (see pyproject.toml).
"""
from __future__ import annotations

import click

from ferdata import __version__

from ._common import FerdataGroup, setup_logging


@click.group(cls=FerdataGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ferdata")
@click.option("--debug", is_flag=True, help="Show full tracebacks and debug logging.")
@click.option("-v", "--verbose", count=True, help="More logging.")
@click.pass_context
def main(ctx, debug, verbose):
    """ferdata: ingest FER datasets, render synthetic training data, LBP, train."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    setup_logging(verbose, debug)


def run():
    """The console entry point (``ferdata``, ``python -m ferdata``): :func:`main`, then a
    quick exit for a command that allowed it (:mod:`ferdata.cli._exit`)."""
    from . import _exit

    _spawn_main()
    try:
        main(prog_name="ferdata")
    except SystemExit as exc:
        _exit.finish(exc.code)


def _spawn_main() -> None:
    """Started as the ``ferdata`` console script, name ``ferdata.__main__`` as the main
    module, as ``python -m ferdata`` does: a spawned worker (render, ingest, a spawn
    DataLoader) then skips re-running the main module, where it re-ran the script and
    imported this whole command line (~0.3 s per worker) for nothing. Only the script
    pip writes (named ``ferdata``) is changed; any other main module is left alone."""
    import importlib.util
    import sys
    from pathlib import Path

    main_mod = sys.modules.get("__main__")
    if main_mod is None or getattr(main_mod, "__spec__", None) is not None:
        return
    name = Path(getattr(main_mod, "__file__", "") or "").name.lower()
    if name in ("ferdata", "ferdata.exe", "ferdata-script.py"):
        main_mod.__spec__ = importlib.util.find_spec("ferdata.__main__")


def _register():
    from . import commands_core, cv_cmd, export_cmd, lbp_cmd, render_cmd, reproduce_cmd, train_cmd

    for m in (commands_core, render_cmd, lbp_cmd, train_cmd, cv_cmd, reproduce_cmd, export_cmd):
        m.register(main)


_register()
