"""ferdata cv, ferdata compare."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ferdata.errors import Interrupted
from ferdata.signals import stop_on_signals

from ._common import TrainProgress, import_option, train_option
from .train_cmd import load_train_config


def _fit_with_progress(cfg, out, resume=False):
    """ferdata.train.fit with a per-fold progress bar (stderr, terminals only) and its epoch lines."""
    import ferdata.train

    shown = TrainProgress(f"fold {cfg.fold} {cfg.model}", prefix=f"fold {cfg.fold} ")
    try:
        return ferdata.train.fit(cfg, out, resume=resume, on_step=shown.on_step, on_epoch=shown.on_epoch,
                                 on_status=shown.on_status)
    finally:
        shown.close()


def _echo_fold(n):
    def on_fold(ev):
        i, st = ev["fold"], ev["status"]
        head = f"fold {i} ({i + 1} of {n}, fold-{i:02d})"   # the index of cfg.fold, eval.json and the folder
        if st == "skipped":
            click.echo(f"{head}: finished earlier, skipped")
        elif st in ("started", "resumed"):
            click.echo(f"{head}: {'resuming from last.pt' if st == 'resumed' else 'training'} …")
        else:
            r = ev["record"]
            click.echo(f"{head}: accuracy {r['accuracy']:.4f}, macro F1 {r.get('f1', float('nan')):.4f}")
    return on_fold


@click.command("cv")
@click.option("--recipe", type=click.Path(dir_okay=False), default=None, help="TOML recipe (recipes/*.toml).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any TrainConfig key.")
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False),
              help="Run folder: fold-00, fold-01, … and cv.json / cv.md inside.")
@click.option("--folds", "folds", default=None, metavar="A:B",
              help="Only these folds now: A:B (half-open), N, or N,M,… [all]. The summary covers every finished fold.")
@click.option("--name", default=None, help="Row label in cv.md and compare [the folder name].")
@train_option("device")
@train_option("amp")
@train_option("epochs")
@train_option("num_workers", "--workers")
@import_option
def cv_command(recipe, sets, out, folds, name, device, amp, epochs, num_workers):
    """Train and test every fold of the recipe's protocol; write cv.json and the Table 1 row.

    Resumable: run the same command again and finished folds are skipped, an
    interrupted fold continues from its last.pt.
    """
    from ..experiments.cv import n_folds_of, run_cv

    cfg = load_train_config(recipe, sets, device=device, amp=amp, epochs=epochs, num_workers=num_workers)
    n = n_folds_of(cfg)
    meta = {"recipe": str(recipe) if recipe else None, "sets": list(sets)}
    try:
        with stop_on_signals():
            summary = run_cv(cfg, out, fit=_fit_with_progress, folds=folds, n_folds=n, name=name, meta=meta,
                             on_fold=_echo_fold(n))
    except Interrupted as exc:
        exc.hint = f"finished folds and the fold's last epoch are kept in {out}; run the same command to continue"
        raise
    if not summary:  # a DDP rank other than 0
        return
    click.echo((Path(out) / "cv.md").read_text().rstrip())
    if not summary["complete"]:
        click.echo(f"{len(summary['folds'])} of {n} folds finished; run again to finish the rest.")
    click.echo(f"-> {Path(out) / 'cv.json'}")


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the full result (friedman_p, nemenyi, bonferroni_dunn, rows) as JSON.")
@click.option("-o", "--out", "md_path", type=click.Path(dir_okay=False), default=None,
              help="Write the Markdown table and tests to this file.")
@click.option("--metric", default="accuracy",
              type=click.Choice(["accuracy", "precision", "recall", "f1", "f1_of_macro"]),
              help="Per-fold score the tests rank [accuracy].")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Significance level.")
@click.option("--noise-plot", "noise_png", type=click.Path(dir_okay=False), default=None,
              help="Draw the runs' noise studies (accuracy vs sigma, FERAtt Fig. 9) to this PNG.")
@click.option("--one-tailed", is_flag=True,
              help="Bonferroni-Dunn one-tailed (H1: better than the first run, FERAtt's wording) [two-tailed].")
def compare_command(runs, json_path, md_path, metric, alpha, noise_png, one_tailed):
    """Compare `ferdata cv` runs over the same folds: mean ± sd rows, the Friedman verdict,
    Nemenyi (two-tailed) and Bonferroni-Dunn (two-tailed, against the first run)."""
    from ..experiments.compare import compare_runs, markdown, plot_noise
    from ..experiments.cv_summary import write_json_atomic, write_text_atomic

    if not 0 < alpha < 1:
        raise click.BadParameter(f"{alpha}: must be in (0, 1)", param_hint="--alpha")
    res = compare_runs(list(runs), alpha=alpha, metric=metric, tails=1 if one_tailed else 2)
    text = markdown(res)
    click.echo(text.rstrip())
    if md_path:
        write_text_atomic(md_path, text)
        click.echo(f"-> {md_path}")
    if json_path:
        write_json_atomic(json_path, json.loads(json.dumps(res)))
        click.echo(f"-> {json_path}")
    if noise_png:
        click.echo(f"-> {plot_noise(list(runs), noise_png)}")


def register(main):
    main.add_command(cv_command)
    main.add_command(compare_command)
