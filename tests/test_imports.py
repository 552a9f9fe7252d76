"""The import graph: torch stays out of the data library, the click CLI out of the library."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ferdata

LIBRARY = Path(ferdata.__file__).parent
NO_TORCH = ["ferdata", "ferdata.render", "ferdata.features", "ferdata.shards", "ferdata.datasets",
            "ferdata.ingest", "ferdata.facestore", "ferdata.config", "ferdata.backgrounds", "ferdata.viz",
            "ferdata.cli"]


def _loaded_torch_modules(modules, prelude: str = "") -> list:
    """Import ``modules`` in a fresh interpreter; the torch modules that came with them."""
    code = (prelude + "import importlib, json, sys\n"
            f"for m in {list(modules)!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_data_library_and_cli_do_not_import_torch():
    assert _loaded_torch_modules(NO_TORCH) == []


def test_the_torch_check_can_fail():
    # a stand-in for torch (importing the real one takes seconds) is seen
    fake = "import sys, types\nsys.modules['torch.nn'] = types.ModuleType('torch.nn')\n"
    assert _loaded_torch_modules(["ferdata"], prelude=fake) == ["torch.nn"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(LIBRARY.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(text: str, module: str, is_package: bool = False) -> set:
    """Absolute names of every module the source of ``module`` imports anywhere (relative
    imports resolved)."""
    package = module if is_package else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out |= {name} | {f"{name}.{a.name}" for a in node.names}
    return out


def imports_cli(text: str, module: str, is_package: bool = False) -> bool:
    return any(n == "ferdata.cli" or n.startswith("ferdata.cli.") for n in imported_names(text, module, is_package))


LIBRARY_FILES = sorted(LIBRARY.rglob("*.py"))


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: str(p.relative_to(LIBRARY)))
def test_library_does_not_import_the_cli(path):
    found = imports_cli(path.read_text(), _module_name(path), path.name == "__init__.py")
    assert not found, f"{path}: the library must not import ferdata.cli (the CLI is a thin layer over it)"


@pytest.mark.parametrize("src, module, expect", [
    ("from ferdata.cli import main", "ferdata.train.__main__", True),
    ("import ferdata.cli._common", "ferdata.ingest", True),
    ("def f():\n    from ..cli import main", "ferdata.train.__main__", True),
    ("from . import cli", "ferdata", True),
    ("from .config import IngestConfig\nimport click", "ferdata.ingest", False),
    ("from ..errors import FerdataError", "ferdata.train.loop", False),
])
def test_the_cli_check_can_fail(src, module, expect):
    assert imports_cli(src, module, is_package=module == "ferdata") is expect
