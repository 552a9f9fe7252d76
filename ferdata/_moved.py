"""Old module paths keep importing, with one FutureWarning each (``docs/architecture.md``).

The stage packages moved modules (``ferdata.ingest`` is ``ferdata.faces.ingest`` now).
A finder on ``sys.meta_path`` maps each old name to its new module: ``import
ferdata.facestore`` returns ``ferdata.faces.store`` itself (same objects, so isinstance
and monkeypatching keep working) and warns once which name to use.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "ferdata.align": "ferdata.faces.align",
    "ferdata.landmarks": "ferdata.faces.landmarks",
    "ferdata.masks": "ferdata.faces.masks",
    "ferdata.quality": "ferdata.faces.quality",
    "ferdata.ingest": "ferdata.faces.ingest",
    "ferdata.facestore": "ferdata.faces.store",
    "ferdata.backgrounds": "ferdata.render.backgrounds",
    "ferdata.sample": "ferdata.render.sample",
    "ferdata.tempfiles": "ferdata.atomic",
    "ferdata.shards.tempfiles": "ferdata.atomic",
    "ferdata.train.cv": "ferdata.experiments.cv",
    "ferdata.train.cv_summary": "ferdata.experiments.cv_summary",
    "ferdata.train.compare": "ferdata.experiments.compare",
    "ferdata.train.stats": "ferdata.experiments.stats",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {self.new}; import that instead (the old name will go)",
                      FutureWarning, stacklevel=4)
        module = importlib.import_module(self.new)
        self.spec = module.__spec__
        return module

    def exec_module(self, module):  # already executed: only undo importlib's re-labelling
        module.__spec__ = self.spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
