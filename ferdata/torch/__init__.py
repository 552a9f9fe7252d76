"""PyTorch datasets over ferdata shards and face stores, and GPU-side batch transforms.

The only ferdata package (with :mod:`ferdata.train`) that imports torch::

    from ferdata.torch import ShardDataset, ShardIterableDataset, FaceStoreDataset
    from ferdata.torch import transforms as T

See ``docs/torch.md``.
"""
from . import transforms
from .datasets import FaceStoreDataset, ShardDataset, ShardIterableDataset
from .specs import Decode, Select

__all__ = ["ShardDataset", "ShardIterableDataset", "FaceStoreDataset", "Select", "Decode", "transforms"]
