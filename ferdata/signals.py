"""Stop long work on Ctrl-C / SIGTERM at a clean point, never inside a finaliser.

Python raises KeyboardInterrupt wherever the main thread happens to be: inside a weakref
callback or ``__del__`` (DataLoader, h5py, thread pools) it is printed as "Exception
ignored" and the work carries on. :func:`stop_on_signals` (the CLI wraps train, cv, eval
in it) replaces that with a flag; the work loops call :func:`check` at step, epoch and
fold boundaries, which raises :class:`~ferdata.errors.Interrupted` there. A second
signal while the first is pending stops at once (the default handler).
"""
from __future__ import annotations

import contextlib
import signal
import threading

from .errors import Interrupted

_pending: list = []


def _handler(signum, frame):
    if _pending:  # a second Ctrl-C: do not wait for the next check
        signal.signal(signum, signal.SIG_DFL)
        raise KeyboardInterrupt
    _pending.append(signum)


@contextlib.contextmanager
def stop_on_signals(signums=(signal.SIGINT, signal.SIGTERM)):
    """Within the block, Ctrl-C / SIGTERM only request a stop (see :func:`check`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in signums}
    _pending.clear()
    for s in signums:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)
        _pending.clear()


def requested() -> bool:
    return bool(_pending)


def check(where: str = "") -> None:
    """Raise :class:`~ferdata.errors.Interrupted` if a stop was requested (a no-op otherwise)."""
    if _pending:
        raise Interrupted(_pending[0], where)
