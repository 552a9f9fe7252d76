"""ferdata: small facial-expression datasets to large, clean, reproducible training data.

Pipeline: ingest (faces.h5) -> render (HDF5 shards) -> lbp -> torch datasets -> train.
Only :mod:`ferdata.torch`, :mod:`ferdata.train` and :mod:`ferdata.experiments` import torch
(docs/architecture.md is the map of the modules).
"""
from ._version import __version__
from .labels import CLASSES
from .errors import FerdataError

__all__ = ["__version__", "CLASSES", "FerdataError"]

from ._moved import install as _install_moved

_install_moved()  # old module paths (ferdata.ingest, ferdata.train.cv, ...) keep importing, with a warning
