"""sample, ingest, inspect, show, verify."""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ferdata.config import MAX_SIZE, MIN_SIZE
from ferdata.errors import FerdataError

from ._common import parse_key_values
from ._progress import StageBar, count_in_background

SIZE = click.IntRange(MIN_SIZE, MAX_SIZE)
WORKERS = click.IntRange(min=1)


def _is_shard_folder(path: Path) -> bool:
    return path.is_dir() and (path / "manifest.json").exists()


@click.command("sample")
@click.option("-o", "--out", "out", default="sample", show_default=True, type=click.Path(file_okay=False),
              help="Folder for faces.h5 and backgrounds/.")
@click.option("--size", type=SIZE, default=256, show_default=True, help="Aligned face crop size.")
def sample_cmd(out, size):
    """Materialise the built-in sample: faces.h5 + backgrounds (COCO-format folder)."""
    from ..render.sample import make_sample

    info = make_sample(out, size=size)
    click.echo(f"wrote {info['faces']} ({info['n_faces']} faces) and {info['backgrounds']} "
               f"({info['n_backgrounds']} images)")


@click.command("ingest")
@click.argument("dataset")
@click.argument("root", required=False, type=click.Path())
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False), help="Face store to write (.h5).")
@click.option("--size", type=SIZE, default=None,
              help=f"Aligned crop size, {MIN_SIZE}..{MAX_SIZE} [256; native for FER2013/FER+].")
@click.option("--forehead", type=click.FloatRange(0.0, 2.0), default=0.0, show_default=True, help="Extend mask above the brows (× eye-brow distance).")
@click.option("--upsample", type=click.IntRange(0, 4), default=0, show_default=True, help="dlib HOG detector upsampling.")
@click.option("--detector", type=click.Choice(["hog", "cnn", "auto"]), default="hog", show_default=True,
              help="Face detector: dlib HOG, dlib CNN (slower, finds more), auto (CNN where HOG finds none).")
@click.option("--detect-aligned", is_flag=True, help="Also detect landmarks on pre-cropped faces (FER2013/FER+).")
@click.option("--on-error", type=click.Choice(["skip", "raise"]), default="skip", show_default=True)
@click.option("--workers", type=WORKERS, default=1, show_default=True, help="Processes for detection/alignment.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Reader option (e.g. peak_frames=3).")
@click.option("--overwrite", is_flag=True, help="Replace a face store already at -o (once the new one is complete).")
def ingest_cmd(dataset, root, out, size, forehead, upsample, detector, detect_aligned, on_error, workers, options,
               overwrite):
    """Read DATASET at ROOT, align faces, write a face store.

    DATASET: ckplus, fer2013, ferplus, jaffe, bu3dfe, rafd, affectnet, rafdb, kdef, expw, folder, sample.
    """
    from ferdata.config import IngestConfig
    from ferdata.datasets import READERS, read_dataset
    from ..faces.ingest import ingest, report_path

    if dataset not in READERS:
        raise click.BadParameter(f"unknown dataset {dataset!r}; known: {', '.join(sorted(READERS))}",
                                 param_hint="DATASET")
    if root is None and dataset != "sample":
        raise click.BadParameter("ROOT is required for this dataset", param_hint="ROOT")
    opts = parse_key_values(options, "--option")
    skipped: list = []
    records = read_dataset(dataset, root, on_error=on_error, skipped=skipped, **opts)
    cfg = IngestConfig(size=size, forehead=forehead, upsample=upsample, detect_aligned=detect_aligned,
                       on_error=on_error, detector=detector)
    bar = StageBar(f"ingest {dataset}", unit="face")
    bar({"stage": "starting workers, loading the landmark model" if workers > 1 else "loading the landmark model",
         "done": 0})
    count_in_background(lambda: read_dataset(dataset, root, on_error="skip", skipped=[], **opts), bar)

    def tick(ok, failed):
        bar({"stage": f"{failed} skipped" if failed else "", "done": ok + failed})

    try:
        rep = ingest(records, out, dataset, cfg, workers=workers, root=root or "", skipped=skipped,
                     on_progress=tick, overwrite=overwrite)
    finally:
        bar.close()
    click.echo(f"{out}: {rep['ingested']} faces ({rep['faces_per_s']} faces/s), {rep['skipped']} skipped "
               f"-> {report_path(out)}")


@click.command("inspect")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def inspect_cmd(path, as_json):
    """Summarise a face store (.h5) or a shard folder."""
    p = Path(path)
    if _is_shard_folder(p):
        from ferdata.shards.inspect import summarize

        s = summarize(p)
    elif p.is_file():
        from ..faces.store import FaceStore
        from ..faces.ingest import report_path

        from ..faces.quality import assess_store, quality_summary

        with FaceStore(p) as fs:
            s = fs.summary()
            s["quality"] = quality_summary(assess_store(fs), fs.sources, top=5)
        rp = report_path(p)
        if rp.exists():
            try:
                r = json.loads(rp.read_text())
            except ValueError as exc:
                raise FerdataError(f"{rp}: unreadable ingest report ({exc}); delete it or re-ingest") from None
            s["skipped"] = r.get("skipped", 0)
            s["skipped_files"] = r.get("skipped_files", [])[:20]
    else:
        raise FerdataError(f"{p}: neither a face store file nor a shard folder with manifest.json")
    if as_json:
        click.echo(json.dumps(s, indent=1, default=str))
        return
    for line in _summary_lines(s):
        click.echo(line)


def _short(v):
    """At most 12 items of a long dict or list, then how many more."""
    if isinstance(v, dict) and len(v) > 12:
        items = list(v.items())
        return dict(items[:12]) | {"…": f"{len(items) - 12} more"}
    if isinstance(v, list) and len(v) > 12:
        return v[:12] + [f"… {len(v) - 12} more"]
    return v


def _summary_lines(s: dict, width: int = 16, depth: int = 0):
    """``key: value`` lines; a dict of dicts or of lists (e.g. ``quality``) is opened one
    level, and a list of dicts is printed one item per line."""
    for k, v in s.items():
        v = _short(v)
        pad = " " * (4 * depth)
        if depth == 0 and isinstance(v, dict) and any(isinstance(x, (dict, list)) for x in v.values()):
            yield f"{pad}{k:>{width}}:"
            yield from _summary_lines(v, width, depth + 1)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            yield f"{pad}{k:>{width}}:"
            yield from (f"{pad}{'':>{width}}  - {x}" for x in v)
        else:
            yield f"{pad}{k:>{width}}: {v}"


def _image_out(ctx, param, value):
    from ferdata.viz import SHEET_EXTENSIONS

    if value is not None and Path(value).suffix.lower() not in SHEET_EXTENSIONS:
        raise click.BadParameter(f"{value!r}: unknown image extension {Path(value).suffix or '(none)'!r}; "
                                 f"use one of {', '.join(SHEET_EXTENSIONS)}")
    return value


@click.command("show")
@click.argument("path", type=click.Path())
@click.option("-n", "--n", "n", type=click.IntRange(min=1), default=36, show_default=True,
              help="Number of faces/samples.")
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False), callback=_image_out,
              help="Image to write (.png, .jpg, .bmp, .tif, .webp).")
@click.option("--landmarks/--no-landmarks", default=True, show_default=True,
              help="Draw the 68 landmarks (on tiles larger than 128 px only).")
@click.option("--mask/--no-mask", default=True, show_default=True, help="Draw the mask outline.")
@click.option("--tile", type=click.IntRange(8, 1024), default=None, help="Tile side in px (8..1024).")
@click.option("--seed", type=click.IntRange(min=-1), default=0, show_default=True, help="Which samples (random, seeded); -1: the first n.")
@click.option("--worst", type=click.IntRange(min=1), default=None, metavar="N",
              help="Face stores: the N faces most likely mis-aligned, worst first (inspect's quality).")
def show_cmd(path, n, out, landmarks, mask, tile, seed, worst):
    """Contact sheet PNG of a face store or a shard folder."""
    from ferdata.viz import contact_sheet, save_image, sheet_captions

    p = Path(path)
    if _is_shard_folder(p):
        from ferdata.shards.inspect import load_samples

        d = load_samples(p, n, seed)
    elif p.is_file():
        from ..faces.store import FaceStore

        with FaceStore(p) as fs:
            N = len(fs)
            idx = np.arange(min(n, N)) if seed < 0 else np.sort(np.random.default_rng(seed).permutation(N)[:n])
            if worst is not None:
                from ..faces.quality import assess_store, worst_faces

                idx = worst_faces(assess_store(fs), worst)
                if len(idx) == 0:
                    raise FerdataError(f"{p}: no face with landmarks to rank (pre-cropped faces stored as is)")
            d = {"image": np.stack([fs.images[int(i)] for i in idx]), "mask": np.stack([fs.masks[int(i)] for i in idx]),
                 "landmarks": fs.landmarks[idx], "label": fs.labels[idx], "index": idx,
                 "subject": fs.subjects[idx], "source": fs.sources[idx], "dataset": fs.dataset}
    else:
        raise FerdataError(f"{p}: neither a face store file nor a shard folder with manifest.json")
    sheet = contact_sheet(d["image"], d["landmarks"] if landmarks else None, d["mask"] if mask else None,
                          sheet_captions(d), tile=tile)
    save_image(out, sheet)
    click.echo(f"wrote {out} ({len(d['image'])} tiles, {sheet.shape[1]}x{sheet.shape[0]})")


@click.command("verify")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--partial", is_flag=True, help="An unfinished render is fine (an array job's share, a render running).")
def verify_cmd(folder, partial):
    """Recompute shard hashes and check counts and schema against the manifest; an unfinished
    render fails (exit 1, naming the missing shards) unless --partial."""
    from ferdata.shards.inspect import verify

    res = verify(folder, partial=partial)
    for name, problem in res["problems"]:
        click.echo(f"{name}: {problem}", err=True)
    click.echo(f"{folder}: {res['ok']} of {res['num_shards']} shard(s) ok, {len(res['problems'])} problem(s), "
               f"{res['samples']} samples" + (f", {len(res['missing'])} not made yet" if res["missing"] else ""))
    if res["problems"]:
        raise SystemExit(1)


def register(main):
    for c in (sample_cmd, ingest_cmd, inspect_cmd, show_cmd, verify_cmd):
        main.add_command(c)
