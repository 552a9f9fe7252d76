"""Threaded JPEG decoding in the torch datasets: same bytes, same order; a corrupt JPEG is named."""
import shutil

import h5py
import numpy as np
import pytest
import torch

from ferdata.config import RenderConfig
from ferdata.errors import FerdataError
from ferdata.render.run import render
from ferdata.torch import FaceStoreDataset, ShardDataset, ShardIterableDataset


@pytest.fixture(scope="module")
def jpeg_shards(sample_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("threads") / "jpeg"
    render(sample_dir / "faces.h5", sample_dir / "backgrounds", out,
           RenderConfig(size=96, per_face=150, shard_size=100, encoding="jpeg"), workers=1)
    return out


def test_threads_give_identical_batches(jpeg_shards):
    one, many = ShardDataset(jpeg_shards), ShardDataset(jpeg_shards)
    one.decode_threads, many.decode_threads = 1, 4
    idx = np.random.default_rng(0).permutation(len(one))[:200].tolist()
    a, b = one.__getitems__(idx), many.__getitems__(idx)
    assert all(torch.equal(x["image"], y["image"]) and int(x["label"]) == int(y["label"]) for x, y in zip(a, b))
    for resize in (48, (40, 56)):
        r1 = ShardDataset(jpeg_shards, resize=resize)
        r4 = ShardDataset(jpeg_shards, resize=resize)
        r1.decode_threads, r4.decode_threads = 1, 3
        assert all(torch.equal(x["image"], y["image"]) for x, y in zip(r1.__getitems__(idx[:64]), r4.__getitems__(idx[:64])))


def test_iterable_order_unchanged_by_threads(jpeg_shards):
    def images(threads):
        ds = ShardIterableDataset(jpeg_shards, seed=3, batch_size=32)
        ds.decode_threads = threads
        return torch.cat([b["image"] for b in ds])
    assert torch.equal(images(1), images(4))


def test_corrupt_jpeg_names_shard_and_sample(jpeg_shards, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(jpeg_shards, bad)
    with h5py.File(bad / "shard-000001.h5", "r+") as f:
        off = f["image_offsets"][:]
        blob = f["image"]
        blob[off[17]:off[18]] = np.zeros(off[18] - off[17], np.uint8)
    for threads in (1, 4):
        ds = ShardDataset(bad)
        ds.decode_threads = threads
        with pytest.raises(FerdataError, match=r"shard-000001\.h5 sample 17 \(global sample 117\)"):
            ds.__getitems__(list(range(90, 140)))
        it = ShardIterableDataset(bad, shuffle=False, batch_size=64)
        it.decode_threads = threads
        with pytest.raises(FerdataError, match=r"shard-000001\.h5 sample 17"):
            list(it)


def test_decode_threads_validated(jpeg_shards, sample_dir):
    ds = ShardDataset(jpeg_shards)
    for bad in (0, -2, True):
        with pytest.raises(FerdataError, match="decode_threads"):
            ds.decode_threads = bad
    fs = FaceStoreDataset(sample_dir / "faces.h5")
    fs.decode_threads = 2  # a face store is raw: accepted, nothing to decode
    assert fs[0]["image"].dtype == torch.uint8
