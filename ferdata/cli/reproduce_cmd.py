"""``ferdata reproduce``: a paper's table in one command."""
from __future__ import annotations

from pathlib import Path

import click

from ferdata.errors import Interrupted
from ferdata.signals import stop_on_signals

from ._common import parse_key_values
from ._progress import StageBar


def _list() -> None:
    from ..experiments.tables import TABLES

    for t in TABLES.values():
        data = " ".join(f"--data {n}=ROOT ({d.reader})" for n, d in t.datasets.items())
        click.echo(f"{t.name}: {t.title}\n  {len(t.cells)} cells; needs {data}"
                   + ("; trains on renders (COCO backgrounds with --backgrounds, else the sample's)" if t.renders
                      else ""))


@click.command("reproduce")
@click.argument("table", required=False)
@click.option("--list", "list_tables", is_flag=True, help="Name each table and the data it needs.")
@click.option("--data", "data", multiple=True, metavar="NAME=ROOT", help="A dataset as published, e.g. ckplus=/data/CK+.")
@click.option("-o", "--out", "out", type=click.Path(file_okay=False), default=None,
              help="Output folder: data/, cells/, table.md, table.json.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="TrainConfig key for every cell (e.g. epochs=1).")
@click.option("--render-set", "render_sets", multiple=True, metavar="KEY=VALUE", help="RenderConfig key (e.g. per_face=9231).")
@click.option("--ingest-set", "ingest_sets", multiple=True, metavar="KEY=VALUE", help="IngestConfig key (e.g. size=128).")
@click.option("--backgrounds", type=click.Path(exists=True), default=None,
              help="COCO root or image folder for the renders [the built-in sample's].")
def reproduce_command(table, list_tables, data, out, sets, render_sets, ingest_sets, backgrounds):
    """Run every cell of a paper's TABLE that the given --data allows, from ingest through every fold;
    resumable (run it again to continue); writes OUT/table.md and OUT/table.json."""
    from ..experiments.reproduce import reproduce

    if list_tables:
        return _list()
    if not table:
        raise click.BadParameter("missing (see ferdata reproduce --list)", param_hint="TABLE")
    if not out:
        raise click.BadParameter("required", param_hint="-o/--out")
    roots = {}
    for kv in data:
        if "=" not in kv:
            raise click.BadParameter(f"{kv!r}: expected NAME=ROOT", param_hint="--data")
        k, v = kv.split("=", 1)
        roots[k.strip()] = v
    if not roots:
        raise click.BadParameter("give at least one NAME=ROOT (ferdata reproduce --list)", param_hint="--data")

    from .cv_cmd import _fit_with_progress

    bar = StageBar("reproduce", unit="face")

    def on_cell(ev):
        bar.close()   # the data is made: from here each fold has its own bar
        click.echo(f"cell {ev['index'] + 1} of {ev['cells']}, {ev['column']}: {ev['row']} -> "
                   f"{Path(out) / 'cells' / ev['cell']}")

    try:
        with stop_on_signals():
            res = reproduce(table, roots, out, sets=parse_key_values(sets, "--set"),
                            render_sets=parse_key_values(render_sets, "--render-set"),
                            ingest_sets=parse_key_values(ingest_sets, "--ingest-set"), backgrounds=backgrounds,
                            on_cell=on_cell, on_progress=bar, fit=_fit_with_progress)
    except Interrupted as exc:
        exc.hint = f"finished steps, cells and folds are kept in {out}; run the same command to continue"
        raise
    finally:
        bar.close()
    click.echo((Path(out) / "table.md").read_text().rstrip())
    if res["missing_data"]:
        click.echo("-> add " + ", ".join(res["missing_data"]) + " for the other cells", err=True)


def register(main) -> None:
    main.add_command(reproduce_command)
