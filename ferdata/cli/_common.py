"""Shared bits of the click layer: error reporting, logging, progress bars."""
from __future__ import annotations

import logging
import os
import sys

import click

from ferdata.errors import FerdataError, Interrupted


DEBUG_HINT = "(run with --debug for the traceback)"


def error_line(exc: BaseException) -> str:
    """The one line printed for ``exc``: user errors as they are, anything else with its type."""
    msg = " ".join(str(exc).split()) or "(no message)"
    if isinstance(exc, (FerdataError, OSError)):
        return f"Error: {msg}"
    return f"Error: {type(exc).__name__}: {msg} {DEBUG_HINT}"


def interrupted_line(exc: Interrupted) -> str:
    """``Interrupted (SIGINT) at epoch 2, step 5: <what to run to continue>``."""
    import signal

    try:
        name = signal.Signals(exc.signum).name
    except ValueError:
        name = f"signal {exc.signum}"
    where = f" at {exc.where}" if exc.where else ""
    return f"Interrupted ({name}){where}: {getattr(exc, 'hint', 'the finished work is kept')}"


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
        except Interrupted as exc:  # Ctrl-C / SIGTERM seen at a clean point (ferdata.signals)
            if debug or (ctx.obj or {}).get("debug"):
                raise
            click.echo(interrupted_line(exc), err=True)
            sys.exit(exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - the CLI boundary: one line, never a traceback
            if debug or (ctx.obj or {}).get("debug"):
                raise
            click.echo(error_line(exc), err=True)
            sys.exit(1)


class _BarSafeHandler(logging.StreamHandler):
    """Log records on stderr through ``tqdm.write``: a warning printed while a progress bar
    is drawn gets its own line and the bar is redrawn below it (not spliced into the bar)."""

    def emit(self, record):
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_logging(verbose: int, debug: bool) -> None:
    level = logging.DEBUG if debug else (logging.INFO if verbose else logging.WARNING)
    handler = _BarSafeHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def progress(total=None, desc="", unit="it", disable=None, file=None, **kw):
    """A tqdm progress bar on ``file`` (stderr): total, rate and ETA, redrawn at most twice a
    second as the work reports. Disabled when it is not a terminal unless forced, and on DDP
    ranks other than 0 (``RANK`` set by torchrun). A terminal that reports 0 columns (``script``,
    some CI consoles) gets 100: tqdm would draw nothing there."""
    from tqdm.auto import tqdm

    file = file or sys.stderr
    if disable is None and os.environ.get("RANK", "0") != "0":
        disable = True
    kw.setdefault("mininterval", 0.5)
    width = {"dynamic_ncols": True} if _columns(file) else {"ncols": 100, "nrows": 20}
    return tqdm(total=total, desc=desc, unit=unit, file=file, disable=disable, **width, **kw)


def _columns(file) -> int:
    try:
        return os.get_terminal_size(file.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


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


def render_option(key: str, help: str, *flags, **kw):
    """A ``RenderConfig`` key as an option: type, bounds, choices and default read from the
    config's declarations (``RANGES``, ``CHOICES``, the field default), never restated here."""
    import dataclasses

    from ferdata.config import RenderConfig

    f = RenderConfig.__dataclass_fields__[key]
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    typ = kw.pop("type", None)
    if typ is None:
        if key in RenderConfig.CHOICES:
            typ = click.Choice([c for c in RenderConfig.CHOICES[key] if c is not None])
        elif key in RenderConfig.RANGES:
            lo, hi = RenderConfig.RANGES[key]
            typ = (click.IntRange if isinstance(default, int) and not isinstance(default, bool)
                   else click.FloatRange)(lo, hi)
    shown = kw.pop("shown_default", default)
    return click.option(*(flags or (f"--{key.replace('_', '-')}",)), key, type=typ, default=None,
                        help=f"{help} [{shown}]", **kw)


def train_option(key: str, *flags, **kw):
    """A ``TrainConfig`` key as an option (default None: the recipe's value stays unless given);
    type, bounds, choices and help come from the key's declaration (``ferdata.train.config``)."""
    from ferdata.train.config import TrainConfig

    meta = TrainConfig.declared(key)
    typ = kw.pop("type", None)
    if typ is None and meta["choices"]:
        typ = click.Choice(list(meta["choices"]))
    elif typ is None and (meta["lo"] is not None or meta["hi"] is not None):
        f = TrainConfig.__dataclass_fields__[key]
        rng = click.IntRange if "int" in str(f.type) else click.FloatRange
        typ = rng(meta["lo"], meta["hi"], min_open=meta["lo_open"], max_open=meta["hi_open"])
    return click.option(*(flags or (f"--{key.replace('_', '-')}",)), key, type=typ, default=None,
                        help=TrainConfig.help_text(key), **kw)


def epoch_line(e: dict, prefix: str = "") -> str:
    """One line per epoch, printed with or without a terminal (nohup, SLURM, torchrun):
    ``epoch 3 (4 of 60): train loss 0.4121, val acc 0.8125, val macro F1 0.7990, lr 1.00e-04, 12.3 s``
    — the epoch index as in metrics.jsonl and eval.json, then the count."""
    best = " (best so far)" if e.get("improved") else ""
    return (f"{prefix}epoch {e['epoch']} ({e['epoch'] + 1} of {e['epochs']}): train loss {e['train_loss']:.4f}, "
            f"val acc {e['val_acc']:.4f}, val macro F1 {e['val_macro_f1']:.4f}, lr {e['lr']:.2e}, "
            f"{e.get('seconds', 0.0):.1f} s{best}")


class TrainProgress:
    """What ``ferdata train`` / ``cv`` show while a run works: one bar over the run's samples
    (total = samples per epoch × epochs, a resumed run starts at its epoch) with the epoch and
    the epoch's mean loss so far, its description naming what the run waits for (loading data,
    building model, starting loader workers, validating) until the work moves again; one
    line per epoch on stdout (:func:`epoch_line`), terminal or not. Its methods are
    :func:`ferdata.train.loop.fit`'s ``on_status``, ``on_step`` and ``on_epoch``."""

    def __init__(self, desc: str, prefix: str = "", disable=None):
        self.desc, self.prefix, self.waiting = desc, prefix, False
        self.bar = progress(desc=desc, unit="sample", unit_scale=True, disable=disable)
        self.epochs, self._loss, self._n = None, 0.0, 0

    def _size(self, per, epochs, start_epoch) -> None:
        self.epochs = epochs
        if per and self.bar.total is None:
            self.bar.reset(total=per * epochs)
            self.bar.n = self.bar.last_print_n = self.bar.initial = per * start_epoch

    def on_status(self, ev: dict) -> None:
        if "epochs" in ev:
            self._size(ev.get("samples_per_epoch"), ev["epochs"], ev["start_epoch"])
        self.bar.set_description_str(f"{self.desc}: {ev['stage']}", refresh=True)
        self.waiting = True

    def on_step(self, s: dict) -> None:
        if self.epochs is None and "epochs" in s:   # a fit that gives no on_status: sized by its first step
            self._size(s.get("samples_per_epoch"), s["epochs"], s["epoch"])
        if s["step"] == 1:
            self._loss, self._n = 0.0, 0
        self._loss += s.get("loss", float("nan")) * s["samples"]
        self._n += s["samples"]
        if self.waiting:
            self.bar.set_description_str(self.desc, refresh=False)
            self.waiting = False
        epoch = f"{s['epoch']} ({s['epoch'] + 1} of {self.epochs})" if self.epochs else s["epoch"]  # as epoch_line
        self.bar.set_postfix_str(f"epoch {epoch}, loss {self._loss / max(self._n, 1):.4f}", refresh=False)
        self.bar.update(s["samples"])

    def on_epoch(self, e: dict) -> None:
        self.bar.write(epoch_line(e, prefix=self.prefix))

    def hooks(self) -> dict:
        return {"on_status": self.on_status, "on_step": self.on_step, "on_epoch": self.on_epoch}

    def close(self) -> None:
        self.bar.close()


def _import_models(ctx, param, value):
    if value:
        from ferdata.train.models import import_models

        import_models(value)   # one Error: line for a module that cannot be imported
    return value


def import_option(f):
    """``--import MODULE`` (train, cv): import the user's modules before anything else, so their
    ``@register_model`` classes are ``--set model=NAME`` (docs/training.md, "Your own model")."""
    return click.option("--import", "imports", multiple=True, metavar="MODULE", expose_value=False,
                        callback=_import_models,
                        help="Import MODULE first: its @register_model classes become --set model=NAME.")(f)
