"""A quick exit for commands whose work is done and closed (docs/architecture.md).

Python's own exit tears down every module and object it loaded; after numba has loaded
its compiled kernels that takes ~0.5 s on a 2-core machine (an `ferdata lbp` on the
README's render is ~5 s in all). A command that has closed and committed everything it
wrote calls :func:`allow` as its last step; :func:`finish` (the console entry point's
end) then flushes stdout and stderr, runs the ``atexit`` handlers and ends the process
with ``os._exit``, skipping only that teardown. In-process callers (tests, CliRunner)
never reach :func:`finish`, and a failed or interrupted command exits the normal way.
"""
from __future__ import annotations

import atexit
import os
import sys

_ALLOWED = [False]


def allow() -> None:
    """Mark this process's command as done: every file it wrote closed and committed."""
    _ALLOWED[0] = True


def finish(code) -> None:
    """End the process with ``code`` (a ``SystemExit`` code): quickly if :func:`allow` was
    called and the command succeeded, else by ``sys.exit``."""
    if not _ALLOWED[0] or code not in (0, None):
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    atexit._run_exitfuncs()
    os._exit(0)
