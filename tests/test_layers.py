"""The house rules (docs/architecture.md) kept by import-linter, function-local imports included.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``): one folder per stage
with imports only downward, no cycle between the modules of any package, torch only in
``ferdata.torch``, ``ferdata.train``, ``ferdata.experiments`` and the CLI. Each check is
shown to fail on a temporary copy of the package with one bad import added.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ferdata

LIBRARY = Path(ferdata.__file__).parent
ROOT = LIBRARY.parent
NO_TORCH = ["ferdata", "ferdata.render", "ferdata.render.run", "ferdata.render.backgrounds", "ferdata.features",
            "ferdata.shards", "ferdata.datasets", "ferdata.faces.ingest", "ferdata.faces.store", "ferdata.config",
            "ferdata.viz", "ferdata.atomic", "ferdata.parallel", "ferdata.cli"]


def lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` over the package under ``root`` with this repo's contracts."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True))")
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(), reason="needs the source tree (pyproject.toml)")
def test_the_import_contracts_are_kept():
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "3 kept, 0 broken" in r.stdout


@pytest.fixture(scope="module")
def copy_root(tmp_path_factory):
    d = tmp_path_factory.mktemp("lint")
    shutil.copytree(LIBRARY, d / "ferdata", ignore=shutil.ignore_patterns("__pycache__"))
    return d


@pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(), reason="needs the source tree (pyproject.toml)")
@pytest.mark.parametrize("module, line, contract, arrow", [
    # an upward import hidden inside a function
    ("render/compose.py", "def _bad():\n    from ..torch import render  # noqa\n",
     "One folder per stage", "ferdata.render.compose -> ferdata.torch.render"),
    # the library reaching into the CLI
    ("shards/reader.py", "def _bad():\n    from ..cli import main  # noqa\n",
     "One folder per stage", "ferdata.shards.reader -> ferdata.cli"),
    # a cycle inside one stage
    ("faces/align.py", "def _bad():\n    from .ingest import ingest  # noqa\n",
     "No import cycle", "ferdata.faces"),
    # torch in the data library
    ("features/lbp.py", "def _bad():\n    import torch  # noqa\n",
     "Torch only in", "ferdata.features.lbp -> torch"),
])
def test_each_contract_fails_on_a_bad_import(copy_root, module, line, contract, arrow):
    path = copy_root / "ferdata" / module
    before = path.read_text()
    try:
        path.write_text(before + "\n\n" + line)
        r = lint(copy_root)
    finally:
        path.write_text(before)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    broken = r.stdout.split("Broken contracts", 1)[1]
    assert contract in broken and arrow in broken, broken[-3000:]


def _loaded_torch_modules(modules, prelude: str = "") -> list:
    """Import ``modules`` in a fresh interpreter; the torch modules that came with them."""
    code = (prelude + "import importlib, json, sys\n"
            f"for m in {list(modules)!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_data_library_and_cli_do_not_import_torch_when_loaded():
    assert _loaded_torch_modules(NO_TORCH) == []


def test_the_torch_check_can_fail():
    # a stand-in for torch (importing the real one takes seconds) is seen
    fake = "import sys, types\nsys.modules['torch.nn'] = types.ModuleType('torch.nn')\n"
    assert _loaded_torch_modules(["ferdata"], prelude=fake) == ["torch.nn"]
