"""``python -m ferdata.train`` (and ``torchrun --nproc-per-node N -m ferdata.train``).

A small argparse entry that calls the library (it does not import the click CLI):
``--recipe R [--set KEY=VALUE ...] -o OUT [--resume] [--overwrite]``. A
:class:`~ferdata.errors.FerdataError` prints one ``Error:`` line (exit 1); ``--debug``
shows the traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ferdata.train", description="Train a registered FER model.")
    ap.add_argument("--recipe", help="TOML recipe (recipes/*.toml)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("-o", "--out", help="run folder [runs/<name>]")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--debug", action="store_true")
    a = ap.parse_args(argv)
    from ferdata.errors import FerdataError

    try:
        from ferdata.train import fit
        from ferdata.train.recipe import parse_sets, train_config

        cfg = train_config(a.recipe, parse_sets(a.sets), overwrite=True if a.overwrite else None)
        res = fit(cfg, Path(a.out or Path("runs") / cfg.name), resume=a.resume)
    except FerdataError as exc:
        if a.debug:
            raise
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if res:
        t = res["test"]
        print(f"test accuracy {t['accuracy']:.4f}, macro F1 {t['macro']['f1']:.4f} (best epoch {res['best_epoch']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
