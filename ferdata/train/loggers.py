"""Where a run's progress goes besides ``metrics.jsonl``: the ``logger`` setting.

``metrics.jsonl`` is always written (the loop does it; other code reads it). The setting
adds one more output in the run folder:

* ``"jsonl"`` — nothing more (:class:`RunLogger`, whose methods do nothing);
* ``"tensorboard"`` — :class:`TensorBoardLogger`: event files in the run folder
  (``tensorboard --logdir RUN``): ``train/loss`` and ``train/lr`` every step, the epoch's
  record (``val/accuracy``, ``val/macro_f1``, …, ``epoch/train_loss``, …) and the
  validation confusion matrix as an image (``val/confusion``) at the step that ends the
  epoch, the resolved configuration as hparams with the final metrics at the end;
* ``"csv"`` — :class:`CsvLogger`: ``steps.csv`` (``epoch,step,loss,lr``) and
  ``epochs.csv`` (the metrics.jsonl record, one column per key), appended through
  :func:`ferdata.atomic.append_line` (steps at most once a second and at each epoch's end).

Steps are counted over the whole run (1 = after the first optimiser step; saved in the
checkpoints). A resumed run appends: the CSV rows past the checkpoint's epoch are dropped
(as metrics.jsonl's), and TensorBoard purges the events past the checkpoint's step, so no
curve doubles. Only rank 0 logs under DDP (the loop opens the logger there only).
"""
from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..atomic import append_line, atomic_write_text
from ..errors import FerdataError
from .config import LOGGERS

__all__ = ["LOGGERS", "RunLogger", "TensorBoardLogger", "CsvLogger", "check_logger", "open_logger",
           "confusion_image", "trim_csv", "hparam_values", "epoch_tags", "STEPS_CSV", "EPOCHS_CSV"]

STEPS_CSV, EPOCHS_CSV = "steps.csv", "epochs.csv"
STEP_COLUMNS = ("epoch", "step", "loss", "lr")
TB_GLOB = "events.out.tfevents.*"
_INSTALL = "pip install 'ferdata[tensorboard]'"


class RunLogger:
    """The interface (and ``logger = "jsonl"``: metrics.jsonl only, every method a no-op)."""

    def step(self, step: int, loss: float, lr: float, epoch: Optional[int] = None) -> None:
        """After optimiser step ``step`` (counted over the run) of ``epoch``."""

    def epoch(self, record: dict) -> None:
        """An epoch's metrics.jsonl record (written before its checkpoint, like metrics.jsonl)."""

    def confusion(self, epoch: int, cm, classes) -> None:
        """The epoch's validation confusion matrix (rows: true class)."""

    def hparams(self, config: dict, metrics: dict) -> None:
        """The resolved configuration and the final metrics (once, at the end)."""

    def flush(self) -> None:
        """Write out what is buffered."""

    def close(self) -> None:
        self.flush()


def _tensorboard():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise FerdataError(f"logger=tensorboard needs TensorBoard, which is not installed ({exc}); "
                           f"{_INSTALL}, or use logger=csv or jsonl") from None
    return SummaryWriter


def check_logger(kind: str) -> None:
    """Raise the one FerdataError a logger would raise later (unknown kind, TensorBoard missing)."""
    if kind not in LOGGERS:
        raise FerdataError(f"train config: logger must be {'|'.join(LOGGERS)}, got {kind!r}")
    if kind == "tensorboard":
        _tensorboard()


def open_logger(kind: str, out, resume_epoch: Optional[int] = None, global_step: int = 0) -> RunLogger:
    """The run's logger in ``out``. ``resume_epoch``: the epoch ``last.pt`` holds (a resumed run:
    logs past it are dropped, then appended to); None: a new run (old logs of this kind replaced)."""
    check_logger(kind)
    out = Path(out)
    for name in (STEPS_CSV, EPOCHS_CSV):   # whatever the kind: a log never runs past the checkpoint
        if resume_epoch is not None:
            trim_csv(out / name, resume_epoch)
        else:
            (out / name).unlink(missing_ok=True)
    if resume_epoch is None:               # a new run: the events of a replaced one go
        for f in out.glob(TB_GLOB):
            f.unlink()
    if kind == "tensorboard":
        return TensorBoardLogger(out, resume_step=global_step if resume_epoch is not None else None)
    if kind == "csv":
        return CsvLogger(out)
    return RunLogger()


# ---------------------------------------------------------------- CSV

def _row(values) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()[:-1]


def _cell(v) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return repr(v)     # round-trips exactly
    return "" if v is None else (json.dumps(v) if isinstance(v, (list, dict)) else str(v))


def trim_csv(path: Path, last_epoch: int) -> None:
    """Keep the header and the rows of epochs <= ``last_epoch`` (a torn or bad row ends the file)."""
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    if not lines:
        return
    keep, header = [lines[0]], next(csv.reader([lines[0]]))
    col = header.index("epoch") if "epoch" in header else 0
    for line in lines[1:]:
        try:
            if int(next(csv.reader([line]))[col]) > last_epoch:
                continue
        except (ValueError, IndexError, StopIteration):
            break
        keep.append(line)
    atomic_write_text(path, "".join(k + "\n" for k in keep))


class CsvLogger(RunLogger):
    """``steps.csv`` and ``epochs.csv`` in the run folder (module docstring)."""

    FLUSH_S = 1.0

    def __init__(self, out):
        self.steps_path, self.epochs_path = Path(out) / STEPS_CSV, Path(out) / EPOCHS_CSV
        self._rows: list = []
        self._last = time.monotonic()
        self._columns = self._header(self.epochs_path)
        if not self.steps_path.exists() or not self.steps_path.stat().st_size:
            append_line(self.steps_path, _row(STEP_COLUMNS))

    @staticmethod
    def _header(path: Path) -> Optional[list]:
        if not path.exists() or not path.stat().st_size:
            return None
        with open(path, newline="") as f:
            return next(csv.reader(f), None)

    def step(self, step, loss, lr, epoch=None):
        self._rows.append(_row([_cell(epoch), step, _cell(float(loss)), _cell(float(lr))]))
        if time.monotonic() - self._last >= self.FLUSH_S:
            self.flush()

    def flush(self):
        if self._rows:
            append_line(self.steps_path, "\n".join(self._rows))
            self._rows = []
        self._last = time.monotonic()

    def epoch(self, record):
        self.flush()
        if self._columns is None:
            self._columns = list(record)
            append_line(self.epochs_path, _row(self._columns))
        append_line(self.epochs_path, _row([_cell(record.get(k)) for k in self._columns]))


# ---------------------------------------------------------------- TensorBoard

#: metrics.jsonl keys -> TensorBoard tags (others: val_* -> val/*, the rest -> epoch/*)
_TAGS = {"val_acc": "val/accuracy", "train_acc": "epoch/train_accuracy", "val_n": None, "epoch": "epoch"}


def epoch_tags(record: dict) -> dict:
    """``{tag: value}`` of the numbers in an epoch record (``val_acc`` -> ``val/accuracy``, …)."""
    tags = {}
    for k, v in record.items():
        if not isinstance(v, (int, float)) or (isinstance(v, float) and not np.isfinite(v)):
            continue
        tag = _TAGS.get(k, f"val/{k[4:]}" if k.startswith("val_") else f"epoch/{k}")
        if tag:
            tags[tag] = float(v)
    return tags


def hparam_values(config: dict) -> dict:
    """A configuration as TensorBoard hparams: numbers, strings and booleans as they are,
    None as ``"none"``, lists and dicts as JSON."""
    out = {}
    for k, v in config.items():
        if isinstance(v, (bool, int, float, str)):
            out[k] = v
        else:
            out[k] = "none" if v is None else json.dumps(v, sort_keys=True, default=str)
    return out


class TensorBoardLogger(RunLogger):
    """Event files in the run folder (module docstring); ``resume_step``: purge events after it."""

    def __init__(self, out, resume_step: Optional[int] = None):
        writer = _tensorboard()
        self.w = writer(log_dir=str(out), purge_step=None if resume_step is None else resume_step + 1,
                        flush_secs=10)
        self._step = int(resume_step or 0)

    def step(self, step, loss, lr, epoch=None):
        self._step = int(step)
        self.w.add_scalar("train/loss", float(loss), self._step)
        self.w.add_scalar("train/lr", float(lr), self._step)

    def epoch(self, record):
        for tag, v in epoch_tags(record).items():
            self.w.add_scalar(tag, v, self._step)
        self.w.flush()

    def confusion(self, epoch, cm, classes):
        img = confusion_image(cm, classes, title=f"validation, epoch {epoch}")
        self.w.add_image("val/confusion", img, self._step, dataformats="HWC")
        self.w.flush()

    def hparams(self, config, metrics):
        from torch.utils.tensorboard.summary import hparams

        metrics = {k: float(v) for k, v in metrics.items()}
        for summary in hparams(hparam_values(config), metrics):   # in this run, not a sub-folder
            self.w.file_writer.add_summary(summary, self._step)
        for k, v in metrics.items():
            self.w.add_scalar(k, v, self._step)
        self.w.flush()

    def flush(self):
        self.w.flush()

    def close(self):
        self.w.close()


def confusion_image(cm, classes, title: str = "") -> np.ndarray:
    """A confusion matrix drawn as an RGB ``uint8`` array (H, W, 3): colour by row share, counts written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(cm, np.float64)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(classes)
    size = 2.0 + 0.45 * k
    fig = Figure(figsize=(size, size), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), [str(c)[:9] for c in classes], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), [str(c)[:9] for c in classes], fontsize=8)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    if k <= 16:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
