"""A/B arms of the command benchmarks: run ``python -m ferdata`` from a given checkout."""
import os
import subprocess
import sys
from pathlib import Path


def arm_env(tree):
    """``(env, cwd)`` that run ``python -m ferdata`` from ``tree`` (None: this checkout).
    The cwd matters: ``-m`` puts it before PYTHONPATH on sys.path, so a command started
    from this checkout's root ran this tree whatever PYTHONPATH said (the A/B figures
    of issue 23's first round compared this tree with itself)."""
    root = Path(tree).resolve() if tree else Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    return env, root


def arm_package(tree) -> str:
    """The ferdata package an arm's commands import (printed, so an A/B shows what it compared)."""
    env, root = arm_env(tree)
    out = subprocess.run([sys.executable, "-c", "import ferdata, os; print(os.path.dirname(ferdata.__file__))"],
                         env=env, cwd=root, check=True, capture_output=True, text=True)
    return out.stdout.strip()
