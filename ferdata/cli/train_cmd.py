"""ferdata train, ferdata eval."""
from __future__ import annotations

from pathlib import Path

import click


from ferdata.errors import Interrupted
from ferdata.signals import stop_on_signals

from ._common import TrainProgress, import_option, parse_key_values, progress, train_option


#: The demo recipe of a checkout (ferdata/cli/train_cmd.py -> the repo's recipes/).
DEMO_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "sample_demo.toml"


def load_train_config(recipe, sets, **overrides):
    from ferdata.train.recipe import train_config

    return train_config(recipe, parse_key_values(sets, "--set"), **overrides)


@click.command("train")
@click.option("--recipe", type=click.Path(dir_okay=False), default=None, help="TOML recipe (recipes/*.toml).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any TrainConfig key.")
@click.option("-o", "--out", "out", type=click.Path(file_okay=False), default=None, help="Run folder [runs/<name>].")
@train_option("device")
@train_option("amp")
@train_option("epochs")
@train_option("num_workers", "--workers")
@click.option("--resume", is_flag=True, help="Continue from <out>/last.pt.")
@click.option("--overwrite", is_flag=True, help="Replace a run already in <out> (default: refuse).")
@import_option
def train_command(recipe, sets, out, device, amp, epochs, num_workers, resume, overwrite):
    """Train a registered model (renders and/or real faces); select on validation, test once.

    With no recipe and no data, trains a small model on the built-in sample (CPU, minutes).
    """
    from ferdata.train.loop import fit

    if recipe is None and not any(s.startswith("data=") for s in sets):
        recipe = str(DEMO_RECIPE)
        if not Path(recipe).exists():  # installed without the repo: built-in defaults
            recipe = None
            sets = ("epochs=3", "batch_size=64", "lr=1e-3", "eval_on=renders", "protocol=holdout") + tuple(sets)
    cfg = load_train_config(recipe, sets, device=device, amp=amp, epochs=epochs, num_workers=num_workers,
                            overwrite=True if overwrite else None)
    out = Path(out or Path("runs") / cfg.name)
    shown = TrainProgress(f"train {cfg.model}")
    try:
        with stop_on_signals():
            res = fit(cfg, out, resume=resume, **shown.hooks())
    except Interrupted as exc:
        last = out / "last.pt"
        exc.hint = (f"{out} is kept; continue with the same command and --resume" if last.exists() else
                    f"no epoch was finished, nothing to resume in {out}")
        raise
    finally:
        shown.close()
    if not res:  # a DDP rank other than 0: rank 0 reports
        return
    t, v = res["test"], res["val"]
    click.echo(f"{out}: best epoch {res['best_epoch']} of {res['epochs_run']} (by {res['select_metric']}); "
               f"val accuracy {v['accuracy']:.4f}; test accuracy {t['accuracy']:.4f}, "
               f"macro F1 {t['macro']['f1']:.4f} -> {out / 'eval.json'}")


@click.command("eval")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--data", required=True, type=click.Path(), help="Face store (.h5) or shard folder.")
@click.option("--subjects", default=None, help="Comma-separated subject ids to evaluate on.")
@click.option("--split", default=None, help="Only this official split (train/val/test); for a shard folder, "
              "the renders of that split's faces (needs --faces or the run's face store).")
@click.option("--faces", default=None, type=click.Path(dir_okay=False),
              help="The face store a shard folder was rendered from (for --split).")
@click.option("--noise", default="", help="Noise sweep sigmas, e.g. 0.01,0.05,0.1,0.2,0.3")
@click.option("-o", "--out", "out", type=click.Path(file_okay=False), default=None,
              help="Folder for eval.json / confusion matrix [beside the checkpoint].")
@click.option("--device", default="auto")
def eval_command(checkpoint, data, subjects, split, faces, noise, out, device):
    """Evaluate a checkpoint: accuracy, precision/recall/F1, confusion matrix, noise sweep."""
    from ferdata.train.evaluate import evaluate_checkpoint

    try:
        sig = tuple(float(s) for s in noise.split(",") if s.strip())
    except ValueError:
        raise click.BadParameter(f"{noise!r}: expected comma-separated numbers", param_hint="--noise") from None
    out = Path(out) if out else Path(checkpoint).parent / f"eval-{Path(data).stem}"
    bar = progress(desc="eval", unit="sample", unit_scale=True)

    def on_status(ev):
        if ev.get("total"):
            bar.reset(total=ev["total"])
        bar.set_description_str(f"eval: {ev['stage']}", refresh=True)

    try:
        res = evaluate_checkpoint(checkpoint, data, out, noise=sig, device=device,
                                  subjects=subjects.split(",") if subjects else None, split=split,
                                  faces=faces, on_status=on_status, on_batch=bar.update)
    finally:
        bar.close()
    ev = res["eval"]
    click.echo(f"accuracy {ev['accuracy']:.4f}  macro P {ev['macro']['precision']:.4f} "
               f"R {ev['macro']['recall']:.4f} F1 {ev['macro']['f1']:.4f}  (n={ev.get('n', '?')})")
    for s, acc in res.get("noise", {}).items():
        click.echo(f"  noise sigma={s}: accuracy {acc:.4f}")
    click.echo(f"-> {out / 'eval.json'}")


def register(main):
    main.add_command(train_command)
    main.add_command(eval_command)
