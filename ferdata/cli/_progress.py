"""Progress of a long command, from the work itself (docs/architecture.md, the CLI layer).

On a terminal: a tqdm bar on stderr with the total, the rate and the ETA, its text
saying what the command waits for ("loading faces and backgrounds", "starting 2
workers", "compiling LBP kernels"), redrawn every second even while nothing
finishes. Without a terminal (nohup, SLURM, ``| cat``): no bar, but one plain line
every ``every`` seconds (``render: 8192 of 18462 samples (44 %), 1520/s, ETA 0:07,
rendering``) and one line when the stage changes to something worth waiting for.

The library reports ``{"stage": str, "done": int, "total": int | None}`` events
(cumulative ``done``; a key left out keeps its value); :class:`StageBar` is such a callback.
"""
from __future__ import annotations

import sys
import threading
import time

import click

from ._common import progress


def _clock(seconds: float) -> str:
    s = int(round(max(seconds, 0.0)))
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def status_line(desc: str, unit: str, done: int, total, rate, stage: str = "") -> str:
    """``render: 8192 of 18462 samples (44 %), 1520/s, ETA 0:07, rendering`` (pure)."""
    if total:
        pct = 100.0 * done / total
        head = f"{desc}: {done} of {total} {unit}s ({pct:.0f} %)"
    else:
        head = f"{desc}: {done} {unit}s"
    parts = [head]
    if rate:
        parts.append(f"{rate:.0f}/s" if rate >= 10 else f"{rate:.2f}/s")
        if total and done < total:
            parts.append(f"ETA {_clock((total - done) / rate)}")
    if stage:
        parts.append(stage)
    return ", ".join(parts)


class StageBar:
    """A progress callback for ``{"stage", "done", "total"}`` events (see the module doc).

    A ticker thread redraws the bar every second (the elapsed time and ETA move while a
    worker starts or a kernel compiles); without a terminal it prints the status line
    every ``every`` seconds, and a stage that has been waited on for ``announce``
    seconds with nothing done yet ("compiling LBP kernels") once.
    """

    def __init__(self, desc: str, unit: str = "it", every: float = 10.0, tty=None, file=None,
                 announce: float = 2.0):
        self.desc, self.unit, self.every, self.announce = desc, unit, float(every), float(announce)
        self.file = file or sys.stderr
        self.tty = bool(getattr(self.file, "isatty", lambda: False)()) if tty is None else bool(tty)
        self.done, self.total, self.stage = 0, None, ""
        self._work_start = None          # when the total became known: the rate counts from there
        self._stage_since = self._last_line = time.monotonic()
        self._announced = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._bar = None
        if self.tty:
            self._bar = progress(desc=desc, unit=unit, disable=False, file=self.file, mininterval=0.2)
        self._ticker = threading.Thread(target=self._tick, name="ferdata-progress", daemon=True)
        self._ticker.start()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def rate(self):
        if self._work_start is None:
            return None
        dt = time.monotonic() - self._work_start
        return self.done / dt if dt > 0 and self.done > 0 else None

    def line(self) -> str:
        return status_line(self.desc, self.unit, self.done, self.total, self.rate(), self.stage)

    def __call__(self, event: dict) -> None:
        with self._lock:
            if self._stop.is_set():   # closed: a late event (a background count) prints nothing
                return
            stage = str(event["stage"] or "") if "stage" in event else self.stage
            if event.get("unit") and event["unit"] != self.unit:
                self.unit = event["unit"]
                if self._bar is not None:
                    self._bar.unit = self.unit
            if "total" in event:
                self.total = None if event["total"] is None else int(event["total"])
            if event.get("done") is not None:
                done = int(event["done"])
                if done < self.done:   # a new piece of work counts from 0 (reproduce: ingest, then renders)
                    self._work_start = time.monotonic()
                    if self._bar is not None:
                        self._bar.reset(total=self.total)
                self.done = done
            if self._work_start is None and (event.get("total") is not None or self.done > 0):
                self._work_start = time.monotonic()   # the rate counts from the start of the work
            if stage != self.stage:
                self.stage, self._stage_since = stage, time.monotonic()
                if self._bar is not None:
                    self._bar.set_description_str(f"{self.desc} ({stage})" if stage else self.desc, refresh=False)
            self._show()

    def _show(self) -> None:
        if self._bar is not None:
            if self.total is not None and self._bar.total != self.total:
                self._bar.total = self.total
            if self.done > self._bar.n:
                self._bar.update(self.done - self._bar.n)   # update(): tqdm's smoothed rate and ETA
            self._bar.refresh()
            return
        now = time.monotonic()
        waited = now - self._stage_since >= self.announce and self.stage not in self._announced
        if self.stage and waited and self.done == 0:
            self._announced.add(self.stage)
            self._echo(now)
        elif now - self._last_line >= self.every:
            self._echo(now)

    def _echo(self, now: float) -> None:
        self._last_line = now
        click.echo(self.line(), file=self.file)

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                if not self._stop.is_set():
                    self._show()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None


def count_in_background(make_iter, bar: StageBar) -> threading.Thread:
    """Count the items of a second pass over ``make_iter()`` on a daemon thread and give
    ``bar`` its total when done (a dataset's listing: cheap next to finding landmarks).
    A pass that fails leaves the bar without a total; the work itself reports the error."""
    def run():
        it, n = None, 0
        try:
            it = make_iter()
            for _ in it:
                n += 1
                if bar.closed:   # the command ended first: stop reading
                    return
        except Exception:  # noqa: BLE001 - only the total is lost; the ingest names the problem
            return
        finally:   # the reader's files are closed now, not when garbage-collected
            close = getattr(it, "close", None)
            if close is not None:
                close()
        bar({"total": n})

    t = threading.Thread(target=run, name="ferdata-count", daemon=True)
    t.start()
    return t
