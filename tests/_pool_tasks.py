"""Tiny pool tasks for the worker tests (a light module: spawned workers import it)."""
import os
import signal
import time
from pathlib import Path


def die_on_two(x):
    if x == 2:
        time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 10


def sleeper(folder):
    Path(folder, f"pid-{os.getpid()}").write_text("")
    time.sleep(60)
