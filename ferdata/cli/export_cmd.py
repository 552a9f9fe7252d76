"""export: a render's shards as WebDataset tars, an image folder or Parquet files."""
from __future__ import annotations

import click

from ferdata.errors import Interrupted
from ferdata.signals import stop_on_signals

from ._progress import StageBar

FORMATS = ("webdataset", "imagefolder", "parquet")


@click.command("export")
@click.argument("shards", type=click.Path())
@click.option("--to", "to", required=True, type=click.Choice(FORMATS), help="Output format.")
@click.option("-o", "--out", "out", required=True, type=click.Path(), help="Folder to write (created).")
@click.option("--faces", type=click.Path(), default=None,
              help="The face store the render was made from (split, source) [the one manifest.json records].")
@click.option("--partial", is_flag=True, help="Export the shards an unfinished render has made so far.")
def export_cmd(shards, to, out, faces, partial):
    """Export the render in SHARDS (a shard folder) keeping every field: label, class name,
    subject, split, source, landmarks, mask, render parameters, face index. Rerun to resume."""
    from ferdata.shards.export import export_shards

    bar = StageBar(f"export {to}", unit="sample")
    try:
        with stop_on_signals():
            res = export_shards(shards, out, to, faces=faces, partial=partial, on_progress=bar)
    except Interrupted as exc:
        exc.hint = f"the finished shards in {out} are kept; run the same command to continue"
        raise
    finally:
        bar.close()
    rate = f" at {res['samples_per_s']}/s" if res["samples_per_s"] else ""
    note = "" if res["face_store"] else "; split and source are null (no face store found: pass --faces)"
    click.echo(f"{out}: {to}, {res['shards_written']} shard(s) written, {res['shards_skipped']} already done, "
               f"{res['samples']} samples ({res['samples_written']} written{rate})"
               + (f", {len(res['missing'])} shard(s) not rendered yet" if res["missing"] else "") + note)


def register(main):
    main.add_command(export_cmd)
