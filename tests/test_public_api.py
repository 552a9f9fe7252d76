"""Public imports keep working: the documented names, every import in the README's and the
docs' examples (and in every `library` column of the README), and the old module paths of
before the stage packages (each warns once and is the new module itself)."""
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_documented_names():
    import ferdata.features
    import ferdata.torch
    import ferdata.train

    for name in ("ShardIterableDataset", "ShardDataset", "FaceStoreDataset", "Select", "Decode", "transforms"):
        assert hasattr(ferdata.torch, name), name
    assert callable(ferdata.features.lbp) and callable(ferdata.train.fit)


def _doc_imports():
    found = set()
    for doc in DOCS:
        if not doc.exists():
            continue
        for line in doc.read_text().splitlines():
            m = re.match(r"\s*(from ferdata[\w.]* import [\w, ]+|import ferdata[\w.]*)(\s+as\s+\w+)?\s*(#.*)?$", line)
            if m:
                found.add(m.group(1).rstrip(", "))
    return sorted(found)


def _doc_dotted_names():
    """``ferdata.x.y`` names in backticks (the README's library column, the docs' prose)."""
    found = set()
    for doc in DOCS:
        if doc.exists():
            found |= set(re.findall(r"`(ferdata(?:\.[A-Za-z_]\w*)+)", doc.read_text()))
    return sorted(found)


@pytest.mark.skipif(not (ROOT / "docs").exists(), reason="needs the repo's docs/")
@pytest.mark.parametrize("stmt", _doc_imports())
def test_every_import_in_the_docs_works(stmt):
    exec(stmt, {})


@pytest.mark.skipif(not (ROOT / "docs").exists(), reason="needs the repo's docs/")
def test_every_dotted_name_in_the_docs_resolves():
    missing = []
    for name in _doc_dotted_names():
        parts = name.split(".")
        for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ModuleNotFoundError:
                continue
            try:
                for a in parts[i:]:
                    obj = getattr(obj, a)
            except AttributeError:
                missing.append(name)
            break
        else:
            missing.append(name)
    assert missing == []


OLD = {"ferdata.ingest": "ferdata.faces.ingest", "ferdata.facestore": "ferdata.faces.store",
       "ferdata.train.cv": "ferdata.experiments.cv", "ferdata.shards.tempfiles": "ferdata.atomic"}


@pytest.mark.parametrize("old, new", sorted(OLD.items()))
def test_old_module_paths_import_the_new_module_with_one_warning(old, new):
    code = (f"import warnings, sys\nwarnings.simplefilter('always')\n"
            f"with warnings.catch_warnings(record=True) as w:\n"
            f"    import {old} as a\n    import {old} as b\n"
            f"import {new} as c\n"
            f"print(a is b is c, c.__spec__.name, sum('{new}' in str(x.message) for x in w))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["True", new, "1"]
