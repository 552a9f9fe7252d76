"""ferdata: small facial-expression datasets to large, clean, reproducible training data.

Pipeline: ingest (faces.h5) -> render (HDF5 shards) -> lbp -> torch datasets -> train.
Only :mod:`ferdata.torch` and :mod:`ferdata.train` import torch.
"""
from ._version import __version__
from .labels import CLASSES
from .errors import FerdataError

__all__ = ["__version__", "CLASSES", "FerdataError"]
